/* SPDX-License-Identifier: MIT */
/* flowgmm tests — the synthetic dataset plugin (moons, circles, eight-gaussians, pinwheel). */
#include "config.h"

#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

#include <flowgmm/flowgmm.h>

static FgRegistry *registry;

static const FgComponent *
component (const char *name)
{
  g_autoptr (GError) error = NULL;
  const FgComponent *c = fg_registry_find (registry, FG_KIND_DATASET, name, &error);
  g_assert_no_error (error);
  g_assert_nonnull (c);
  return c;
}

/* Load dataset `name` with parameters kv = { key, value, ..., NULL }; NULL and *error on
 * failure. */
static FgDataset *
load_kv (const char *name, const char *const *kv, GError **error)
{
  const FgComponent *c = component (name);
  const FgDatasetVTable *vt = c->vtable;
  g_autoptr (FgParams) params = fg_params_new (c->params);
  FgLoadContext ctx = { "." };

  for (guint i = 0; kv != NULL && kv[i] != NULL; i += 2)
    if (!fg_params_set (params, kv[i], kv[i + 1], error))
      return NULL;
  return vt->load (params, &ctx, error);
}

static FgDataset *
load_v (const char *name, GError **error, va_list ap)
{
  g_autoptr (GPtrArray) kv = g_ptr_array_new ();
  const char *s;
  while ((s = va_arg (ap, const char *)) != NULL)
    g_ptr_array_add (kv, (gpointer) s);
  g_ptr_array_add (kv, NULL);
  return load_kv (name, (const char *const *) kv->pdata, error);
}

static FgDataset *
load_ok (const char *name, ...)
{
  g_autoptr (GError) error = NULL;
  FgDataset *ds;
  va_list ap;
  va_start (ap, name);
  ds = load_v (name, &error, ap);
  va_end (ap);
  g_assert_no_error (error);
  g_assert_nonnull (ds);
  return ds;
}

static void
class_counts (const FgDataPart *part, guint K, guint *counts)
{
  memset (counts, 0, K * sizeof *counts);
  for (gsize i = 0; i < part->n; i++)
    {
      g_assert_cmpint (part->y[i], >=, 0);
      g_assert_cmpint (part->y[i], <, (gint) K);
      counts[part->y[i]]++;
    }
}

static const char *const names[] = { "moons", "circles", "eight-gaussians", "pinwheel" };

static void
test_registered (void)
{
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    {
      const FgComponent *c = component (names[i]);
      const FgPluginRecord *rec = fg_registry_get_provider (registry, c);
      g_assert_cmpstr (rec->info->name, ==, "synthetic");
      g_assert_nonnull (fg_param_spec_lookup (c->params, "seed"));
      g_assert_nonnull (fg_param_spec_lookup (c->params, "n_train"));
      g_assert_nonnull (fg_param_spec_lookup (c->params, "n_test"));
      g_assert_nonnull (fg_param_spec_lookup (c->params, "labeled_counts"));
      /* No clash with the host's split keys, which share the [dataset:NAME] group. */
      for (const FgParamSpec *s = fg_split_param_specs (); s->name; s++)
        g_assert_null (fg_param_spec_lookup (c->params, s->name));
    }
}

