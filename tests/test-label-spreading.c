/* SPDX-License-Identifier: MIT */
/* flowgmm tests — the label-spreading baseline against a direct matrix solve on tiny graphs,
 * its semi-supervised behaviour, the dense-graph memory refusal and parameter validation. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "baseline-helpers.h"

/* ---- a naive reference in double --------------------------------------------------------- */

static double
sqdist (const float *a, const float *b, gsize d, gboolean cosine)
{
  double na = 0, nb = 0, s = 0;
  for (gsize j = 0; j < d; j++)
    na += (double) a[j] * a[j], nb += (double) b[j] * b[j];
  na = cosine && na > 0 ? sqrt (na) : 1.0;
  nb = cosine && nb > 0 ? sqrt (nb) : 1.0;
  for (gsize j = 0; j < d; j++)
    s += (a[j] / na - b[j] / nb) * (a[j] / na - b[j] / nb);
  return s;
}

/* Solve A X = B (n × n, n × K, row-major) by Gaussian elimination with partial pivoting. */
static void
gauss_solve (double *A, double *B, gsize n, guint K)
{
  for (gsize c = 0; c < n; c++)
    {
      gsize piv = c;
      for (gsize r = c + 1; r < n; r++)
        if (fabs (A[r * n + c]) > fabs (A[piv * n + c]))
          piv = r;
      for (gsize j = 0; j < n; j++)
        {
          double t = A[c * n + j];
          A[c * n + j] = A[piv * n + j];
          A[piv * n + j] = t;
        }
      for (guint j = 0; j < K; j++)
        {
          double t = B[c * K + j];
          B[c * K + j] = B[piv * K + j];
          B[piv * K + j] = t;
        }
      for (gsize r = 0; r < n; r++)
        if (r != c)
          {
            double f = A[r * n + c] / A[c * n + c];
            for (gsize j = 0; j < n; j++)
              A[r * n + j] -= f * A[c * n + j];
            for (guint j = 0; j < K; j++)
              B[r * K + j] -= f * B[c * K + j];
          }
    }
  for (gsize r = 0; r < n; r++)
    for (guint j = 0; j < K; j++)
      B[r * K + j] /= A[r * n + r];
}

typedef struct {
  gboolean knn, symmetric, cosine;
  double gamma, alpha;
  gsize k;
  gboolean median; /* gamma_scale = median */
} RefConfig;

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

/* The k nearest of `q` among the n rows of x (ties to the smaller index). */
static void
naive_knn (const float *x, gsize n, gsize d, const float *q, gsize k, gboolean cosine, gsize *out)
{
  g_autofree double *dist = g_new (double, n);
  g_autofree gboolean *used = g_new0 (gboolean, n);
  for (gsize j = 0; j < n; j++)
    dist[j] = sqdist (q, x + j * d, d, cosine);
  for (gsize c = 0; c < k; c++)
    {
      gsize best = G_MAXSIZE;
      for (gsize j = 0; j < n; j++)
        if (!used[j] && (best == G_MAXSIZE || dist[j] < dist[best]))
          best = j;
      used[best] = TRUE;
      out[c] = best;
    }
}

/* Label distributions of the graph x (n × d; the first nl labeled with y) and the predicted
 * probabilities of the m test rows q, all by the textbook formulas. */
