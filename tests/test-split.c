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
    g_clear_error (&error);
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
  g_test_add_func ("/split/image-shape", test_image_split_keeps_shape);
  g_test_add_func ("/dataset/checks", test_dataset_checks);
  return g_test_run ();
}