/* Default sizes, classes and the authors' labeled counts. */
static void
test_counts_and_labeled (void)
{
  static const guint K[] = { 2, 2, 3, 5 };
  static const guint lab[][5] = { { 5, 5 }, { 7, 4 }, { 6, 6, 7 }, { 3, 2, 3, 2, 3 } };
  for (guint d = 0; d < G_N_ELEMENTS (names); d++)
    {
      g_autoptr (FgDataset) ds = load_ok (names[d], NULL);
      const FgDataPart *train = fg_dataset_get_part (ds, FG_PART_TRAIN);
      const FgDataPart *test = fg_dataset_get_part (ds, FG_PART_TEST);
      guint counts[8], lab_counts[8] = { 0 };
      gsize n_lab;
      const guint32 *idx = fg_dataset_get_labeled_indices (ds, &n_lab);

      g_test_message ("%s", names[d]);
      g_assert_cmpuint (fg_dataset_get_n_classes (ds), ==, K[d]);
      g_assert_cmpuint (fg_dataset_get_dim (ds), ==, 2);
      g_assert_cmpuint (train->n, ==, 1000);
      g_assert_nonnull (test);
      g_assert_cmpuint (test->n, ==, 1000);
      g_assert_null (fg_dataset_get_part (ds, FG_PART_VAL));
      g_assert_nonnull (fg_dataset_get_note (ds));
      class_counts (train, K[d], counts);
      for (guint k = 0; k < K[d]; k++)
        {
          if (d < 2)
            g_assert_cmpuint (counts[k], ==, 500);
          else if (d == 3)
            g_assert_cmpuint (counts[k], ==, 200);
          else /* 2, 3 and 3 of 8 uniformly drawn clusters */
            g_assert_cmpfloat_with_epsilon (counts[k] / 1000.0, k == 0 ? 0.25 : 0.375, 0.06);
        }
      class_counts (test, K[d], counts);
      for (guint k = 0; k < K[d]; k++)
        g_assert_cmpuint (counts[k], >, 0);

      /* The labeled subset: the authors' counts, the first rows of each class. */
      g_assert_nonnull (idx);
      for (gsize i = 0; i < n_lab; i++)
        {
          gint32 y = train->y[idx[i]];
          lab_counts[y]++;
          for (guint32 r = 0; r < idx[i]; r++)
            if (train->y[r] == y)
              {
                gboolean listed = FALSE;
                for (gsize j = 0; j < n_lab; j++)
                  listed |= idx[j] == r;
                g_assert_true (listed); /* an earlier row of the class is labeled too */
              }
        }
      for (guint k = 0; k < K[d]; k++)
        g_assert_cmpuint (lab_counts[k], ==, lab[d][k]);
    }
}

static void
test_labeled_counts_param (void)
{
  g_autoptr (FgDataset) a = load_ok ("moons", "labeled_counts", "4", NULL);
  g_autoptr (FgDataset) b = load_ok ("eight-gaussians", "labeled_counts", " 1, 2 ,3", NULL);
  g_autoptr (FgDataset) c = load_ok ("pinwheel", "arms", "3", NULL);
  g_autoptr (FgDataset) e = load_ok ("eight-gaussians", "classes", "clusters", NULL);
  struct { FgDataset *ds; guint K; guint want[8]; } cases[] = {
    { a, 2, { 4, 4 } },
    { b, 3, { 1, 2, 3 } },
    { c, 3, { 3, 3, 3 } },
    { e, 8, { 3, 3, 3, 3, 3, 3, 3, 3 } },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      const FgDataPart *train = fg_dataset_get_part (cases[i].ds, FG_PART_TRAIN);
      guint got[8] = { 0 };
      gsize n;
      const guint32 *idx = fg_dataset_get_labeled_indices (cases[i].ds, &n);
      g_assert_cmpuint (fg_dataset_get_n_classes (cases[i].ds), ==, cases[i].K);
      for (gsize j = 0; j < n; j++)
        got[train->y[idx[j]]]++;
      for (guint k = 0; k < cases[i].K; k++)
        g_assert_cmpuint (got[k], ==, cases[i].want[k]);
    }
}

static gboolean
parts_equal (const FgDataPart *a, const FgDataPart *b)
{
  if (a->n != b->n)
    return FALSE;
  for (gsize i = 0; i < a->n; i++)
    if (memcmp (fg_tensor_row (&a->x, i), fg_tensor_row (&b->x, i), 2 * sizeof (float)) != 0
        || a->y[i] != b->y[i])
      return FALSE;
  return TRUE;
}

