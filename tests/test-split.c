/* SPDX-License-Identifier: MIT */
/* flowgmm tests — data sets and the reproducible per-cell split. */
#include "config.h"

#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

#include <flowgmm/flowgmm.h>

/* A train part of n rows with 3 features: row i = (i, 2i, -i), label i % K, except every
 * `unknown_every`-th row (if > 0) whose label is -1. */
static FgDataset *
make_dataset (gsize n, guint K, gsize unknown_every, gsize n_test)
{
  FgDataset *ds = fg_dataset_new ("synthetic-test");
  g_autoptr (GError) error = NULL;
  for (int p = 0; p < 2; p++)
    {
      gsize rows = p == 0 ? n : n_test;
      FgTensor *x;
      gint32 *y;
      if (rows == 0)
        continue;
      x = fg_tensor_new_2d (rows, 3);
      y = g_new (gint32, rows);
      for (gsize i = 0; i < rows; i++)
        {
          float *r = fg_tensor_row (x, i);
          r[0] = (float) i + (p ? 0.5f : 0.0f);
          r[1] = 2.0f * (float) i;
          r[2] = -(float) i;
          y[i] = (gint32) (i % K);
          if (p == 0 && unknown_every > 0 && i % unknown_every == unknown_every - 1)
            y[i] = -1;
        }
      g_assert_true (fg_dataset_set_part (ds, p == 0 ? FG_PART_TRAIN : FG_PART_TEST, x, y, &error));
      g_assert_no_error (error);
    }
  g_assert_true (fg_dataset_finish (ds, &error));
  g_assert_no_error (error);
  return ds;
}

static FgParams *
split_params (const char *first_key, ...)
{
  FgParams *p = fg_params_new (fg_split_param_specs ());
  va_list ap;
  const char *key = first_key;
  va_start (ap, first_key);
  while (key != NULL)
    {
      const char *value = va_arg (ap, const char *);
      g_autoptr (GError) error = NULL;
      g_assert_true (fg_params_set (p, key, value, &error));
      g_assert_no_error (error);
      key = va_arg (ap, const char *);
    }
  va_end (ap);
  return p;
}

static void
check_disjoint_cover (FgSplitData *d, gsize n_train, gboolean test_from_train, gboolean all_used)
{
  g_autofree guint8 *seen = g_new0 (guint8, n_train);
  const char *sets[] = { "labeled", "unlabeled", "validation", "test" };
  gsize total = 0;
  for (guint s = 0; s < G_N_ELEMENTS (sets); s++)
    {
      gsize n;
      const guint32 *idx = fg_split_data_get_indices (d, sets[s], &n);
      if (s == 3 && !test_from_train)
        continue;
      for (gsize i = 0; i < n; i++)
        {
          g_assert_cmpuint (idx[i], <, n_train);
          g_assert_cmpuint (seen[idx[i]], ==, 0);
          seen[idx[i]] = 1;
          if (i > 0)
            g_assert_cmpuint (idx[i - 1], <, idx[i]); /* sorted */
        }
      total += n;
    }
  if (all_used)
    g_assert_cmpuint (total, ==, n_train);
}