static void
reference (const RefConfig *cfg, const float *x, gsize n, gsize d, const gint32 *y, gsize nl,
           guint K, const float *q, gsize m, double *proba)
{
  g_autofree double *W = g_new0 (double, n * n), *deg = g_new0 (double, n);
  g_autofree double *A = g_new (double, n * n), *F = g_new0 (double, n * K);
  g_autofree gsize *nb = g_new (gsize, MAX (cfg->k, (gsize) 1));
  double g = cfg->gamma * (cfg->cosine ? 0.5 : 1.0);

  if (cfg->median)
    {
      /* γ over the median distance of all pairs (an odd count here) */
      g_autofree double *pairs = g_new (double, n * (n - 1) / 2);
      gsize np = 0;
      for (gsize i = 0; i < n; i++)
        for (gsize j = i + 1; j < n; j++)
          pairs[np++] = sqdist (x + i * d, x + j * d, d, cfg->cosine);
      g_assert_true (np % 2 == 1);
      qsort (pairs, np, sizeof *pairs, cmp_double);
      g = cfg->gamma / pairs[np / 2];
    }

  for (gsize i = 0; i < n; i++)
    {
      if (cfg->knn)
        {
          naive_knn (x, n, d, x + i * d, cfg->k, cfg->cosine, nb);
          for (gsize c = 0; c < cfg->k; c++)
            W[i * n + nb[c]] = 1.0;
        }
      else
        for (gsize j = 0; j < n; j++)
          W[i * n + j] = exp (-g * sqdist (x + i * d, x + j * d, d, cfg->cosine));
    }
  if (cfg->symmetric)
    for (gsize i = 0; i < n; i++)
      for (gsize j = 0; j < n; j++)
        W[i * n + j] = W[j * n + i] = MAX (W[i * n + j], W[j * n + i]);
  for (gsize i = 0; i < n; i++)
    W[i * n + i] = 0.0;
  for (gsize i = 0; i < n; i++)
    for (gsize j = 0; j < n; j++)
      deg[j] += W[i * n + j]; /* column sums */
  for (gsize i = 0; i < n; i++)
    deg[i] = deg[i] > 0 ? deg[i] : 1.0;
  for (gsize i = 0; i < n; i++)
    for (gsize j = 0; j < n; j++)
      A[i * n + j] = (i == j) - cfg->alpha * W[i * n + j] / sqrt (deg[i] * deg[j]);
  for (gsize i = 0; i < nl; i++)
    F[i * K + y[i]] = 1.0 - cfg->alpha;
  gauss_solve (A, F, n, K);
  for (gsize i = 0; i < n; i++)
    {
      double s = 0;
      for (guint c = 0; c < K; c++)
        s += F[i * K + c];
      for (guint c = 0; c < K; c++)
        F[i * K + c] = s != 0 ? F[i * K + c] / s : 0;
    }
  for (gsize t = 0; t < m; t++)
    {
      double *p = proba + t * K, s = 0;
      memset (p, 0, K * sizeof (double));
      if (cfg->knn)
        {
          naive_knn (x, n, d, q + t * d, cfg->k, cfg->cosine, nb);
          for (gsize c = 0; c < cfg->k; c++)
            for (guint j = 0; j < K; j++)
              p[j] += F[nb[c] * K + j];
        }
      else
        for (gsize i = 0; i < n; i++)
          {
            double w = exp (-g * sqdist (q + t * d, x + i * d, d, cfg->cosine));
            for (guint j = 0; j < K; j++)
              p[j] += w * F[i * K + j];
          }
      for (guint j = 0; j < K; j++)
        s += p[j];
      for (guint j = 0; j < K; j++)
        p[j] /= s;
    }
}

/* ---- tests --------------------------------------------------------------------------------- */

static void
compare_with_reference (const RefConfig *cfg, const char *const *settings)
{
  const gsize nl = 4, nu = 14, m = 9, d = 3;
  const guint K = 2;
  g_autoptr (FgTensor) x = NULL, q = NULL;
  g_autofree gint32 *y = NULL, *qy = NULL;
  g_autofree double *want = g_new (double, m * K);
  g_autofree float *got = g_new (float, m * K);
  g_autofree gint32 *labels = g_new (gint32, m);
  BtModel model;
  FgSplit split;
  FgTensor lx, ux;
  g_autoptr (GError) error = NULL;
  double max_err = 0;

  bt_blobs (21, nl + nu, d, K, 1.0, &x, &y);
  bt_blobs (22, m, d, K, 1.0, &q, &qy);
  reference (cfg, x->data, nl + nu, d, y, nl, K, q->data, m, want);

  lx = fg_tensor_view_rows (x, 0, nl);
  ux = fg_tensor_view_rows (x, nl, nu);
  g_assert_true (bt_model_init (&model, "label-spreading", settings, 0, &error));
  g_assert_no_error (error);
  bt_split_init (&split, K, &lx, y, &ux, NULL, NULL);
  bt_fit (&model, &split);
  g_assert_true (model.vt->predict (model.self, q, labels, got, &error));
  g_assert_no_error (error);
  for (gsize i = 0; i < m * K; i++)
    max_err = MAX (max_err, fabs (got[i] - want[i]));
  g_test_message ("%s: max |p − p_ref| = %.3g", settings[0], max_err);
  g_assert_cmpfloat (max_err, <, 2e-5);
  for (gsize i = 0; i < m; i++)
    g_assert_cmpint (labels[i], ==, want[i * K + 1] > want[i * K] ? 1 : 0);
  bt_model_clear (&model);
}