static void
test_deterministic (void)
{
  for (guint d = 0; d < G_N_ELEMENTS (names); d++)
    {
      g_autoptr (FgDataset) a = load_ok (names[d], "seed", "3", NULL);
      g_autoptr (FgDataset) b = load_ok (names[d], "seed", "3", NULL);
      g_autoptr (FgDataset) c = load_ok (names[d], "seed", "4", NULL);
      gsize na, nb;
      const guint32 *ia = fg_dataset_get_labeled_indices (a, &na);
      const guint32 *ib = fg_dataset_get_labeled_indices (b, &nb);
      for (FgPart p = FG_PART_TRAIN; p <= FG_PART_TEST; p += FG_PART_TEST)
        {
          g_assert_true (parts_equal (fg_dataset_get_part (a, p), fg_dataset_get_part (b, p)));
          g_assert_false (parts_equal (fg_dataset_get_part (a, p), fg_dataset_get_part (c, p)));
        }
      /* train and test come from independent streams */
      g_assert_false (parts_equal (fg_dataset_get_part (a, FG_PART_TRAIN),
                                   fg_dataset_get_part (a, FG_PART_TEST)));
      g_assert_cmpuint (na, ==, nb);
      g_assert_cmpmem (ia, na * sizeof *ia, ib, nb * sizeof *ib);
    }
}

static int
cmp_double (gconstpointer a, gconstpointer b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return (x > y) - (x < y);
}

/* Without noise the points are exactly sklearn's grids: make_moons puts class 0 at
 * (cos t, sin t), t = linspace(0, π, n//2), and class 1 at (1 − cos t, 0.5 − sin t),
 * t = linspace(0, π, n − n//2); make_circles puts class 0 at angles 2πi/(n//2) on the unit
 * circle and class 1 at 2πi/(n − n//2) on the circle of radius `factor`. */
static void
test_sklearn_grids (void)
{
  for (int circles = 0; circles < 2; circles++)
    {
      const char *n_text = "301"; /* odd: the second class gets the extra point */
      g_autoptr (FgDataset) ds = circles ? load_ok ("circles", "noise", "0", "n_train", n_text,
                                                    "factor", "0.3", NULL)
                                         : load_ok ("moons", "noise", "0", "n_train", n_text,
                                                    NULL);
      const FgDataPart *train = fg_dataset_get_part (ds, FG_PART_TRAIN);
      for (gint32 k = 0; k < 2; k++)
        {
          gsize n_k = k == 0 ? 150 : 151;
          g_autofree double *t = g_new (double, n_k);
          gsize m = 0;
          for (gsize i = 0; i < train->n; i++)
            {
              const float *r = fg_tensor_row (&train->x, i);
              double u, v;
              if (train->y[i] != k)
                continue;
              g_assert_cmpuint (m, <, n_k);
              if (!circles)
                {
                  u = k == 0 ? r[0] : 1.0 - r[0];
                  v = k == 0 ? r[1] : 0.5 - r[1];
                  g_assert_cmpfloat_with_epsilon (hypot (u, v), 1.0, 1e-6);
                  t[m++] = atan2 (v, u);
                }
              else
                {
                  double rad = k == 0 ? 1.0 : 0.3;
                  g_assert_cmpfloat_with_epsilon (hypot (r[0], r[1]), rad, 1e-6);
                  t[m] = atan2 (r[1], r[0]);
                  if (t[m] < -1e-6)
                    t[m] += 2 * G_PI;
                  m++;
                }
            }
          g_assert_cmpuint (m, ==, n_k);
          qsort (t, n_k, sizeof *t, cmp_double);
          for (gsize i = 0; i < n_k; i++)
            {
              double want = circles ? 2 * G_PI * i / n_k : G_PI * i / (n_k - 1);
              g_assert_cmpfloat_with_epsilon (fabs (t[i]), want, 2e-6);
            }
        }
    }
}