static void
test_balanced (void)
{
  g_autoptr (FgDataset) ds = make_dataset (300, 3, 0, 0);
  g_autoptr (FgParams) p = split_params ("labeled", "9", "validation", "30", "test", "60", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (FgSplitData) d = fg_split_data_new (ds, p, 1, &error);
  const FgSplit *s;
  guint counts[3] = { 0 };
  gsize n;
  const guint32 *lab;

  g_assert_no_error (error);
  s = fg_split_data_get_split (d);
  g_assert_cmpuint (s->labeled.n, ==, 9);
  g_assert_cmpuint (s->validation.n, ==, 30);
  g_assert_cmpuint (fg_split_data_get_test (d)->n, ==, 60);
  g_assert_cmpuint (s->unlabeled.n, ==, 300 - 9 - 30 - 60);
  g_assert_null (s->unlabeled.y);
  g_assert_nonnull (s->labeled.y);
  g_assert_cmpuint (s->n_classes, ==, 3);
  g_assert_cmpuint (s->dim, ==, 3);
  g_assert_cmpuint (s->seed, ==, 1);
  g_assert_cmpuint (strlen (s->fingerprint), ==, 16);
  for (gsize i = 0; i < s->labeled.n; i++)
    counts[s->labeled.y[i]]++;
  g_assert_cmpuint (counts[0], ==, 3);
  g_assert_cmpuint (counts[1], ==, 3);
  g_assert_cmpuint (counts[2], ==, 3);
  check_disjoint_cover (d, 300, TRUE, TRUE);

  /* rows are copied from the right source rows, labels with them */
  lab = fg_split_data_get_indices (d, "labeled", &n);
  for (gsize i = 0; i < n; i++)
    {
      const float *r = fg_tensor_row (&s->labeled.x, i);
      g_assert_cmpfloat (r[0], ==, (float) lab[i]);
      g_assert_cmpfloat (r[2], ==, -(float) lab[i]);
      g_assert_cmpint (s->labeled.y[i], ==, (gint32) (lab[i] % 3));
    }
}

static void
test_remainder_and_per_class (void)
{
  g_autoptr (FgDataset) ds = make_dataset (300, 3, 0, 50);
  g_autoptr (FgParams) p = split_params ("labeled", "10", NULL);
  g_autoptr (FgParams) q = split_params ("labeled_per_class", "4", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (FgSplitData) d = fg_split_data_new (ds, p, 0, &error);
  g_autoptr (FgSplitData) e = NULL;
  guint counts[3] = { 0 }, big = 0;
  g_assert_no_error (error);
  for (gsize i = 0; i < fg_split_data_get_split (d)->labeled.n; i++)
    counts[fg_split_data_get_split (d)->labeled.y[i]]++;
  for (int k = 0; k < 3; k++)
    {
      g_assert_true (counts[k] == 3 || counts[k] == 4);
      big += counts[k] == 4;
    }
  g_assert_cmpuint (big, ==, 1);
  /* the test part is the data set's own */
  g_assert_cmpuint (fg_split_data_get_test (d)->n, ==, 50);
  g_assert_cmpfloat (fg_tensor_row (&fg_split_data_get_test (d)->x, 7)[0], ==, 7.5f);
  check_disjoint_cover (d, 300, FALSE, TRUE);

  e = fg_split_data_new (ds, q, 0, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (fg_split_data_get_split (e)->labeled.n, ==, 12);
}

static void
test_reproducible (void)
{
  g_autoptr (FgDataset) ds = make_dataset (500, 4, 0, 0);
  g_autoptr (FgParams) p = split_params ("labeled", "8", "validation", "20", "test", "100", NULL);
  g_autoptr (FgSplitData) a = fg_split_data_new (ds, p, 3, NULL);
  g_autoptr (FgSplitData) b = fg_split_data_new (ds, p, 3, NULL);
  g_autoptr (FgSplitData) c = fg_split_data_new (ds, p, 4, NULL);
  gsize na, nb, nc;
  const guint32 *ia, *ib, *ic;

  g_assert_cmpstr (fg_split_data_get_split (a)->fingerprint, ==,
                   fg_split_data_get_split (b)->fingerprint);
  g_assert_cmpstr (fg_split_data_get_split (a)->fingerprint, !=,
                   fg_split_data_get_split (c)->fingerprint);
  ia = fg_split_data_get_indices (a, "labeled", &na);
  ib = fg_split_data_get_indices (b, "labeled", &nb);
  ic = fg_split_data_get_indices (c, "labeled", &nc);
  g_assert_cmpmem (ia, na * 4, ib, nb * 4);
  g_assert_true (na != nc || memcmp (ia, ic, na * 4) != 0);
  /* the held-out test set depends on data_seed only */
  ia = fg_split_data_get_indices (a, "test", &na);
  ic = fg_split_data_get_indices (c, "test", &nc);
  g_assert_cmpmem (ia, na * 4, ic, nc * 4);
}

static void
test_too_many_for_class (void)
{
  g_autoptr (FgDataset) ds = make_dataset (30, 3, 0, 10);
  g_autoptr (FgParams) p = split_params ("labeled_per_class", "11", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (FgSplitData) d = fg_split_data_new (ds, p, 0, &error);
  g_assert_null (d);
  g_assert_error (error, FG_ERROR, FG_ERROR_DATA);
  g_assert_nonnull (strstr (error->message, "'labeled_per_class' = 11"));
  g_assert_nonnull (strstr (error->message, "needs 11 labeled examples of class 0"));
  g_assert_nonnull (strstr (error->message, "only 10 are available"));
}

static void
test_bad_combinations (void)
{
  g_autoptr (FgDataset) with_test = make_dataset (30, 3, 0, 10);
  g_autoptr (FgDataset) without_test = make_dataset (30, 3, 0, 0);
  static const struct {
    gboolean has_test;
    const char *k1, *v1, *k2, *v2, *expect;
  } cases[] = {
    { TRUE, "labeled", "3", "labeled_per_class", "1", "exclude each other" },
    { TRUE, "test", "5", NULL, NULL, "has its own test part" },
    { FALSE, "labeled", "3", NULL, NULL, "has no test part; set test = N" },
    { TRUE, "unlabeled", "100", NULL, NULL, "'unlabeled': asks for 100 rows" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (FgParams) p = split_params (cases[i].k1, cases[i].v1, cases[i].k2, cases[i].v2,
                                             NULL);
      g_autoptr (GError) error = NULL;
      g_autoptr (FgSplitData) d
          = fg_split_data_new (cases[i].has_test ? with_test : without_test, p, 0, &error);
      g_assert_null (d);
      g_assert_nonnull (error);
      if (strstr (error->message, cases[i].expect) == NULL)
        g_error ("case %u: '%s' lacks '%s'", i, error->message, cases[i].expect);
    }
  {
    FgParams *p = fg_params_new (fg_split_param_specs ());
    g_autoptr (GError) error = NULL;
    /* labeled = 0 is refused at parse time? No: it is in range; the split refuses it. */
    g_assert_true (fg_params_set (p, "labeled", "0", &error));
    g_assert_null (fg_split_data_new (with_test, p, 0, &error));
    g_assert_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM);
    fg_params_free (p);
  }
}

static void
test_unknown_labels_and_own_subset (void)
{
  g_autoptr (FgDataset) ds = make_dataset (90, 3, 3, 0); /* every 3rd row unknown: class 2 gone */
  static const guint32 own[] = { 0, 1, 3, 4 };
  g_autoptr (FgParams) p = split_params ("test", "20", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (FgSplitData) d = NULL;
  const guint32 *lab, *test;
  gsize n, nt;

  fg_dataset_set_labeled_indices (ds, own, G_N_ELEMENTS (own));
  g_assert_true (fg_dataset_finish (ds, &error));
  d = fg_split_data_new (ds, p, 5, &error);
  g_assert_no_error (error);
  lab = fg_split_data_get_indices (d, "labeled", &n);
  g_assert_cmpuint (n, ==, 4);
  g_assert_cmpmem (lab, n * 4, own, sizeof own);
  /* the test draw never takes the reserved labeled rows nor rows without labels */
  test = fg_split_data_get_indices (d, "test", &nt);
  g_assert_cmpuint (nt, ==, 20);
  for (gsize i = 0; i < nt; i++)
    {
      g_assert_true (test[i] % 3 != 2);
      for (gsize j = 0; j < n; j++)
        g_assert_cmpuint (test[i], !=, lab[j]);
    }
  /* the unknown rows all end up unlabeled */
  g_assert_cmpuint (fg_split_data_get_split (d)->unlabeled.n, ==, 90 - 4 - 20);
  check_disjoint_cover (d, 90, TRUE, TRUE);
}

static void
test_all_labeled (void)
{
  g_autoptr (FgDataset) ds = make_dataset (60, 3, 0, 6);
  g_autoptr (FgParams) p = split_params ("validation", "6", NULL);
  g_autoptr (FgSplitData) d = fg_split_data_new (ds, p, 0, NULL);
  g_assert_nonnull (d);
  g_assert_cmpuint (fg_split_data_get_split (d)->labeled.n, ==, 54);
  g_assert_cmpuint (fg_split_data_get_split (d)->unlabeled.n, ==, 0);
}

static void
test_index_files (void)
{
  g_autoptr (FgDataset) ds = make_dataset (100, 2, 0, 10);
  g_autofree char *dir = g_dir_make_tmp ("fgsplit-XXXXXX", NULL);
  g_autofree char *list0 = g_build_filename (dir, "labeled_seed0.txt", NULL);
  g_autofree char *list1 = g_build_filename (dir, "labeled_seed1.txt", NULL);
  g_autofree char *tmpl = g_build_filename (dir, "labeled_seed{seed}.txt", NULL);
  g_autofree char *lines = g_build_filename (dir, "splits.txt", NULL);
  g_autofree char *gz = g_build_filename (dir, "splits.txt.gz", NULL);
  g_autofree char *bad = g_build_filename (dir, "bad.txt", NULL);
  g_autofree char *cmd = NULL;
  g_autoptr (GError) error = NULL;
  gsize n;
  const guint32 *idx;

  g_assert_true (g_file_set_contents (list0, "# rows\n5\n7, 9\n", -1, NULL));
  g_assert_true (g_file_set_contents (list1, "1 2 3\n", -1, NULL));
  g_assert_true (g_file_set_contents (lines, "10 20\n30 40 50\n60\n", -1, NULL));
  g_assert_true (g_file_set_contents (bad, "1\n2\n3x\n", -1, NULL));
  cmd = g_strdup_printf ("gzip -c '%s' > '%s'", lines, gz);
  g_assert_cmpint (system (cmd), ==, 0);

  for (guint64 seed = 0; seed < 2; seed++)
    {
      g_autoptr (FgParams) p = split_params ("labeled_indices", tmpl, NULL);
      g_autoptr (FgSplitData) d = fg_split_data_new (ds, p, seed, &error);
      g_assert_no_error (error);
      idx = fg_split_data_get_indices (d, "labeled", &n);
      g_assert_cmpuint (n, ==, 3);
      g_assert_cmpuint (idx[0], ==, seed == 0 ? 5 : 1);
    }
  for (int use_gz = 0; use_gz < 2; use_gz++)
    {
      g_autoptr (FgParams) p = split_params ("labeled_indices", use_gz ? gz : lines,
                                             "labeled_indices_format", "line-per-seed", NULL);
      g_autoptr (FgSplitData) d = fg_split_data_new (ds, p, 1, &error);
      g_assert_no_error (error);
      idx = fg_split_data_get_indices (d, "labeled", &n);
      g_assert_cmpuint (n, ==, 3);
      g_assert_cmpuint (idx[2], ==, 50);
      /* seed 3 has no line */
      g_clear_pointer (&d, fg_split_data_free);
      d = fg_split_data_new (ds, p, 3, &error);
      g_assert_null (d);
      g_assert_error (error, FG_ERROR, FG_ERROR_DATA);
      g_assert_nonnull (strstr (error->message, "no line for seed 3"));
      g_clear_error (&error);
    }
  {
    g_autoptr (FgParams) p = split_params ("labeled_indices", bad, NULL);
    g_autoptr (FgSplitData) d = fg_split_data_new (ds, p, 0, &error);
    g_assert_null (d);
    g_assert_error (error, FG_ERROR, FG_ERROR_DATA);
    g_assert_nonnull (strstr (error->message, "bad.txt"));
    g_assert_nonnull (strstr (error->message, ":3: '3x'"));
    g_clear_error (&error);
  }
  {
    g_autoptr (FgParams) p = split_params ("labeled_indices", list1, "validation_indices", list1,
                                           NULL);
    g_autoptr (FgSplitData) d = NULL;
    g_autoptr (FgDataset) nt = make_dataset (100, 2, 0, 10);
    d = fg_split_data_new (nt, p, 0, &error);
    g_assert_null (d);
    g_assert_nonnull (strstr (error->message, "already in the labeled set"));
    /* Both files are named. */
    g_assert_nonnull (strstr (error->message, "(listed in "));
    g_assert_nonnull (strstr (error->message, "(from "));
    g_assert_nonnull (strstr (error->message, "labeled_seed1.txt"));
    g_clear_error (&error);
  }
  /* A row listed twice names the file; an empty file is an error that says so. */
  {
    g_autofree char *twice = g_build_filename (dir, "twice.txt", NULL);
    g_autofree char *empty = g_build_filename (dir, "empty.txt", NULL);
    g_assert_true (g_file_set_contents (twice, "1\n2\n1\n", -1, NULL));
    g_assert_true (g_file_set_contents (empty, "# nothing\n", -1, NULL));
    {
      g_autoptr (FgParams) p = split_params ("labeled_indices", twice, NULL);
      g_autoptr (FgSplitData) d = fg_split_data_new (ds, p, 0, &error);
      g_assert_null (d);
      g_assert_nonnull (strstr (error->message, "listed twice"));
      g_assert_nonnull (strstr (error->message, "twice.txt"));
      g_clear_error (&error);
    }
    for (guint k = 0; k < 2; k++)
      {
        g_autoptr (FgParams) p = split_params (k == 0 ? "labeled_indices" : "validation_indices",
                                               empty, NULL);
        g_autoptr (FgSplitData) d = fg_split_data_new (ds, p, 0, &error);
        g_assert_null (d);
        g_assert_error (error, FG_ERROR, FG_ERROR_DATA);
        g_assert_nonnull (strstr (error->message, "empty.txt lists no rows"));
        g_clear_error (&error);
      }
    g_unlink (twice);
    g_unlink (empty);
  }
  {
    g_autofree char *big = g_build_filename (dir, "big.txt", NULL);
    g_autoptr (FgParams) p = split_params ("labeled_indices", big, NULL);
    g_autoptr (FgSplitData) d = NULL;
    g_assert_true (g_file_set_contents (big, "1\n100\n", -1, NULL));
    d = fg_split_data_new (ds, p, 0, &error);
    g_assert_null (d);
    g_assert_nonnull (strstr (error->message, ":2: index 100 is out of range"));
    g_clear_error (&error);
    g_unlink (big);
  }
  {
    g_autoptr (FgParams) p = split_params ("labeled_indices", "/nonexistent/x{seed}.txt", NULL);
    g_autoptr (FgSplitData) d = fg_split_data_new (ds, p, 0, &error);
    g_assert_null (d);
    g_assert_error (error, FG_ERROR, FG_ERROR_IO);
    g_assert_nonnull (strstr (error->message, "/nonexistent/x0.txt"));
  }
  g_unlink (list0);
  g_unlink (list1);
  g_unlink (lines);
  g_unlink (gz);
  g_unlink (bad);
  g_rmdir (dir);
}

static void
test_index_file_truncated_gzip (void)
{
  g_autoptr (FgDataset) ds = make_dataset (100, 2, 0, 10);
  g_autofree char *dir = g_dir_make_tmp ("fgsplit-XXXXXX", NULL);
  g_autofree char *lines = g_build_filename (dir, "splits.txt", NULL);
  g_autofree char *gz = g_build_filename (dir, "splits.txt.gz", NULL);
  g_autofree char *cut = g_build_filename (dir, "cut.txt.gz", NULL);
  g_autofree char *cmd = NULL, *data = NULL;
  g_autoptr (GString) text = g_string_new (NULL);
  g_autoptr (GError) error = NULL;
  gsize len;

  for (int line = 0; line < 200; line++)
    g_string_append_printf (text, "%d %d %d\n", line % 97, (line + 1) % 97, (line + 2) % 97);
  g_assert_true (g_file_set_contents (lines, text->str, (gssize) text->len, NULL));
  cmd = g_strdup_printf ("gzip -c '%s' > '%s'", lines, gz);
  g_assert_cmpint (system (cmd), ==, 0);
  g_assert_true (g_file_get_contents (gz, &data, &len, NULL));
  g_assert_true (g_file_set_contents (cut, data, (gssize) (len / 2), NULL));
  {
    g_autoptr (FgParams) p = split_params ("labeled_indices", cut, "labeled_indices_format",
                                           "line-per-seed", NULL);
    g_autoptr (FgSplitData) d = fg_split_data_new (ds, p, 0, &error);
    g_assert_null (d);
    g_assert_error (error, FG_ERROR, FG_ERROR_CORRUPT);
    g_assert_nonnull (strstr (error->message, "cut.txt.gz: truncated compressed file"));
    g_assert_nonnull (strstr (error->message, "split key 'labeled_indices'"));
  }
  g_unlink (lines);
  g_unlink (gz);
  g_unlink (cut);
  g_rmdir (dir);
}

static void
test_dataset_checks (void)
{
  g_autoptr (GError) error = NULL;
  {
    g_autoptr (FgDataset) ds = fg_dataset_new ("nan-set");
    FgTensor *x = fg_tensor_new_2d (4, 3);
    gint32 *y = g_new0 (gint32, 4);
    fg_tensor_row (x, 2)[1] = NAN;
    g_assert_false (fg_dataset_set_part (ds, FG_PART_TRAIN, x, y, &error));
    g_assert_error (error, FG_ERROR, FG_ERROR_DATA);
    g_assert_nonnull (strstr (error->message, "nan-set: train part: non-finite value"));
    g_assert_nonnull (strstr (error->message, "row 2, column 1"));
    g_clear_error (&error);
    fg_tensor_free (x); /* not taken */
    g_free (y);
  }
  {
    g_autoptr (FgDataset) ds = fg_dataset_new ("range-set");
    FgTensor *x = fg_tensor_new_2d (3, 2);
    gint32 *y = g_new0 (gint32, 3);
    y[1] = 5;
    fg_dataset_set_classes (ds, 3, NULL);
    g_assert_false (fg_dataset_set_part (ds, FG_PART_TRAIN, x, y, &error));
    g_assert_nonnull (strstr (error->message, "label 5 at row 1 is outside the 3 classes"));
    g_clear_error (&error);
    fg_tensor_free (x);
    g_free (y);
  }
  {
    g_autoptr (FgDataset) ds = fg_dataset_new ("one-class");
    FgTensor *x = fg_tensor_new_2d (3, 2);
    gint32 *y = g_new0 (gint32, 3);
    g_assert_true (fg_dataset_set_part (ds, FG_PART_TRAIN, x, y, &error));
    g_assert_false (fg_dataset_finish (ds, &error));
    g_assert_error (error, FG_ERROR, FG_ERROR_DATA);
    g_assert_nonnull (strstr (error->message, "only one class"));
    g_clear_error (&error);
  }
  {
    g_autoptr (FgDataset) ds = fg_dataset_new ("width");
    FgTensor *a = fg_tensor_new_2d (3, 2), *b = fg_tensor_new_2d (3, 4);
    g_assert_true (fg_dataset_set_part (ds, FG_PART_TRAIN, a, g_new0 (gint32, 3), &error));
    g_assert_false (fg_dataset_set_part (ds, FG_PART_TEST, b, NULL, &error));
    g_assert_nonnull (strstr (error->message, "test part has 4 features but the train part has 2"));
    g_clear_error (&error);
    fg_tensor_free (b);
  }
  {
    g_autoptr (FgDataset) ds = fg_dataset_new ("images");
    FgTensor *x = fg_tensor_new_2d (5, 12);
    gint32 *y = g_new0 (gint32, 5);
    const FgDataPart *part;
    y[3] = 1;
    g_assert_true (fg_dataset_set_part (ds, FG_PART_TRAIN, x, y, &error));
    g_assert_false (fg_dataset_set_image_shape (ds, 1, 3, 3, &error));
    g_assert_nonnull (strstr (error->message, "12 values per example, not 1x3x3"));
    g_clear_error (&error);
    g_assert_true (fg_dataset_set_image_shape (ds, 3, 2, 2, &error));
    g_assert_true (fg_dataset_finish (ds, &error));
    part = fg_dataset_get_part (ds, FG_PART_TRAIN);
    g_assert_cmpuint (part->x.ndim, ==, 4);
    g_assert_cmpuint (part->x.shape[1], ==, 3);
    g_assert_cmpuint (fg_dataset_get_sample_shape (ds)->ndim, ==, 3);
    g_assert_cmpuint (fg_dataset_get_dim (ds), ==, 12);
    g_assert_cmpuint (fg_dataset_get_n_classes (ds), ==, 2);
  }
}

static void
test_image_split_keeps_shape (void)
{
  g_autoptr (FgDataset) ds = fg_dataset_new ("images");
  g_autoptr (GError) error = NULL;
  FgTensor *x = fg_tensor_new_2d (20, 8);
  gint32 *y = g_new (gint32, 20);
  g_autoptr (FgParams) p = split_params ("labeled", "4", "test", "4", NULL);
  g_autoptr (FgSplitData) d = NULL;
  for (int i = 0; i < 20; i++)
    y[i] = i % 2, fg_tensor_row (x, (gsize) i)[5] = (float) i;
  g_assert_true (fg_dataset_set_part (ds, FG_PART_TRAIN, x, y, &error));
  g_assert_true (fg_dataset_set_image_shape (ds, 2, 2, 2, &error));
  g_assert_true (fg_dataset_finish (ds, &error));
  d = fg_split_data_new (ds, p, 0, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (fg_split_data_get_split (d)->labeled.x.ndim, ==, 4);
  g_assert_cmpuint (fg_split_data_get_split (d)->shape.ndim, ==, 3);
  g_assert_cmpuint (fg_split_data_get_test (d)->x.shape[3], ==, 2);
}


/* ---- preprocessing --------------------------------------------------------------------------- */

/* A train part of n rows, D features: row i = A z_i + 3 with z_i ~ N(0, diag(scales²)), A a
 * fixed random mix; labels i % 2.  Optionally a validation part and a test part whose values
 * are shifted far away (+1000 and -500), so that any leak of them into the fitted statistics
 * shows. */
static FgDataset *
make_gaussian_dataset (gsize n, gsize D, const double *scales, gboolean with_val,
                       gboolean with_test)
{
  FgDataset *ds = fg_dataset_new ("gaussian");
  g_autoptr (GError) error = NULL;
  g_autofree double *A = g_new (double, D * D);
  FgRng rng;
  fg_rng_init (&rng, 99, 0);
  for (gsize a = 0; a < D * D; a++)
    A[a] = fg_rng_normal (&rng);
  for (int p = 0; p < 3; p++)
    {
      gsize rows = p == 0 ? n : 40;
      double shift = p == 0 ? 0.0 : p == 1 ? 1000.0 : -500.0;
      FgTensor *x;
      gint32 *y;
      if ((p == 1 && !with_val) || (p == 2 && !with_test))
        continue;
      x = fg_tensor_new_2d (rows, D);
      y = g_new (gint32, rows);
      for (gsize i = 0; i < rows; i++)
        {
          g_autofree double *z = g_new (double, D);
          for (gsize j = 0; j < D; j++)
            z[j] = scales[j] * fg_rng_normal (&rng);
          for (gsize r = 0; r < D; r++)
            {
              double v = 3.0 + shift;
              for (gsize j = 0; j < D; j++)
                v += A[r * D + j] * z[j];
              fg_tensor_row (x, i)[r] = (float) v;
            }
          y[i] = (gint32) (i % 2);
        }
      g_assert_true (fg_dataset_set_part (ds, p == 0 ? FG_PART_TRAIN : p == 1 ? FG_PART_VAL
                                                                          : FG_PART_TEST,
                                          x, y, &error));
    }
  g_assert_true (fg_dataset_finish (ds, &error));
  return ds;
}

/* Rows of the original train part that form the split's training sets. */
static void
training_stats (FgDataset *ds, FgSplitData *d, gsize D, double *mean, double *sd)
{
  const FgDataPart *train = fg_dataset_get_part (ds, FG_PART_TRAIN);
  const char *sets[] = { "labeled", "unlabeled" };
  gsize n = 0;
  memset (mean, 0, D * sizeof *mean);
  memset (sd, 0, D * sizeof *sd);
  for (int pass = 0; pass < 2; pass++)
    for (int s = 0; s < 2; s++)
      {
        gsize m;
        const guint32 *idx = fg_split_data_get_indices (d, sets[s], &m);
        for (gsize i = 0; i < m; i++)
          {
            const float *row = fg_tensor_row (&train->x, idx[i]);
            for (gsize j = 0; j < D; j++)
              {
                if (pass == 0)
                  mean[j] += row[j];
                else
                  sd[j] += (row[j] - mean[j]) * (row[j] - mean[j]);
              }
            if (pass == 0)
              n++;
          }
        if (pass == 0 && s == 1)
          for (gsize j = 0; j < D; j++)
            mean[j] /= (double) n;
      }
  for (gsize j = 0; j < D; j++)
    sd[j] = sqrt (sd[j] / (double) n);
}

static void
test_preprocess_none (void)
{
  g_autoptr (FgDataset) ds = make_dataset (60, 3, 0, 10);
  g_autoptr (FgParams) p = split_params ("labeled", "6", NULL);
  g_autoptr (FgSplitData) d = fg_split_data_new (ds, p, 0, NULL);
  const FgSplit *s = fg_split_data_get_split (d);
  g_assert_nonnull (s->preprocessing);
  g_assert_cmpstr (s->preprocessing->description, ==, "none");
  g_assert_true (s->preprocessing->invertible);
  g_assert_nonnull (s->preprocessing->labeled_logdet);
  g_assert_nonnull (s->preprocessing->test_logdet);
  g_assert_null (s->preprocessing->validation_logdet); /* no validation set */
  for (gsize i = 0; i < s->labeled.n; i++)
    g_assert_cmpfloat (s->preprocessing->labeled_logdet[i], ==, 0.0);
  /* untouched: row = (i, 2i, -i) */
  g_assert_cmpfloat (fg_tensor_row (&s->labeled.x, 0)[1], ==,
                     2.0f * fg_tensor_row (&s->labeled.x, 0)[0]);
}

/* The unlabeled pool appends labeled and validation inputs, preprocessed with the statistics
 * of labeled + rest, after the rest. */
static void
test_unlabeled_pool (void)
{
  static const double scales[4] = { 5.0, 2.0, 1.0, 0.5 };
  g_autoptr (FgDataset) ds = make_gaussian_dataset (500, 4, scales, TRUE, TRUE);
  const char *pools[] = { "rest", "rest+val", "train", "train+val" };
  g_autoptr (FgSplitData) base = NULL;
  const FgSplit *b = NULL;
  g_autofree char *fp_rest = NULL;

  for (guint k = 0; k < G_N_ELEMENTS (pools); k++)
    {
      g_autoptr (FgParams) p = split_params ("labeled", "20", "unlabeled", "300", "validation",
                                             "40", "standardize", "true", "unlabeled_pool",
                                             pools[k], NULL);
      g_autoptr (GError) error = NULL;
      FgSplitData *d = fg_split_data_new (ds, p, 3, &error);
      const FgSplit *s;
      gboolean with_val = k == 1 || k == 3, with_lab = k >= 2;
      gsize n_rest, n_idx;
      const guint32 *idx;

      g_assert_no_error (error);
      s = fg_split_data_get_split (d);
      if (k == 0)
        {
          base = d;
          b = s;
          fp_rest = g_strdup (s->fingerprint);
          g_assert_cmpuint (s->unlabeled.n, ==, 300);
          continue;
        }
      n_rest = b->unlabeled.n;
      g_assert_cmpuint (s->unlabeled.n, ==,
                        n_rest + (with_val ? 40 : 0) + (with_lab ? 20 : 0));
      g_assert_cmpstr (s->fingerprint, !=, fp_rest);
      /* the same statistics: the rest and the labeled rows are unchanged */
      g_assert_cmpmem (s->unlabeled.x.data, n_rest * 4 * sizeof (float), b->unlabeled.x.data,
                       n_rest * 4 * sizeof (float));
      g_assert_cmpmem (s->labeled.x.data, 20 * 4 * sizeof (float), b->labeled.x.data,
                       20 * 4 * sizeof (float));
      if (with_lab)
        g_assert_cmpmem (fg_tensor_row (&s->unlabeled.x, n_rest), 20 * 4 * sizeof (float),
                         b->labeled.x.data, 20 * 4 * sizeof (float));
      if (with_val)
        g_assert_cmpmem (fg_tensor_row (&s->unlabeled.x, n_rest + (with_lab ? 20 : 0)),
                         40 * 4 * sizeof (float), b->validation.x.data, 40 * 4 * sizeof (float));
      g_assert_cmpfloat (s->preprocessing->unlabeled_logdet[s->unlabeled.n - 1], ==,
                         b->preprocessing->labeled_logdet[0]);
      /* the data set's own validation part is not a row of the train part: not listed */
      idx = fg_split_data_get_indices (d, "unlabeled", &n_idx);
      g_assert_cmpuint (n_idx, ==, n_rest + (with_lab ? 20 : 0));
      for (gsize i = 1; i < n_idx; i++)
        g_assert_cmpuint (idx[i - 1], <, idx[i]);
      fg_split_data_free (d);
    }
}

static void
test_preprocess_standardize (void)
{
  static const double scales[4] = { 5.0, 2.0, 1.0, 0.5 };
  g_autoptr (FgDataset) ds = make_gaussian_dataset (500, 4, scales, TRUE, TRUE);
  g_autoptr (FgParams) p = split_params ("labeled", "20", "unlabeled", "300", "standardize",
                                         "true", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (FgSplitData) d = fg_split_data_new (ds, p, 3, &error);
  const FgSplit *s;
  const FgDataPart *test;
  double mean[4], sd[4], m2[4] = { 0 }, v2[4] = { 0 }, logdet = 0.0;
  gsize n = 0;

  g_assert_no_error (error);
  s = fg_split_data_get_split (d);
  test = fg_split_data_get_test (d);
  g_assert_cmpstr (s->preprocessing->description, ==, "standardize");
  g_assert_true (s->preprocessing->invertible);
  training_stats (ds, d, 4, mean, sd);
  for (int j = 0; j < 4; j++)
    logdet -= log (sd[j]);
  /* the training sets together: mean 0, standard deviation 1 */
  for (int set = 0; set < 2; set++)
    {
      const FgDataPart *part = set == 0 ? &s->labeled : &s->unlabeled;
      for (gsize i = 0; i < part->n; i++, n++)
        for (int j = 0; j < 4; j++)
          {
            double v = fg_tensor_row (&part->x, i)[j];
            m2[j] += v;
            v2[j] += v * v;
          }
    }
  for (int j = 0; j < 4; j++)
    {
      g_assert_cmpfloat_with_epsilon (m2[j] / (double) n, 0.0, 1e-5);
      g_assert_cmpfloat_with_epsilon (v2[j] / (double) n, 1.0, 1e-4);
    }
  /* validation and test use the training statistics (their shift stays visible) */
  for (gsize i = 0; i < test->n; i++)
    for (int j = 0; j < 4; j++)
      {
        const float *orig = fg_tensor_row (&fg_dataset_get_part (ds, FG_PART_TEST)->x, i);
        g_assert_cmpfloat_with_epsilon (fg_tensor_row (&test->x, i)[j],
                                        (orig[j] - mean[j]) / sd[j], 1e-3);
      }
  g_assert_cmpfloat (fg_tensor_row (&s->validation.x, 0)[0], >, 50.0);
  /* log-det: -Σ log σ for every example of every set */
  g_assert_cmpfloat_with_epsilon (s->preprocessing->labeled_logdet[3], logdet, 1e-9);
  g_assert_cmpfloat_with_epsilon (s->preprocessing->validation_logdet[0], logdet, 1e-9);
  g_assert_cmpfloat_with_epsilon (s->preprocessing->test_logdet[test->n - 1], logdet, 1e-9);
}

/* Solve the D×D system M w = b in place (Gaussian elimination, partial pivoting). */
static void
solve (double *M, double *b, gsize D)
{
  for (gsize c = 0; c < D; c++)
    {
      gsize piv = c;
      for (gsize r = c + 1; r < D; r++)
        if (fabs (M[r * D + c]) > fabs (M[piv * D + c]))
          piv = r;
      for (gsize k = 0; k < D; k++)
        {
          double t = M[c * D + k];
          M[c * D + k] = M[piv * D + k];
          M[piv * D + k] = t;
        }
      {
        double t = b[c];
        b[c] = b[piv];
        b[piv] = t;
      }
      for (gsize r = 0; r < D; r++)
        if (r != c)
          {
            double f = M[r * D + c] / M[c * D + c];
            for (gsize k = c; k < D; k++)
              M[r * D + k] -= f * M[c * D + k];
            b[r] -= f * b[c];
          }
    }
  for (gsize c = 0; c < D; c++)
    b[c] /= M[c * D + c];
}

static void
test_preprocess_pca (void)
{
  static const double scales[5] = { 5.0, 3.0, 2.0, 1.0, 0.5 };
  const gsize D = 5, k = 3;
  g_autoptr (FgDataset) ds = make_gaussian_dataset (2000, D, scales, FALSE, FALSE);
  g_autoptr (FgParams) p = split_params ("labeled", "40", "test", "100", "pca", "3", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (FgSplitData) d = fg_split_data_new (ds, p, 1, &error);
  g_autoptr (FgSplitData) again = NULL;
  const FgDataPart *train = fg_dataset_get_part (ds, FG_PART_TRAIN);
  const FgSplit *s;
  double mean[5], sd[5], cov_y[3][3] = { { 0 } }, W[5][3];
  double xtx[25] = { 0 }, xty[5][3] = { { 0 } };
  gsize n = 0;
  const char *sets[] = { "labeled", "unlabeled" };

  g_assert_no_error (error);
  s = fg_split_data_get_split (d);
  g_assert_cmpstr (s->preprocessing->description, ==, "pca(3)");
  g_assert_false (s->preprocessing->invertible);
  g_assert_null (s->preprocessing->labeled_logdet);
  g_assert_cmpuint (s->dim, ==, k);
  g_assert_cmpuint (s->shape.ndim, ==, 1);
  g_assert_cmpuint (s->shape.dims[0], ==, k);
  g_assert_cmpuint (fg_tensor_cols (&s->labeled.x), ==, k);
  g_assert_cmpuint (fg_tensor_cols (&fg_split_data_get_test (d)->x), ==, k);
  training_stats (ds, d, D, mean, sd);

  /* Recover W from the training rows by least squares (Xcᵀ Xc) W = Xcᵀ Y and check it. */
  for (int set = 0; set < 2; set++)
    {
      gsize m;
      const guint32 *idx = fg_split_data_get_indices (d, sets[set], &m);
      const FgDataPart *part = set == 0 ? &s->labeled : &s->unlabeled;
      for (gsize i = 0; i < m; i++, n++)
        {
          const float *x = fg_tensor_row (&train->x, idx[i]);
          const float *y = fg_tensor_row (&part->x, i);
          for (gsize a = 0; a < D; a++)
            {
              for (gsize b = 0; b < D; b++)
                xtx[a * D + b] += (x[a] - mean[a]) * (x[b] - mean[b]);
              for (gsize c = 0; c < k; c++)
                xty[a][c] += (x[a] - mean[a]) * y[c];
            }
          for (gsize a = 0; a < k; a++)
            for (gsize b = 0; b < k; b++)
              cov_y[a][b] += (double) y[a] * y[b];
        }
    }
  for (gsize c = 0; c < k; c++)
    {
      double M[25], b[5], best = -1, norm = 0;
      gsize arg = 0;
      memcpy (M, xtx, sizeof M);
      for (gsize a = 0; a < D; a++)
        b[a] = xty[a][c];
      solve (M, b, D);
      for (gsize a = 0; a < D; a++)
        {
          W[a][c] = b[a];
          norm += b[a] * b[a];
          if (fabs (b[a]) > best)
            best = fabs (b[a]), arg = a;
        }
      g_assert_cmpfloat_with_epsilon (norm, 1.0, 1e-4);   /* unit components */
      g_assert_cmpfloat (W[arg][c], >, 0.0);             /* sign rule */
    }
  for (gsize a = 0; a < k; a++)
    for (gsize b = 0; b < k; b++)
      {
        double dot = 0;
        for (gsize r = 0; r < D; r++)
          dot += W[r][a] * W[r][b];
        if (a != b)
          g_assert_cmpfloat_with_epsilon (dot, 0.0, 1e-4); /* orthogonal */
        cov_y[a][b] /= (double) n;
        if (a != b)
          g_assert_cmpfloat_with_epsilon (cov_y[a][b], 0.0, 1e-3 * cov_y[0][0]);
      }
  /* decreasing variances, and the top one is the largest Rayleigh quotient: compare with the
   * power iteration on the reference covariance */
  g_assert_cmpfloat (cov_y[0][0], >, cov_y[1][1]);
  g_assert_cmpfloat (cov_y[1][1], >, cov_y[2][2]);
  {
    double v[5] = { 1, 1, 1, 1, 1 }, lambda = 0;
    for (int it = 0; it < 500; it++)
      {
        double nv[5] = { 0 }, norm = 0;
        for (gsize a = 0; a < D; a++)
          for (gsize b = 0; b < D; b++)
            nv[a] += xtx[a * D + b] / (double) n * v[b];
        for (gsize a = 0; a < D; a++)
          norm += nv[a] * nv[a];
        norm = sqrt (norm);
        lambda = norm;
        for (gsize a = 0; a < D; a++)
          v[a] = nv[a] / norm;
      }
    g_assert_cmpfloat_with_epsilon (cov_y[0][0] / lambda, 1.0, 1e-4);
  }
  /* the test rows get the same projection */
  {
    gsize m;
    const guint32 *idx = fg_split_data_get_indices (d, "test", &m);
    const FgDataPart *test = fg_split_data_get_test (d);
    for (gsize i = 0; i < m; i++)
      for (gsize c = 0; c < k; c++)
        {
          double want = 0;
          for (gsize a = 0; a < D; a++)
            want += (fg_tensor_row (&train->x, idx[i])[a] - mean[a]) * W[a][c];
          g_assert_cmpfloat_with_epsilon (fg_tensor_row (&test->x, i)[c], want, 2e-3);
        }
  }
  /* bit-reproducible */
  again = fg_split_data_new (ds, p, 1, &error);
  g_assert_cmpmem (s->labeled.x.data, s->labeled.n * k * sizeof (float),
                   fg_split_data_get_split (again)->labeled.x.data, s->labeled.n * k * sizeof (float));
}

/* Features of scale 1e30: the covariance must not overflow its float products ("no variance"). */
static void
test_preprocess_pca_huge_scale (void)
{
  static const double scales[3] = { 4e30, 2e30, 1e30 };
  g_autoptr (FgDataset) ds = make_gaussian_dataset (800, 3, scales, FALSE, FALSE);
  g_autoptr (FgParams) p = split_params ("labeled", "10", "test", "50", "pca", "2",
                                         "pca_whiten", "true", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (FgSplitData) d = fg_split_data_new (ds, p, 2, &error);
  const FgSplit *s;
  double var = 0.0;

  g_assert_no_error (error);
  s = fg_split_data_get_split (d);
  for (gsize i = 0; i < s->unlabeled.n; i++)
    {
      float v = fg_tensor_row (&s->unlabeled.x, i)[0];
      g_assert_true (isfinite (v));
      var += (double) v * v;
    }
  /* whitened: unit variance, as at any scale */
  g_assert_cmpfloat_with_epsilon (var / (double) s->unlabeled.n, 1.0, 0.2);
}

static void
test_preprocess_pca_whiten_and_errors (void)
{
  static const double scales[3] = { 4.0, 2.0, 1.0 };
  g_autoptr (FgDataset) ds = make_gaussian_dataset (800, 3, scales, FALSE, FALSE);
  g_autoptr (FgParams) p = split_params ("labeled", "10", "test", "50", "standardize", "true",
                                         "pca", "3", "pca_whiten", "true", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (FgSplitData) d = fg_split_data_new (ds, p, 2, &error);
  const FgSplit *s;
  double cov[3][3] = { { 0 } }, mean[3], sd[3], logdet_std = 0.0, logdet_white = 0.0;
  gsize n = 0;

  g_assert_no_error (error);
  s = fg_split_data_get_split (d);
  g_assert_cmpstr (s->preprocessing->description, ==, "standardize pca(3,whiten)");
  g_assert_true (s->preprocessing->invertible); /* k = D: a rotation and scaling */
  for (int set = 0; set < 2; set++)
    {
      const FgDataPart *part = set == 0 ? &s->labeled : &s->unlabeled;
      for (gsize i = 0; i < part->n; i++, n++)
        for (int a = 0; a < 3; a++)
          for (int b = 0; b < 3; b++)
            cov[a][b] += (double) fg_tensor_row (&part->x, i)[a] * fg_tensor_row (&part->x, i)[b];
    }
  for (int a = 0; a < 3; a++)
    for (int b = 0; b < 3; b++)
      g_assert_cmpfloat_with_epsilon (cov[a][b] / (double) n, a == b ? 1.0 : 0.0, 1e-3);
  /* log-det: -Σ log σ_j - ½ Σ log λ_j (λ of the standardized covariance, whose product is its
   * determinant) */
  training_stats (ds, d, 3, mean, sd);
  for (int j = 0; j < 3; j++)
    logdet_std -= log (sd[j]);
  {
    /* determinant of the correlation matrix from the original training rows */
    const FgDataPart *train = fg_dataset_get_part (ds, FG_PART_TRAIN);
    const char *sets[] = { "labeled", "unlabeled" };
    double C[3][3] = { { 0 } }, det;
    for (int set = 0; set < 2; set++)
      {
        gsize m;
        const guint32 *idx = fg_split_data_get_indices (d, sets[set], &m);
        for (gsize i = 0; i < m; i++)
          for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++)
              C[a][b] += (fg_tensor_row (&train->x, idx[i])[a] - mean[a]) / sd[a]
                         * (fg_tensor_row (&train->x, idx[i])[b] - mean[b]) / sd[b] / (double) n;
      }
    det = C[0][0] * (C[1][1] * C[2][2] - C[1][2] * C[2][1])
          - C[0][1] * (C[1][0] * C[2][2] - C[1][2] * C[2][0])
          + C[0][2] * (C[1][0] * C[2][1] - C[1][1] * C[2][0]);
    logdet_white = -0.5 * log (det);
  }
  g_assert_cmpfloat_with_epsilon (s->preprocessing->labeled_logdet[0], logdet_std + logdet_white,
                                  1e-4);
  g_assert_cmpfloat_with_epsilon (s->preprocessing->test_logdet[7], logdet_std + logdet_white,
                                  1e-4);

  /* errors */
  {
    g_autoptr (FgParams) q = split_params ("labeled", "10", "test", "50", "pca", "4", NULL);
    g_autoptr (FgSplitData) e = fg_split_data_new (ds, q, 0, &error);
    g_assert_null (e);
    g_assert_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM);
    g_assert_nonnull (strstr (error->message, "split key 'pca' = 4: the examples have only 3 "
                                              "features"));
    g_clear_error (&error);
  }
  {
    g_autoptr (FgParams) q = split_params ("labeled", "10", "test", "50", "pca_whiten", "true",
                                           NULL);
    g_autoptr (FgSplitData) e = fg_split_data_new (ds, q, 0, &error);
    g_assert_null (e);
    g_assert_nonnull (strstr (error->message, "'pca_whiten' needs 'pca'"));
    g_clear_error (&error);
  }
  {
    /* a rank-deficient training set cannot be whitened to full dimension */
    g_autoptr (FgDataset) flat = make_dataset (60, 3, 0, 10); /* rows (i, 2i, -i): rank 1 */
    g_autoptr (FgParams) q = split_params ("labeled", "6", "pca", "2", "pca_whiten", "true",
                                           NULL);
    g_autoptr (FgSplitData) e = fg_split_data_new (flat, q, 0, &error);
    g_assert_null (e);
    g_assert_error (error, FG_ERROR, FG_ERROR_NUMERIC);
    g_assert_nonnull (strstr (error->message, "principal component 2 has no variance"));
    g_clear_error (&error);
  }
}

static void
test_preprocess_l2 (void)
{
  static const double scales[3] = { 4.0, 2.0, 1.0 };
  g_autoptr (FgDataset) ds = make_gaussian_dataset (100, 3, scales, TRUE, TRUE);
  g_autoptr (FgParams) p = split_params ("labeled", "10", "l2_normalize", "true", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (FgSplitData) d = fg_split_data_new (ds, p, 0, &error);
  const FgSplit *s;
  g_assert_no_error (error);
  s = fg_split_data_get_split (d);
  g_assert_cmpstr (s->preprocessing->description, ==, "l2_normalize");
  g_assert_false (s->preprocessing->invertible);
  g_assert_null (s->preprocessing->test_logdet);
  for (int set = 0; set < 4; set++)
    {
      const FgDataPart *part = set == 0   ? &s->labeled
                               : set == 1 ? &s->unlabeled
                               : set == 2 ? &s->validation
                                          : fg_split_data_get_test (d);
      for (gsize i = 0; i < part->n; i++)
        {
          const float *r = fg_tensor_row (&part->x, i);
          g_assert_cmpfloat_with_epsilon (r[0] * r[0] + r[1] * r[1] + r[2] * r[2], 1.0, 1e-5);
        }
    }
}

/* Images with pixel values k/255 (k = (7i + 13j) % 256), shape 1×4×4. */
static FgDataset *
make_image_dataset (gsize n, float bad_value)
{
  FgDataset *ds = fg_dataset_new ("pixels");
  g_autoptr (GError) error = NULL;
  for (int p = 0; p < 2; p++)
    {
      gsize rows = p == 0 ? n : 12;
      FgTensor *x = fg_tensor_new_2d (rows, 16);
      gint32 *y = g_new (gint32, rows);
      for (gsize i = 0; i < rows; i++)
        {
          for (gsize j = 0; j < 16; j++)
            fg_tensor_row (x, i)[j] = (float) ((7 * i + 13 * j + 5 * p) % 256) / 255.0f;
          y[i] = (gint32) (i % 2);
        }
      if (p == 1 && bad_value != 0.0f)
        fg_tensor_row (x, 5)[3] = bad_value;
      g_assert_true (fg_dataset_set_part (ds, p == 0 ? FG_PART_TRAIN : FG_PART_TEST, x, y,
                                          &error));
    }
  g_assert_true (fg_dataset_set_image_shape (ds, 1, 4, 4, &error));
  g_assert_true (fg_dataset_finish (ds, &error));
  return ds;
}

static void
test_preprocess_dequantize_logit (void)
{
  const double c = 0.9;
  g_autoptr (FgDataset) ds = make_image_dataset (200, 0.0f);
  g_autoptr (FgParams) p = split_params ("labeled", "10", "dequantize_logit", "true", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (FgSplitData) d = fg_split_data_new (ds, p, 4, &error);
  g_autoptr (FgSplitData) same = fg_split_data_new (ds, p, 4, NULL);
  g_autoptr (FgSplitData) other = fg_split_data_new (ds, p, 5, NULL);
  const FgDataPart *train = fg_dataset_get_part (ds, FG_PART_TRAIN);
  const FgSplit *s;
  gsize m;
  const guint32 *idx;

  g_assert_no_error (error);
  s = fg_split_data_get_split (d);
  g_assert_cmpstr (s->preprocessing->description, ==, "dequantize_logit(0.9)");
  g_assert_true (s->preprocessing->invertible);
  g_assert_cmpuint (s->labeled.x.ndim, ==, 4); /* the image shape stays */
  g_assert_cmpuint (s->shape.ndim, ==, 3);
  idx = fg_split_data_get_indices (d, "unlabeled", &m);
  for (gsize i = 0; i < m; i++)
    {
      const float *y = fg_tensor_row (&s->unlabeled.x, i);
      const float *x = fg_tensor_row (&train->x, idx[i]);
      double logdet = 0.0;
      for (gsize j = 0; j < 16; j++)
        {
          /* invert: p = sigmoid(y), u = (p - 0.5)/c + 0.5 lies in the pixel's bin */
          double pr = 1.0 / (1.0 + exp (-(double) y[j]));
          double u = (pr - 0.5) / c + 0.5;
          double k = round (x[j] * 255.0);
          g_assert_cmpfloat (u, >=, k / 256.0 - 1e-6);
          g_assert_cmpfloat (u, <=, (k + 1.0) / 256.0 + 1e-6);
          logdet += log (c) - log (pr) - log1p (-pr);
        }
      g_assert_cmpfloat_with_epsilon (s->preprocessing->unlabeled_logdet[i], logdet,
                                      1e-4 * fabs (logdet));
    }
  /* the noise depends on the seed only */
  g_assert_cmpmem (s->unlabeled.x.data, m * 16 * sizeof (float),
                   fg_split_data_get_split (same)->unlabeled.x.data, m * 16 * sizeof (float));
  g_assert_true (memcmp (s->unlabeled.x.data, fg_split_data_get_split (other)->unlabeled.x.data,
                         m * 16 * sizeof (float))
                 != 0);
  g_assert_nonnull (s->preprocessing->test_logdet);

  /* with standardize: the log-dets add */
  {
    g_autoptr (FgParams) q = split_params ("labeled", "10", "dequantize_logit", "true",
                                           "standardize", "true", NULL);
    g_autoptr (FgSplitData) e = fg_split_data_new (ds, q, 4, &error);
    const FgSplit *t;
    double log_sd = 0.0;
    g_assert_no_error (error);
    t = fg_split_data_get_split (e);
    g_assert_cmpstr (t->preprocessing->description, ==, "dequantize_logit(0.9) standardize");
    /* the standardize term: -Σ log σ of the logit values (same noise: same seed) */
    {
      double mean[16] = { 0 }, var[16] = { 0 };
      gsize n = s->labeled.n + s->unlabeled.n;
      for (int pass = 0; pass < 2; pass++)
        for (int set = 0; set < 2; set++)
          {
            const FgDataPart *part = set == 0 ? &s->labeled : &s->unlabeled;
            for (gsize i = 0; i < part->n; i++)
              for (gsize j = 0; j < 16; j++)
                {
                  double v = fg_tensor_row (&part->x, i)[j];
                  if (pass == 0)
                    mean[j] += v / (double) n;
                  else
                    var[j] += (v - mean[j]) * (v - mean[j]) / (double) n;
                }
          }
      for (gsize j = 0; j < 16; j++)
        log_sd += 0.5 * log (var[j]);
    }
    g_assert_cmpfloat_with_epsilon (t->preprocessing->labeled_logdet[2],
                                    s->preprocessing->labeled_logdet[2] - log_sd, 1e-3);
  }
  /* values outside [0, 1] are refused, naming the set, row and column */
  {
    g_autoptr (FgDataset) bad = make_image_dataset (50, 1.5f);
    g_autoptr (FgSplitData) e = fg_split_data_new (bad, p, 0, &error);
    g_assert_null (e);
    g_assert_error (error, FG_ERROR, FG_ERROR_DATA);
    g_assert_nonnull (strstr (error->message, "split key 'dequantize_logit': row 5 of the test "
                                              "set holds 1.5 at column 3, outside [0, 1]"));
  }
}

static gboolean cancel_answer;
static double last_fraction = -1;

static void
on_progress (gpointer user, double f, const char *what)
{
  last_fraction = f;
  g_assert_cmpstr (what, ==, "half");
}

static gboolean
on_cancelled (gpointer user)
{
  return cancel_answer;
}

static void
test_hooks (void)
{
  g_autoptr (FgDataset) ds = make_dataset (30, 3, 0, 3);
  g_autoptr (FgParams) p = split_params ("labeled", "3", NULL);
  g_autoptr (FgSplitData) d = fg_split_data_new (ds, p, 0, NULL);
  FgFitHooks hooks = { on_progress, on_cancelled, NULL };
  g_assert_false (fg_split_cancelled (fg_split_data_get_split (d)));
  fg_split_report_progress (fg_split_data_get_split (d), 0.5, "half"); /* no hooks: no-op */
  g_assert_cmpfloat (last_fraction, ==, -1);
  fg_split_data_set_hooks (d, &hooks);
  fg_split_report_progress (fg_split_data_get_split (d), 1.5, "half");
  g_assert_cmpfloat (last_fraction, ==, 1.0);
  cancel_answer = TRUE;
  g_assert_true (fg_split_cancelled (fg_split_data_get_split (d)));
}

/* "{seed}" in a per-seed file name, every occurrence; other braces stay. */
static void
test_path_expand_seed (void)
{
  g_autofree char *a = fg_path_expand_seed ("splits/labeled_seed{seed}.txt", 3);
  g_autofree char *b = fg_path_expand_seed ("{seed}/{seed}-{s}.bin", 18446744073709551615ull);
  g_autofree char *c = fg_path_expand_seed ("plain.txt", 7);
  g_assert_cmpstr (a, ==, "splits/labeled_seed3.txt");
  g_assert_cmpstr (b, ==, "18446744073709551615/18446744073709551615-{s}.bin");
  g_assert_cmpstr (c, ==, "plain.txt");
}

/* Extra rows go through the split's preprocessing without entering its fit: the raw test rows
 * given as extra rows come out equal to the preprocessed test part, and the split itself
 * (fingerprint, training sets) is the same as without them. */
static void
test_extra_rows (void)
{
  static const double scales[5] = { 5.0, 3.0, 2.0, 1.0, 0.5 };
  const gsize D = 5;
  g_autoptr (FgDataset) ds = make_gaussian_dataset (500, D, scales, FALSE, TRUE);
  const FgDataPart *raw_test = fg_dataset_get_part (ds, FG_PART_TEST);
  const char *const configs[][6] = {
    { "labeled", "40", "pca", "3", NULL, NULL },
    { "labeled", "40", "standardize", "true", NULL, NULL },
  };
  for (guint c = 0; c < G_N_ELEMENTS (configs); c++)
    {
      g_autoptr (FgParams) p = split_params (configs[c][0], configs[c][1], configs[c][2],
                                             configs[c][3], NULL);
      g_autoptr (GError) error = NULL;
      g_autoptr (FgSplitData) plain = fg_split_data_new (ds, p, 3, &error);
      g_autoptr (FgSplitData) d = fg_split_data_new_with_extra (ds, p, 3, &raw_test->x, &error);
      const FgTensor *extra;
      const double *ld = NULL;
      g_assert_no_error (error);
      g_assert_null (fg_split_data_get_extra (plain, NULL));
      extra = fg_split_data_get_extra (d, &ld);
      g_assert_nonnull (extra);
      g_assert_cmpstr (fg_split_data_get_split (d)->fingerprint, ==,
                       fg_split_data_get_split (plain)->fingerprint);
      g_assert_cmpfloat (fg_tensor_max_abs_diff (&fg_split_data_get_split (d)->labeled.x,
                                                 &fg_split_data_get_split (plain)->labeled.x),
                         ==, 0.0);
      g_assert_cmpfloat (fg_tensor_max_abs_diff (extra, &fg_split_data_get_test (d)->x), ==, 0.0);
      if (c == 0)
        g_assert_null (ld); /* pca with k < D: not invertible */
      else
        {
          const double *test_ld = fg_split_data_get_split (d)->preprocessing->test_logdet;
          g_assert_nonnull (ld);
          g_assert_cmpfloat (ld[0], ==, test_ld[0]);
        }
    }
  {
    g_autoptr (FgParams) p = split_params ("labeled", "40", NULL);
    g_autoptr (FgTensor) wrong = fg_tensor_new_2d (3, D + 1);
    g_autoptr (GError) error = NULL;
    g_assert_null (fg_split_data_new_with_extra (ds, p, 3, wrong, &error));
    g_assert_error (error, FG_ERROR, FG_ERROR_DATA);
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/split/balanced", test_balanced);
  g_test_add_func ("/split/remainder-and-per-class", test_remainder_and_per_class);
  g_test_add_func ("/split/reproducible", test_reproducible);
  g_test_add_func ("/split/too-many-for-a-class", test_too_many_for_class);
  g_test_add_func ("/split/bad-combinations", test_bad_combinations);
  g_test_add_func ("/split/unknown-labels-and-own-subset", test_unknown_labels_and_own_subset);
  g_test_add_func ("/split/all-labeled", test_all_labeled);
  g_test_add_func ("/split/index-files", test_index_files);
  g_test_add_func ("/split/hooks", test_hooks);
  g_test_add_func ("/split/index-file-truncated-gzip", test_index_file_truncated_gzip);
  g_test_add_func ("/split/image-shape", test_image_split_keeps_shape);
  g_test_add_func ("/split/preprocess/none", test_preprocess_none);
  g_test_add_func ("/split/preprocess/standardize", test_preprocess_standardize);
  g_test_add_func ("/split/unlabeled-pool", test_unlabeled_pool);
  g_test_add_func ("/split/preprocess/pca", test_preprocess_pca);
  g_test_add_func ("/split/preprocess/pca-whiten-and-errors", test_preprocess_pca_whiten_and_errors);
  g_test_add_func ("/split/preprocess/pca-huge-scale", test_preprocess_pca_huge_scale);
  g_test_add_func ("/split/preprocess/l2-normalize", test_preprocess_l2);
  g_test_add_func ("/split/preprocess/dequantize-logit", test_preprocess_dequantize_logit);
  g_test_add_func ("/split/extra-rows", test_extra_rows);
  g_test_add_func ("/dataset/checks", test_dataset_checks);
  g_test_add_func ("/io/path-expand-seed", test_path_expand_seed);
  return g_test_run ();
}