static void
test_rbf_direct_solve (void)
{
  RefConfig cfg = { FALSE, FALSE, TRUE, 3.0, 0.8, 0 };
  compare_with_reference (&cfg, (const char *[]){ "kernel=rbf", "gamma=3", "alpha=0.8",
                                                  "tol=1e-12", "max_iter=100000", NULL });
  compare_with_reference (&cfg, (const char *[]){ "kernel=rbf", "gamma=3", "alpha=0.8",
                                                  "solver=direct", NULL });
  cfg.median = TRUE;
  compare_with_reference (&cfg, (const char *[]){ "kernel=rbf", "gamma=3", "alpha=0.8",
                                                  "gamma_scale=median", "solver=direct", NULL });
  cfg.median = FALSE;
  cfg.cosine = FALSE;
  cfg.gamma = 0.7;
  compare_with_reference (&cfg, (const char *[]){ "kernel=rbf", "metric=l2", "gamma=0.7",
                                                  "alpha=0.8", "tol=1e-12",
                                                  "max_iter=100000", NULL });
  cfg.median = TRUE;
  compare_with_reference (&cfg, (const char *[]){ "kernel=rbf", "metric=l2", "gamma=0.7",
                                                  "alpha=0.8", "gamma_scale=median",
                                                  "solver=direct", NULL });
}

static void
test_knn_direct_solve (void)
{
  RefConfig cfg = { TRUE, FALSE, TRUE, 0, 0.9, 4 };
  compare_with_reference (&cfg, (const char *[]){ "kernel=knn", "k=4", "alpha=0.9",
                                                  "tol=1e-12", "max_iter=100000", NULL });
  compare_with_reference (&cfg, (const char *[]){ "kernel=knn", "k=4", "alpha=0.9",
                                                  "solver=direct", NULL });
  cfg.symmetric = TRUE;
  compare_with_reference (&cfg, (const char *[]){ "kernel=knn", "k=4", "alpha=0.9",
                                                  "knn_graph=symmetric", "tol=1e-12",
                                                  "max_iter=100000", NULL });
  cfg.cosine = FALSE;
  cfg.k = 3;
  compare_with_reference (&cfg, (const char *[]){ "kernel=knn", "k=3", "alpha=0.9",
                                                  "knn_graph=symmetric", "metric=l2",
                                                  "solver=direct", NULL });
}

/* Two interleaved half circles, one labeled point each: the graph carries the labels along
 * the moons, which nearest-neighbour on the two labels alone cannot. */
static void
moons (guint64 seed, gsize n, FgTensor **x, gint32 **y)
{
  FgRng rng;
  fg_rng_init (&rng, seed, 3);
  *x = fg_tensor_new_2d (n, 2);
  *y = g_new (gint32, n);
  for (gsize i = 0; i < n; i++)
    {
      float *r = fg_tensor_row (*x, i);
      double t = G_PI * fg_rng_uniform (&rng);
      int c = (int) (i % 2);
      r[0] = (float) (c ? 1.0 - cos (t) : cos (t)) + 0.05f * (float) fg_rng_normal (&rng);
      r[1] = (float) (c ? 0.5 - sin (t) : sin (t)) + 0.05f * (float) fg_rng_normal (&rng);
      (*y)[i] = c;
    }
}

static void
test_moons_semi_supervised (void)
{
  g_autoptr (FgTensor) x = NULL, xt = NULL;
  g_autofree gint32 *y = NULL, *yt = NULL;
  /* labeled: the two points nearest each moon's tip, chosen below */
  float lx[4];
  gint32 ly[2] = { 0, 1 };
  FgTensor tl = fg_tensor_wrap_2d (lx, 2, 2);
  BtModel m;
  FgSplit split;
  g_autoptr (GError) error = NULL;
  double acc_ls, acc_knn;

  moons (5, 1000, &x, &y);
  moons (6, 2000, &xt, &yt);
  lx[0] = -1.0f, lx[1] = 0.0f; /* left end of moon 0 */
  lx[2] = 2.0f, lx[3] = 0.5f;  /* right end of moon 1 */
  bt_split_init (&split, 2, &tl, ly, x, NULL, NULL);

  g_assert_true (bt_model_init (&m, "label-spreading",
                                (const char *[]){ "kernel=knn", "metric=l2", "k=10",
                                                  "alpha=0.99", NULL }, 0, &error));
  bt_fit (&m, &split);
  acc_ls = bt_accuracy (&m, xt, yt, 2);
  bt_model_clear (&m);

  g_assert_true (bt_model_init (&m, "knn", (const char *[]){ "k=1", "metric=l2", NULL }, 0,
                                &error));
  bt_fit (&m, &split);
  acc_knn = bt_accuracy (&m, xt, yt, 2);
  bt_model_clear (&m);
  g_test_message ("moons: label spreading %.3f, 1-nn on the labels %.3f", acc_ls, acc_knn);
  g_assert_cmpfloat (acc_ls, >, 0.97);
  g_assert_cmpfloat (acc_ls, >, acc_knn + 0.05);

  /* the same with the dense rbf kernel, a subsample of the unlabeled points */
  g_assert_true (bt_model_init (&m, "label-spreading",
                                (const char *[]){ "kernel=rbf", "metric=l2", "gamma=50",
                                                  "alpha=0.99", "max_unlabeled=600", NULL },
                                0, &error));
  bt_fit (&m, &split);
  acc_ls = bt_accuracy (&m, xt, yt, 2);
  g_test_message ("moons: rbf label spreading on 600 unlabeled %.3f", acc_ls);
  g_assert_cmpfloat (acc_ls, >, 0.95);
  bt_model_clear (&m);
}