/* With noise: per class mean and variance match the noiseless grid plus N(0, noise²). */
static void
test_noise_statistics (void)
{
  const double noise = 0.1;
  g_autoptr (FgDataset) ds = load_ok ("moons", "noise", "0.1", "n_train", "20000", NULL);
  g_autoptr (FgDataset) cs = load_ok ("circles", "noise", "0.1", "n_train", "20000", NULL);
  const FgDataPart *train = fg_dataset_get_part (ds, FG_PART_TRAIN);
  double s[2][2] = { { 0 } }, ss[2][2] = { { 0 } }, n[2] = { 0 };
  double rs[2] = { 0 }, rn[2] = { 0 };

  for (gsize i = 0; i < train->n; i++)
    {
      const float *r = fg_tensor_row (&train->x, i);
      for (int j = 0; j < 2; j++)
        {
          s[train->y[i]][j] += r[j];
          ss[train->y[i]][j] += (double) r[j] * r[j];
        }
      n[train->y[i]]++;
    }
  /* Upper moon: x = cos t, y = sin t over t uniform on [0, π]: E x = 0, E y = 2/π,
   * Var x = 1/2, Var y = 1/2 − 4/π².  The lower moon is the mirror image shifted by (1, 0.5). */
  for (int k = 0; k < 2; k++)
    {
      double mx = s[k][0] / n[k], my = s[k][1] / n[k];
      double vx = ss[k][0] / n[k] - mx * mx, vy = ss[k][1] / n[k] - my * my;
      g_assert_cmpfloat_with_epsilon (mx, k == 0 ? 0.0 : 1.0, 0.02);
      g_assert_cmpfloat_with_epsilon (my, k == 0 ? 2 / G_PI : 0.5 - 2 / G_PI, 0.02);
      g_assert_cmpfloat_with_epsilon (vx, 0.5 + noise * noise, 0.02);
      g_assert_cmpfloat_with_epsilon (vy, 0.5 - 4 / (G_PI * G_PI) + noise * noise, 0.02);
    }
  /* Circles: E |x|² = r² + 2·noise². */
  train = fg_dataset_get_part (cs, FG_PART_TRAIN);
  for (gsize i = 0; i < train->n; i++)
    {
      const float *r = fg_tensor_row (&train->x, i);
      rs[train->y[i]] += (double) r[0] * r[0] + (double) r[1] * r[1];
      rn[train->y[i]]++;
    }
  g_assert_cmpfloat_with_epsilon (rs[0] / rn[0], 1.0 + 2 * noise * noise, 0.01);
  g_assert_cmpfloat_with_epsilon (rs[1] / rn[1], 0.16 + 2 * noise * noise, 0.01);
}

/* Eight Gaussians: the clusters sit at radius 2.83, angles j·45°, std 0.354, and class 0 holds
 * the clusters at 180° and 225°, class 1 those at 270°, 315°, 0°, class 2 45°, 90°, 135°. */
static void
test_eight_gaussians_layout (void)
{
  static const int cls[8] = { 1, 2, 2, 2, 0, 0, 1, 1 };
  g_autoptr (FgDataset) ds = load_ok ("eight-gaussians", "n_train", "16000", NULL);
  const FgDataPart *train = fg_dataset_get_part (ds, FG_PART_TRAIN);
  double sx[8] = { 0 }, sy[8] = { 0 }, ss[8] = { 0 }, n[8] = { 0 };
  gsize wrong = 0;
  for (gsize i = 0; i < train->n; i++)
    {
      const float *r = fg_tensor_row (&train->x, i);
      int j = ((int) lround (atan2 (r[1], r[0]) / (G_PI / 4)) + 8) % 8;
      wrong += train->y[i] != cls[j]; /* a point nearer a neighbour's direction */
      sx[j] += r[0];
      sy[j] += r[1];
      n[j]++;
    }
  for (gsize i = 0; i < train->n; i++)
    {
      const float *r = fg_tensor_row (&train->x, i);
      int j = ((int) lround (atan2 (r[1], r[0]) / (G_PI / 4)) + 8) % 8;
      ss[j] += pow (r[0] - sx[j] / n[j], 2) + pow (r[1] - sy[j] / n[j], 2);
    }
  g_assert_cmpuint (wrong, <, train->n / 200);
  for (int j = 0; j < 8; j++)
    {
      g_assert_cmpfloat_with_epsilon (sx[j] / n[j], 2.828854 * cos (j * G_PI / 4), 0.03);
      g_assert_cmpfloat_with_epsilon (sy[j] / n[j], 2.828854 * sin (j * G_PI / 4), 0.03);
      g_assert_cmpfloat_with_epsilon (sqrt (ss[j] / n[j] / 2), 0.3536, 0.02);
    }
}

/* Pinwheel: the radial coordinate of every point (|x|/2) is ≈ 1 ± 0.3 and each arm turns
 * clockwise outwards from its base angle 2πc/5. */
static void
test_pinwheel_layout (void)
{
  g_autoptr (FgDataset) ds = load_ok ("pinwheel", "n_train", "5000", NULL);
  const FgDataPart *train = fg_dataset_get_part (ds, FG_PART_TRAIN);
  double sr = 0, srr = 0, sres = 0;
  gsize n_far = 0;
  for (gsize i = 0; i < train->n; i++)
    {
      const float *r = fg_tensor_row (&train->x, i);
      double rad = hypot (r[0], r[1]) / 2, phi = atan2 (r[1], r[0]);
      double res = remainder (phi - (2 * G_PI * train->y[i] / 5 - 0.25 * exp (rad)), 2 * G_PI);
      sr += rad;
      srr += rad * rad;
      if (rad > 0.6) /* near the centre the tangential noise turns points a lot */
        {
          sres += fabs (res);
          n_far++;
          g_assert_cmpfloat (fabs (res), <, 0.8);
        }
    }
  sr /= train->n;
  g_assert_cmpfloat_with_epsilon (sr, 1.0, 0.03);
  g_assert_cmpfloat_with_epsilon (sqrt (srr / train->n - sr * sr), 0.3, 0.03);
  g_assert_cmpfloat (sres / n_far, <, 0.12); /* tangential spread 0.1 at radius ~1 */
}

static char *
shared_toy_file (const char *name)
{
  const char *shared = g_getenv ("FG_SHARED_DATA");
  char *path;
  if (shared == NULL)
    shared = "/work/shared/data";
  path = g_build_filename (shared, "flowgmm-toy", name, NULL);
  if (!g_file_test (path, G_FILE_TEST_IS_REGULAR))
    {
      g_free (path);
      return NULL;
    }
  return path;
}

/* The authors' saved sets load with their labeled subsets, and the generator's layout agrees
 * with them: each labeled point's nearest neighbour in a large generated set has its class. */
static void
test_authors_sets (void)
{
  static const struct { const char *name, *file; guint K; guint lab[5]; } sets[] = {
    { "eight-gaussians", "8gauss.csv", 3, { 6, 6, 7 } },
    { "pinwheel", "pinwheel.csv", 5, { 3, 2, 3, 2, 3 } },
  };
  for (guint s = 0; s < G_N_ELEMENTS (sets); s++)
    {
      g_autofree char *path = shared_toy_file (sets[s].file);
      g_autoptr (FgDataset) ds = NULL, inferred = NULL, gen = NULL;
      const FgDataPart *train, *itrain, *gtrain;
      gsize n_lab, n_unknown = 0;
      const guint32 *idx;
      guint got[5] = { 0 };

      if (path == NULL)
        {
          g_test_skip ("the authors' toy sets (shared/data/flowgmm-toy) are not here");
          return;
        }
      ds = load_ok (sets[s].name, "source", "authors", "path", path, NULL);
      inferred = load_ok (sets[s].name, "source", "authors", "path", path, "label_unlabeled",
                          "true", NULL);
      gen = load_ok (sets[s].name, "n_train", "20000", NULL);
      train = fg_dataset_get_part (ds, FG_PART_TRAIN);
      itrain = fg_dataset_get_part (inferred, FG_PART_TRAIN);
      gtrain = fg_dataset_get_part (gen, FG_PART_TRAIN);
      g_assert_cmpuint (train->n, ==, 1000);
      g_assert_cmpuint (fg_dataset_get_n_classes (ds), ==, sets[s].K);
      g_assert_cmpuint (fg_dataset_get_part (ds, FG_PART_TEST)->n, ==, 1000);
      idx = fg_dataset_get_labeled_indices (ds, &n_lab);
      for (gsize i = 0; i < n_lab; i++)
        got[train->y[idx[i]]]++;
      for (guint k = 0; k < sets[s].K; k++)
        g_assert_cmpuint (got[k], ==, sets[s].lab[k]);
      for (gsize i = 0; i < train->n; i++)
        {
          n_unknown += train->y[i] < 0;
          g_assert_cmpint (itrain->y[i], >=, 0);
          if (train->y[i] >= 0)
            g_assert_cmpint (itrain->y[i], ==, train->y[i]);
        }
      g_assert_cmpuint (n_unknown, ==, 1000 - n_lab);
      /* The default split: the file's labeled points, every other row unlabeled, the generated
       * test part. */
      {
        g_autoptr (FgParams) sp = fg_params_new (fg_split_param_specs ());
        g_autoptr (GError) error = NULL;
        g_autoptr (FgSplitData) sd = fg_split_data_new (ds, sp, 0, &error);
        g_assert_no_error (error);
        g_assert_cmpuint (fg_split_data_get_split (sd)->labeled.n, ==, n_lab);
        g_assert_cmpuint (fg_split_data_get_split (sd)->unlabeled.n, ==, 1000 - n_lab);
        g_assert_cmpuint (fg_split_data_get_test (sd)->n, ==, 1000);
      }
      /* First row of 8gauss.csv: -1.6701912879943848,-1.394144058227539,0 */
      if (s == 0)
        {
          g_assert_cmpfloat (fg_tensor_row (&train->x, 0)[0], ==, -1.6701912879943848f);
          g_assert_cmpfloat (fg_tensor_row (&train->x, 0)[1], ==, -1.394144058227539f);
        }
      for (gsize i = 0; i < n_lab; i++)
        {
          const float *p = fg_tensor_row (&train->x, idx[i]);
          double best = INFINITY;
          gint32 best_y = -1;
          for (gsize j = 0; j < gtrain->n; j++)
            {
              const float *q = fg_tensor_row (&gtrain->x, j);
              double d = pow (p[0] - q[0], 2) + pow (p[1] - q[1], 2);
              if (d < best)
                best = d, best_y = gtrain->y[j];
            }
          g_assert_cmpint (best_y, ==, train->y[idx[i]]);
        }
    }
}