static void
test_dense_memory_refusal (void)
{
  g_autoptr (FgTensor) x = NULL;
  g_autofree gint32 *y = NULL;
  BtModel m;
  FgSplit split;
  g_autoptr (GError) error = NULL;
  FgTensor lx, ux;

  bt_blobs (7, 1000, 2, 2, 3.0, &x, &y);
  lx = fg_tensor_view_rows (x, 0, 10);
  ux = fg_tensor_view_rows (x, 10, 990);
  g_assert_true (bt_model_init (&m, "label-spreading",
                                (const char *[]){ "kernel=rbf", "max_memory_mb=1", NULL }, 0,
                                &error));
  bt_split_init (&split, 2, &lx, y, &ux, NULL, NULL);
  g_assert_false (m.vt->fit (m.self, &split, &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_MEMORY);
  g_test_message ("%s", error->message);
  /* 1000² float32 = 3.8 MiB */
  g_assert_nonnull (strstr (error->message, "over 1000 points needs 3.8 MiB"));
  g_assert_nonnull (strstr (error->message, "max_memory_mb = 1"));
  bt_model_clear (&m);
  g_clear_error (&error);

  /* a subsample that fits is accepted */
  g_assert_true (bt_model_init (&m, "label-spreading",
                                (const char *[]){ "kernel=rbf", "max_memory_mb=1",
                                                  "max_unlabeled=400", NULL }, 0, &error));
  bt_fit (&m, &split);
  bt_model_clear (&m);
}

static void
test_param_validation (void)
{
  const char *bad[] = { "alpha=1", "alpha=-0.1", "kernel=linear", "k=0", "gamma=-1",
                        "max_unlabeled=-2", "max_iter=0", "knn_graph=mutual", "solver=cg",
                        "max_memory_mb=0", NULL };
  for (guint i = 0; bad[i] != NULL; i++)
    {
      BtModel m;
      g_autoptr (GError) error = NULL;
      g_assert_false (bt_model_init (&m, "label-spreading", (const char *[]){ bad[i], NULL }, 0,
                                     &error));
      g_assert_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM);
    }
  {
    float xs[6] = { 0, 0, 1, 1, 2, 2 };
    gint32 ys[3] = { 0, 1, 0 };
    FgTensor tx = fg_tensor_wrap_2d (xs, 3, 2);
    BtModel m;
    FgSplit split;
    g_autoptr (GError) error = NULL;
    g_assert_true (bt_model_init (&m, "label-spreading", (const char *[]){ "k=4", NULL }, 0,
                                  &error));
    bt_split_init (&split, 2, &tx, ys, NULL, NULL, NULL);
    g_assert_false (m.vt->fit (m.self, &split, &error));
    g_assert_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM);
    g_assert_nonnull (strstr (error->message, "k = 4 exceeds the 3 points"));
    bt_model_clear (&m);
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/label-spreading/rbf-direct-solve", test_rbf_direct_solve);
  g_test_add_func ("/label-spreading/knn-direct-solve", test_knn_direct_solve);
  g_test_add_func ("/label-spreading/moons-semi-supervised", test_moons_semi_supervised);
  g_test_add_func ("/label-spreading/dense-memory-refusal", test_dense_memory_refusal);
  g_test_add_func ("/label-spreading/param-validation", test_param_validation);
  return g_test_run ();
}