/* The default split of a synthetic set takes its labeled subset and its test part; the split
 * keys draw other class-balanced labeled sets per seed. */
static void
test_split (void)
{
  g_autoptr (FgDataset) ds = load_ok ("pinwheel", NULL);
  g_autoptr (FgParams) sp = fg_params_new (fg_split_param_specs ());
  g_autoptr (FgParams) sp2 = fg_params_new (fg_split_param_specs ());
  g_autoptr (FgSplitData) d = NULL, d2 = NULL;
  g_autoptr (GError) error = NULL;
  const FgSplit *split;
  guint counts[5];

  d = fg_split_data_new (ds, sp, 0, &error);
  g_assert_no_error (error);
  split = fg_split_data_get_split (d);
  g_assert_cmpuint (split->labeled.n, ==, 13);
  g_assert_cmpuint (split->unlabeled.n, ==, 987);
  g_assert_cmpuint (fg_split_data_get_test (d)->n, ==, 1000);
  g_assert_true (fg_params_set (sp2, "labeled_per_class", "10", &error));
  d2 = fg_split_data_new (ds, sp2, 1, &error);
  g_assert_no_error (error);
  class_counts (&fg_split_data_get_split (d2)->labeled, 5, counts);
  for (guint k = 0; k < 5; k++)
    g_assert_cmpuint (counts[k], ==, 10);
}

static void
test_bad_params (void)
{
  g_autofree char *dir = g_dir_make_tmp ("fg-synthetic-XXXXXX", NULL);
  g_autofree char *bad_csv = g_build_filename (dir, "bad.csv", NULL);
  g_autoptr (FgParams) params = fg_params_new (component ("moons")->params);
  g_autoptr (GError) error = NULL;
  struct { const char *name; const char *kv[9]; gint code; } cases[] = {
    { "circles", { "factor", "1" }, FG_ERROR_INVALID_PARAM },
    { "moons", { "labeled_counts", "1,2,3" }, FG_ERROR_INVALID_PARAM },
    { "moons", { "labeled_counts", "two" }, FG_ERROR_INVALID_PARAM },
    { "moons", { "labeled_counts", "0" }, FG_ERROR_INVALID_PARAM },
    { "moons", { "labeled_counts", "501" }, FG_ERROR_INVALID_PARAM },
    { "pinwheel", { "source", "authors" }, FG_ERROR_INVALID_PARAM },
    { "pinwheel", { "source", "authors", "path", "/nonexistent/pinwheel.csv" }, FG_ERROR_IO },
    { "pinwheel", { "source", "authors", "path", bad_csv, "arms", "4" }, FG_ERROR_INVALID_PARAM },
    { "eight-gaussians", { "source", "authors", "path", bad_csv, "labeled_counts", "2" },
      FG_ERROR_INVALID_PARAM },
    { "eight-gaussians", { "source", "authors", "path", bad_csv, "classes", "clusters" },
      FG_ERROR_INVALID_PARAM },
    { "eight-gaussians", { "source", "authors", "path", bad_csv }, FG_ERROR_DATA },
  };

  g_assert_true (g_file_set_contents (bad_csv, "x,y,label\n0.5,1.0,0\n0.1,oops,-1\n", -1, NULL));
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) e = NULL;
      g_assert_null (load_kv (cases[i].name, cases[i].kv, &e));
      g_assert_nonnull (e);
      g_test_message ("case %u: %s", i, e->message);
      g_assert_error (e, FG_ERROR, cases[i].code);
      if (cases[i].code == FG_ERROR_DATA)
        g_assert_nonnull (strstr (e->message, "bad.csv:3")); /* names file and line */
    }
  /* Out-of-range values are refused by the declared specs already. */
  g_assert_false (fg_params_set (params, "noise", "-1", &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM);
  g_unlink (bad_csv);
  g_rmdir (dir);
}

/* warped-clusters: shapes and classes; with noise 0 every point of a class is the class's
 * warped centre, the same in the training and the test parts (one layout per seed), and with
 * warp 0 as well it is the centre itself, so the warp moves each coordinate by at most
 * 2·warp; with noise, the within-class spread before warping is noise·a, a in [0.3, 1.7]. */
static void
test_warped_clusters (void)
{
  g_autoptr (FgDataset) ds = load_ok ("warped-clusters", "n_train", "400", "n_test", "300",
                                      "seed", "4", NULL);
  g_autoptr (FgDataset) flat = load_ok ("warped-clusters", "n_train", "400", "n_test", "300",
                                        "seed", "4", "noise", "0", "warp", "0", NULL);
  g_autoptr (FgDataset) bent = load_ok ("warped-clusters", "n_train", "400", "n_test", "300",
                                        "seed", "4", "noise", "0", "warp", "0.5", NULL);
  g_autoptr (FgDataset) loose = load_ok ("warped-clusters", "n_train", "4000", "n_test", "0",
                                         "seed", "4", "warp", "0", "classes", "3", "dim", "2",
                                         NULL);
  const FgDataPart *tr = fg_dataset_get_part (ds, FG_PART_TRAIN);
  const FgDataPart *te = fg_dataset_get_part (ds, FG_PART_TEST);
  const FgDataPart *ft = fg_dataset_get_part (flat, FG_PART_TRAIN);
  const FgDataPart *fe = fg_dataset_get_part (flat, FG_PART_TEST);
  const FgDataPart *bt = fg_dataset_get_part (bent, FG_PART_TRAIN);
  const FgDataPart *be = fg_dataset_get_part (bent, FG_PART_TEST);
  const FgDataPart *lt = fg_dataset_get_part (loose, FG_PART_TRAIN);
  float centre[20][12], warped[20][12];
  gboolean seen[20] = { FALSE };
  guint counts[20];
  double m[3][2] = { { 0 } }, q[3][2] = { { 0 } }, n[3] = { 0 };
  const FgComponent *comp = component ("warped-clusters");

  /* no clash with the host's split keys, which share the [dataset:NAME] group */
  for (const FgParamSpec *s = fg_split_param_specs (); s->name; s++)
    g_assert_null (fg_param_spec_lookup (comp->params, s->name));

  g_assert_cmpuint (fg_dataset_get_n_classes (ds), ==, 20);
  g_assert_cmpuint (fg_tensor_cols (&tr->x), ==, 12);
  g_assert_cmpuint (tr->n, ==, 400);
  g_assert_cmpuint (te->n, ==, 300);
  class_counts (tr, 20, counts);
  for (guint k = 0; k < 20; k++)
    g_assert_cmpuint (counts[k], >, 0);
  /* same labels (same streams) in all three */
  for (gsize i = 0; i < tr->n; i++)
    g_assert_cmpint (tr->y[i], ==, ft->y[i]);
  for (gsize i = 0; i < ft->n; i++)
    {
      const gint32 k = ft->y[i];
      const float *c = fg_tensor_row (&ft->x, i), *w = fg_tensor_row (&bt->x, i);
      if (!seen[k])
        {
          memcpy (centre[k], c, sizeof centre[k]);
          memcpy (warped[k], w, sizeof warped[k]);
          seen[k] = TRUE;
        }
      for (gsize j = 0; j < 12; j++)
        {
          g_assert_cmpfloat (c[j], ==, centre[k][j]);
          g_assert_cmpfloat (w[j], ==, warped[k][j]);
          g_assert_cmpfloat (fabs (w[j] - c[j]), <=, 2 * 0.5 + 1e-6);
        }
    }
  for (gsize i = 0; i < fe->n; i++)
    for (gsize j = 0; j < 12; j++)
      {
        g_assert_true (seen[fe->y[i]]);
        g_assert_cmpfloat (fg_tensor_row (&fe->x, i)[j], ==, centre[fe->y[i]][j]);
        g_assert_cmpfloat (fg_tensor_row (&be->x, i)[j], ==, warped[be->y[i]][j]);
      }
  /* spreads without warp: noise·a per coordinate, a in [0.3, 1.7] */
  for (gsize i = 0; i < lt->n; i++)
    for (gsize j = 0; j < 2; j++)
      {
        const double v = fg_tensor_row (&lt->x, i)[j];
        m[lt->y[i]][j] += v;
        q[lt->y[i]][j] += v * v;
        n[lt->y[i]] += j == 0;
      }
  for (guint k = 0; k < 3; k++)
    for (gsize j = 0; j < 2; j++)
      {
        const double mean = m[k][j] / n[k], sd = sqrt (q[k][j] / n[k] - mean * mean);
        g_assert_cmpfloat (sd, >, 1.0 * 0.3 * 0.9);
        g_assert_cmpfloat (sd, <, 1.0 * 1.7 * 1.1);
      }
}

int
main (int argc, char **argv)
{
  g_autoptr (FgRegistry) reg = NULL;
  int ret;

  g_test_init (&argc, &argv, NULL);
  reg = fg_registry_new ();
  fg_registry_load_default (reg, NULL);
  if (fg_registry_lookup (reg, FG_KIND_DATASET, "moons") == NULL)
    {
      const char *top = g_getenv ("FG_TOP_BUILDDIR");
      g_autofree char *dir = g_build_filename (top ? top : ".", "plugins", "datasets", ".libs",
                                               NULL);
      fg_registry_load_dir (reg, dir);
    }
  registry = reg;
  g_test_add_func ("/synthetic/registered", test_registered);
  g_test_add_func ("/synthetic/counts-and-labeled", test_counts_and_labeled);
  g_test_add_func ("/synthetic/labeled-counts-param", test_labeled_counts_param);
  g_test_add_func ("/synthetic/deterministic", test_deterministic);
  g_test_add_func ("/synthetic/sklearn-grids", test_sklearn_grids);
  g_test_add_func ("/synthetic/noise-statistics", test_noise_statistics);
  g_test_add_func ("/synthetic/eight-gaussians-layout", test_eight_gaussians_layout);
  g_test_add_func ("/synthetic/pinwheel-layout", test_pinwheel_layout);
  g_test_add_func ("/synthetic/authors-sets", test_authors_sets);
  g_test_add_func ("/synthetic/split", test_split);
  g_test_add_func ("/synthetic/warped-clusters", test_warped_clusters);
  g_test_add_func ("/synthetic/bad-params", test_bad_params);
  ret = g_test_run ();
  return ret;
}
