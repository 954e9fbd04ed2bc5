/* SPDX-License-Identifier: MIT */
/* flowgmm — label spreading (Zhou et al. 2004, "local and global consistency"), inductive
 * (baseline "label-spreading").
 *
 * The graph holds the labeled points and (a random subset of at most max_unlabeled of) the
 * unlabeled points, labeled first.  Test points are not in the graph: they are labeled from
 * their affinities to the graph's points.  The semantics are scikit-learn's LabelSpreading:
 *
 *   kernel rbf  W_ij = exp(−γ (1 − cos(x_i, x_j)))   (metric cosine, the paper's kernel), or
 *               W_ij = exp(−γ ‖x_i − x_j‖²)            (metric l2, scikit-learn's rbf kernel);
 *               dense, n × n float32.
 *   kernel knn  W_ij = 1 when j is one of the k nearest graph points of i (i itself counts, as
 *               scikit-learn's kneighbors_graph of the fitted points does); sparse.  knn_graph
 *               = directed keeps this (scikit-learn); symmetric uses max(W, Wᵀ) (Zhou et al.
 *               assume a symmetric W).
 *   S = D^{-1/2} W D^{-1/2} with the diagonal of W left out of D and S set to 0 on the
 *   diagonal; D holds the column sums (scipy's csgraph.laplacian, in-degree); an isolated
 *   point keeps d = 1.
 *   F ← α S F + (1 − α) Y from F = Y (one-hot rows of the labeled points, 0 elsewhere), until
 *   Σ|F − F_prev| < tol (checked before each product, as scikit-learn) or max_iter products;
 *   or solver = direct: F = (1 − α)(I − αS)^{-1} Y by LU in double (LAPACK dgesv), the limit
 *   of the iteration, i.e. the paper's Y* = (I − αS)^{-1} Y up to the factor.  Then each row of
 *   F is divided by its sum (rows that sum to 0 stay 0).
 *   predict: rbf: p(x) ∝ Σ_j W(x, x_j) F_j; knn: p(x) ∝ Σ over the k nearest graph points of
 *   F_j.  A test point whose weights all vanish gets the uniform distribution and label 0.
 *
 * variant = graphssl gives the authors' other graph method (oil's GraphSSL, REFERENCE §3):
 * F unnormalised and test weights W(x, x_j) d_j^{-1/2}; with α = 1/(1 + reg) and solver =
 * direct it is their (L + reg·I)^{-1} Y up to a constant factor.
 *
 * Deliberate differences from scikit-learn: RBF test affinities are shifted by the nearest
 * graph point's distance before exp (the normalised result is the same, but it cannot
 * underflow to 0/0 = NaN for a large γ); distance ties go to the earlier graph point.
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include <cblas.h>

#include <flowgmm/flowgmm.h>

#define ROW_BLOCK 256
#define PREDICT_BLOCK 1024 /* test rows per distance product (sgemm repacks the graph per call) */
#define FG_NS_PER_FLOP 0.01 /* single-core sgemm at ~100 GFLOP/s: sizes the thread split */

static const FgParamSpec spread_params[] = {
  FG_PARAM_SPEC_CHOICE ("kernel", "knn", "rbf|knn",
                        "rbf: dense Gaussian affinities; knn: sparse k-nearest-neighbour graph"),
  FG_PARAM_SPEC_CHOICE ("metric", "cosine", "cosine|l2",
                        "cosine: rbf exp(−γ(1−cos)), neighbours by sin² (the paper); l2: "
                        "exp(−γ‖x−y‖²), Euclidean neighbours (scikit-learn)"),
  FG_PARAM_SPEC_DOUBLE ("gamma", "10", 0.0, INFINITY, "rbf kernel width γ (see metric)"),
  FG_PARAM_SPEC_CHOICE ("gamma_scale", "absolute", "absolute|median",
                        "absolute: γ as given; median: γ divided by the median distance (1−cos, "
                        "or ‖x−y‖²) between random pairs of graph points, so one γ grid fits "
                        "data sets of any scale"),
  FG_PARAM_SPEC_INT ("k", "16", 1, 100000,
                     "neighbours per point of the knn graph, the point itself included, and "
                     "neighbours of a test point"),
  FG_PARAM_SPEC_CHOICE ("knn_graph", "directed", "directed|symmetric",
                        "directed: scikit-learn's kneighbors_graph; symmetric: max(W, Wᵀ)"),
  FG_PARAM_SPEC_DOUBLE ("alpha", "0.2", 0.0, 0.999999,
                        "clamping factor α: F ← αSF + (1−α)Y (scikit-learn's default 0.2; the "
                        "authors used 0.1 with kernel knn)"),
  FG_PARAM_SPEC_INT ("max_unlabeled", "10000", -1, INFINITY,
                     "unlabeled points in the graph, a random subset (-1: all; the paper: 10000)"),
  FG_PARAM_SPEC_CHOICE ("solver", "iterate", "iterate|direct",
                        "iterate to tol (scikit-learn); direct: (I − αS)⁻¹ by LU in double"),
  FG_PARAM_SPEC_DOUBLE ("tol", "1e-3", 0.0, INFINITY,
                        "stop iterating when Σ|F − F_prev| over all entries is below this"),
  FG_PARAM_SPEC_INT ("max_iter", "1000", 1, 100000000,
                     "most iterations (scikit-learn's default is 30)"),
  FG_PARAM_SPEC_INT ("max_memory_mb", "4096", 1, INFINITY,
                     "refuse a dense graph (rbf) or direct solve needing more than this"),
  FG_PARAM_SPEC_CHOICE ("variant", "sklearn", "sklearn|graphssl",
                        "sklearn: LabelSpreading; graphssl: the authors' GraphSSL prediction "
                        "(unnormalised F, test weights d^-1/2)"),
  FG_PARAM_SPEC_END,
};

typedef struct {
  gsize n;
  gsize *rowptr;  /* n + 1 */
  guint32 *col;
  float *val;
} Csr;

typedef struct {
  /* parameters */
  gboolean knn_kernel, directed, direct, graphssl;
  FgDistance metric;
  double gamma, alpha, tol;
  gboolean gamma_median;
  double median_d2; /* gamma_median: the median squared index distance of the fitted graph */
  gsize k;
  gint64 max_unlabeled, max_iter, max_memory_mb;
  FgRng *rng;

  /* model */
  guint K;
  gsize n, dim;
  FgNeighborIndex *index; /* the graph's points */
  float *F;               /* n × K label distributions */
  float *colw;            /* graphssl: d_j^{-1/2}; else NULL */
  gint64 n_iter;
} Spread;

static gpointer
spread_create (const FgParams *params, FgRng *rng, GError **error)
{
  Spread *self = g_new0 (Spread, 1);
  self->knn_kernel = g_strcmp0 (fg_params_get_string (params, "kernel"), "knn") == 0;
  if (!fg_distance_from_string (fg_params_get_string (params, "metric"), &self->metric))
    g_assert_not_reached ();
  self->gamma = fg_params_get_double (params, "gamma");
  self->gamma_median = g_strcmp0 (fg_params_get_string (params, "gamma_scale"), "median") == 0;
  self->k = (gsize) fg_params_get_int (params, "k");
  self->directed = g_strcmp0 (fg_params_get_string (params, "knn_graph"), "directed") == 0;
  self->alpha = fg_params_get_double (params, "alpha");
  self->max_unlabeled = fg_params_get_int (params, "max_unlabeled");
  self->direct = g_strcmp0 (fg_params_get_string (params, "solver"), "direct") == 0;
  self->tol = fg_params_get_double (params, "tol");
  self->max_iter = fg_params_get_int (params, "max_iter");
  self->max_memory_mb = fg_params_get_int (params, "max_memory_mb");
  self->graphssl = g_strcmp0 (fg_params_get_string (params, "variant"), "graphssl") == 0;
  self->rng = rng;
#ifndef HAVE_DGESV_
  if (self->direct)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_UNSUPPORTED,
                   "label-spreading: solver = direct needs LAPACK, which this build lacks");
      g_free (self);
      return NULL;
    }
#endif
  return self;
}

static void
model_clear (Spread *self)
{
  g_clear_pointer (&self->index, fg_neighbor_index_free);
  g_clear_pointer (&self->F, g_free);
  g_clear_pointer (&self->colw, g_free);
}

/* ---- graph construction ---------------------------------------------------------------------- */

/* The rbf factor on the index's distances: cosine distances are ‖x̂ − ŷ‖² = 2 (1 − cos).  With
 * gamma_scale = median it is γ over the median of those distances (the factor 2 cancels). */
static double
rbf_factor (const Spread *self)
{
  if (self->gamma_median)
    return self->median_d2 > 0.0 ? self->gamma / self->median_d2 : self->gamma;
  return self->metric == FG_DISTANCE_COSINE ? self->gamma / 2.0 : self->gamma;
}

#define MEDIAN_PAIRS 20000

static int
compare_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

/* The median squared distance between MEDIAN_PAIRS random pairs of distinct graph points (all
 * pairs when there are fewer), drawn from the method's RNG. */
static double
median_pair_distance (const Spread *self)
{
  const FgTensor *pts = fg_neighbor_index_get_points (self->index);
  gsize n = self->n, d = self->dim, m = 0;
  gboolean all = n * (n - 1) / 2 <= MEDIAN_PAIRS;
  g_autofree double *dist = g_new (double, MEDIAN_PAIRS);
  if (n < 2)
    return 0.0;
  for (gsize t = 0; m < MEDIAN_PAIRS && (all ? t < n * n : TRUE); t++)
    {
      gsize i, j;
      const float *a, *b;
      double s = 0.0;
      if (all)
        {
          i = t / n, j = t % n;
          if (j <= i)
            continue;
        }
      else
        {
          i = fg_rng_below (self->rng, n);
          j = fg_rng_below (self->rng, n - 1);
          j += j >= i;
        }
      a = fg_tensor_row (pts, i);
      b = fg_tensor_row (pts, j);
      for (gsize c = 0; c < d; c++)
        s += ((double) a[c] - b[c]) * ((double) a[c] - b[c]);
      dist[m++] = s;
    }
  qsort (dist, m, sizeof *dist, compare_double);
  return m % 2 ? dist[m / 2] : 0.5 * (dist[m / 2 - 1] + dist[m / 2]);
}

typedef struct {
  const Spread *self;
  float *S;          /* n × n */
  double *deg;       /* n */
  float *dinv;       /* n: d^{-1/2} */
  gsize n;
} DenseJob;

/* Rows [*r0, *r1) of task t of n: contiguous ranges, whole ROW_BLOCKs but for the last. */
static void
task_rows (gsize rows, guint t, guint n, gsize *r0, gsize *r1)
{
  gsize blocks = (rows + ROW_BLOCK - 1) / ROW_BLOCK;
  *r0 = MIN (blocks * t / n * ROW_BLOCK, rows);
  *r1 = MIN (blocks * (t + 1) / n * ROW_BLOCK, rows);
}

/* Tasks for `rows` rows of `ns_per_row` nanoseconds of work each. */
static guint
row_tasks (gsize rows, double ns_per_row)
{
  gsize blocks = (rows + ROW_BLOCK - 1) / ROW_BLOCK;
  return (guint) MAX ((gsize) 1, MIN ((gsize) fg_tape_parallel_tasks (ns_per_row * rows), blocks));
}

static void
dense_exp_task (gpointer data, guint t, guint n_tasks)
{
  DenseJob *job = data;
  gsize r0, r1;
  float g = (float) rbf_factor (job->self);
  task_rows (job->n, t, n_tasks, &r0, &r1);
  for (gsize i = r0; i < r1; i++)
    {
      float *row = job->S + i * job->n;
      double s = 0.0;
      for (gsize j = 0; j < job->n; j++)
        {
          row[j] = expf (-g * row[j]);
          s += row[j];
        }
      s -= row[i];
      row[i] = 0.0f;
      job->deg[i] = s;
    }
}

static void
dense_scale_task (gpointer data, guint t, guint n_tasks)
{
  DenseJob *job = data;
  gsize r0, r1;
  task_rows (job->n, t, n_tasks, &r0, &r1);
  for (gsize i = r0; i < r1; i++)
    {
      float *row = job->S + i * job->n;
      float di = job->dinv[i];
      for (gsize j = 0; j < job->n; j++)
        row[j] *= di * job->dinv[j];
    }
}

static gboolean
check_memory (const Spread *self, double bytes, const char *what, GError **error)
{
  double limit = (double) self->max_memory_mb * 1048576.0;
  if (bytes > limit)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_MEMORY,
                   "label-spreading: %s over %" G_GSIZE_FORMAT " points needs %.1f MiB, more than "
                   "max_memory_mb = %" G_GINT64_FORMAT "; lower max_unlabeled, raise "
                   "max_memory_mb%s",
                   what, self->n, bytes / 1048576.0, self->max_memory_mb,
                   self->knn_kernel ? "" : " or use kernel = knn");
      return FALSE;
    }
  return TRUE;
}

/* S for the rbf kernel, dense; the degrees' inverse square roots into dinv (n). */
static float *
build_dense (Spread *self, float *dinv, GError **error)
{
  gsize n = self->n;
  DenseJob job = { self, NULL, NULL, dinv, n };
  g_autofree double *deg = g_new (double, n);
  float *S;

  if (!check_memory (self, (double) n * (double) n * sizeof (float), "the dense rbf graph",
                     error))
    return NULL;
  S = g_try_malloc ((gsize) n * n * sizeof (float));
  if (S == NULL)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_MEMORY,
                   "label-spreading: cannot allocate the dense graph (%.0f MiB)",
                   (double) n * n * sizeof (float) / 1048576.0);
      return NULL;
    }
  if (!fg_neighbor_index_distances (self->index, fg_neighbor_index_get_points (self->index), S, n,
                                    error))
    {
      g_free (S);
      return NULL;
    }
  job.S = S;
  job.deg = deg;
  fg_tape_parallel_run (row_tasks (n, 10.0 * n), dense_exp_task, &job);
  for (gsize i = 0; i < n; i++)
    dinv[i] = deg[i] > 0.0 ? (float) (1.0 / sqrt (deg[i])) : 1.0f;
  fg_tape_parallel_run (row_tasks (n, 1.0 * n), dense_scale_task, &job);
  return S;
}

static void
csr_free (Csr *g)
{
  if (g == NULL)
    return;
  g_free (g->rowptr);
  g_free (g->col);
  g_free (g->val);
  g_free (g);
}

static int
compare_u32 (const void *a, const void *b)
{
  guint32 x = *(const guint32 *) a, y = *(const guint32 *) b;
  return x < y ? -1 : x > y;
}

/* S for the knn kernel from the neighbour lists of the graph's own points (each finds itself). */
static Csr *
build_sparse (Spread *self, float *dinv, GError **error)
{
  gsize n = self->n, k = self->k;
  g_autofree guint32 *nb = g_new (guint32, n * k);
  g_autofree double *deg = g_new0 (double, n);
  Csr *g = g_new0 (Csr, 1);

  if (!fg_neighbor_index_query_self (self->index, k, nb, NULL, error))
    {
      csr_free (g);
      return NULL;
    }
  g->n = n;
  g->rowptr = g_new0 (gsize, n + 1);
  if (self->directed)
    {
      /* row i: its neighbours other than itself, in index order */
      g->col = g_new (guint32, n * k);
      for (gsize i = 0; i < n; i++)
        {
          guint32 *c = g->col + g->rowptr[i];
          gsize m = 0;
          for (gsize j = 0; j < k; j++)
            if (nb[i * k + j] != i)
              c[m++] = nb[i * k + j];
          qsort (c, m, sizeof *c, compare_u32);
          g->rowptr[i + 1] = g->rowptr[i] + m;
          for (gsize j = 0; j < m; j++)
            deg[c[j]] += 1.0; /* column sums: in-degree */
        }
    }
  else
    {
      /* max(W, Wᵀ): every edge both ways, duplicates merged */
      g_autofree gsize *cnt = g_new0 (gsize, n + 1);
      g_autofree gsize *pos = NULL;
      g_autofree guint32 *tmp = NULL;
      for (gsize i = 0; i < n; i++)
        for (gsize j = 0; j < k; j++)
          if (nb[i * k + j] != i)
            cnt[i]++, cnt[nb[i * k + j]]++;
      pos = g_new (gsize, n + 1);
      pos[0] = 0;
      for (gsize i = 0; i < n; i++)
        pos[i + 1] = pos[i] + cnt[i];
      tmp = g_new (guint32, pos[n]);
      memcpy (cnt, pos, (n + 1) * sizeof (gsize)); /* fill cursors */
      for (gsize i = 0; i < n; i++)
        for (gsize j = 0; j < k; j++)
          {
            guint32 t = nb[i * k + j];
            if (t == i)
              continue;
            tmp[cnt[i]++] = t;
            tmp[cnt[t]++] = (guint32) i;
          }
      g->col = g_new (guint32, pos[n]);
      for (gsize i = 0; i < n; i++)
        {
          guint32 *c = tmp + pos[i];
          gsize m = pos[i + 1] - pos[i], u = 0;
          qsort (c, m, sizeof *c, compare_u32);
          for (gsize j = 0; j < m; j++)
            if (j == 0 || c[j] != c[j - 1])
              g->col[g->rowptr[i] + u++] = c[j];
          g->rowptr[i + 1] = g->rowptr[i] + u;
          deg[i] = (double) u;
        }
    }
  for (gsize i = 0; i < n; i++)
    dinv[i] = deg[i] > 0.0 ? (float) (1.0 / sqrt (deg[i])) : 1.0f;
  g->val = g_new (float, MAX (g->rowptr[n], (gsize) 1));
  for (gsize i = 0; i < n; i++)
    for (gsize e = g->rowptr[i]; e < g->rowptr[i + 1]; e++)
      g->val[e] = dinv[i] * dinv[g->col[e]];
  return g;
}

/* ---- solving ---------------------------------------------------------------------------------- */

/* Out ← α S In + Add (Add may be NULL), over a block of rows. */
typedef struct {
  const float *S;   /* dense, or NULL */
  const Csr *csr;   /* sparse, or NULL */
  const float *in;  /* n × K */
  float *out;       /* n × K */
  const float *add; /* n × K or NULL */
  float alpha;
  gsize n;
  guint K;
} ApplyJob;

static void
apply_task (gpointer data, guint t, guint n_tasks)
{
  ApplyJob *job = data;
  gsize r0, r1, rows;
  guint K = job->K;
  task_rows (job->n, t, n_tasks, &r0, &r1);
  rows = r1 - r0;
  if (rows == 0)
    return;
  if (job->add != NULL)
    memcpy (job->out + r0 * K, job->add + r0 * K, rows * K * sizeof (float));
  else
    memset (job->out + r0 * K, 0, rows * K * sizeof (float));
  if (job->S != NULL)
    {
      cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) rows, (int) K, (int) job->n,
                   job->alpha, job->S + r0 * job->n, (int) job->n, job->in, (int) K, 1.0f,
                   job->out + r0 * K, (int) K);
      return;
    }
  {
    double *acc = g_newa (double, K);
    const Csr *g = job->csr;
    for (gsize i = r0; i < r0 + rows; i++)
      {
        memset (acc, 0, K * sizeof (double));
        for (gsize e = g->rowptr[i]; e < g->rowptr[i + 1]; e++)
          {
            const float *f = job->in + (gsize) g->col[e] * K;
            double v = g->val[e];
            for (guint c = 0; c < K; c++)
              acc[c] += v * f[c];
          }
        for (guint c = 0; c < K; c++)
          job->out[i * K + c] += (float) (job->alpha * acc[c]);
      }
  }
}

/* scikit-learn's loop, F_{t+1} = α S F_t + (1 − α) Y from F_0 = Y, stopping before step t
 * when Σ|F_t − F_{t−1}| < tol (F_{−1} = 0).  It runs on the increments Δ_t = F_t − F_{t−1}:
 * Δ_1 = α (S Y − Y), Δ_{t+1} = α S Δ_t, F accumulated in double.  The float32 products then
 * err relative to Δ, which vanishes, not to F: the stopping test is not swamped by rounding
 * noise of order ε·Σ|F| (≈ 1e-3 for 10⁴ points, scikit-learn's default tol). */
static gboolean
iterate (Spread *self, const FgSplit *split, const float *S, const Csr *csr, const float *Y,
         GError **error)
{
  gsize n = self->n, nk = n * self->K;
  g_autofree double *F = g_new (double, nk);
  g_autofree float *minus_aY = g_new (float, nk);
  g_autofree float *delta = g_new (float, nk);
  g_autofree float *next = g_new (float, nk);
  ApplyJob job = { S, csr, NULL, NULL, NULL, (float) self->alpha, n, self->K };
  /* per row: a dense row of S times F, or the row's edges */
  double per_row = S != NULL ? (double) n : (double) csr->rowptr[n] / (double) MAX (n, (gsize) 1);
  guint apply_tasks = row_tasks (n, FG_NS_PER_FLOP * 2.0 * self->K * per_row);

  for (gsize j = 0; j < nk; j++)
    {
      F[j] = Y[j];
      delta[j] = Y[j];
      minus_aY[j] = (float) (-self->alpha * Y[j]);
    }
  for (self->n_iter = 0; self->n_iter < self->max_iter; self->n_iter++)
    {
      double diff = 0.0;
      float *t;
      for (gsize j = 0; j < nk; j++)
        diff += fabs ((double) delta[j]);
      if (diff < self->tol)
        break;
      if (fg_split_cancelled (split))
        {
          g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "label-spreading: cancelled");
          return FALSE;
        }
      job.in = self->n_iter == 0 ? Y : delta;
      job.out = next;
      job.add = self->n_iter == 0 ? minus_aY : NULL;
      fg_tape_parallel_run (apply_tasks, apply_task, &job);
      t = delta, delta = next, next = t;
      for (gsize j = 0; j < nk; j++)
        F[j] += delta[j];
      if (self->n_iter % 10 == 0)
        {
          char what[96];
          g_snprintf (what, sizeof what, "iteration %" G_GINT64_FORMAT " Σ|ΔF| %.3g",
                      self->n_iter, diff);
          fg_split_report_progress (split, 0.5 + 0.5 * (double) self->n_iter / self->max_iter,
                                    what);
        }
    }
  if (self->n_iter >= self->max_iter)
    g_debug ("label-spreading: max_iter = %" G_GINT64_FORMAT " reached without convergence",
             self->max_iter);
  for (gsize j = 0; j < nk; j++)
    self->F[j] = (float) F[j];
  return TRUE;
}

#ifdef HAVE_DGESV_
extern void dgesv_ (const int *n, const int *nrhs, double *a, const int *lda, int *ipiv,
                    double *b, const int *ldb, int *info);
#endif

/* F = (1 − α)(I − αS)^{-1} Y in double. */
static gboolean
solve_direct (Spread *self, const float *S, const Csr *csr, const float *Y, GError **error)
{
#ifdef HAVE_DGESV_
  gsize n = self->n;
  guint K = self->K;
  int nn = (int) n, nrhs = (int) K, info = 0;
  double *A;
  g_autofree double *B = NULL;
  g_autofree int *ipiv = NULL;

  if (n > G_MAXINT / 2
      || !check_memory (self, (double) n * n * sizeof (double)
                                  + (S != NULL ? (double) n * n * sizeof (float) : 0.0),
                        "the direct solve", error))
    return FALSE;
  A = g_try_malloc0 (n * n * sizeof (double));
  if (A == NULL)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_MEMORY,
                   "label-spreading: cannot allocate the direct solve (%.0f MiB)",
                   (double) n * n * sizeof (double) / 1048576.0);
      return FALSE;
    }
  /* column-major A = I − αS: A[i + j n] */
  for (gsize i = 0; i < n; i++)
    {
      if (S != NULL)
        for (gsize j = 0; j < n; j++)
          A[i + j * n] = -self->alpha * S[i * n + j];
      else
        for (gsize e = csr->rowptr[i]; e < csr->rowptr[i + 1]; e++)
          A[i + (gsize) csr->col[e] * n] = -self->alpha * csr->val[e];
      A[i + i * n] += 1.0;
    }
  B = g_new (double, n * K);
  for (gsize i = 0; i < n; i++)
    for (guint c = 0; c < K; c++)
      B[i + c * n] = (1.0 - self->alpha) * Y[i * K + c];
  ipiv = g_new (int, n);
  dgesv_ (&nn, &nrhs, A, &nn, ipiv, B, &nn, &info);
  g_free (A);
  if (info != 0)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_NUMERIC,
                   "label-spreading: I − αS is singular (LAPACK dgesv info %d)", info);
      return FALSE;
    }
  for (gsize i = 0; i < n; i++)
    for (guint c = 0; c < K; c++)
      self->F[i * K + c] = (float) B[i + c * n];
  self->n_iter = 0;
  return TRUE;
#else
  g_set_error (error, FG_ERROR, FG_ERROR_UNSUPPORTED, "label-spreading: no LAPACK in this build");
  return FALSE;
#endif
}

/* ---- fit ----------------------------------------------------------------------------------- */

static gboolean
spread_fit (gpointer data, const FgSplit *split, GError **error)
{
  Spread *self = data;
  gsize nl = split->labeled.n, nu = split->unlabeled.n, d = split->dim, n;
  guint K = split->n_classes;
  g_autofree guint32 *pick = NULL;
  g_autoptr (FgTensor) xg = NULL;
  g_autofree float *Y = NULL, *S = NULL, *dinv = NULL;
  Csr *csr = NULL;
  gboolean ok;

  model_clear (self);
  if (nl == 0 || split->labeled.y == NULL)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                   "label-spreading: the split has no labeled points");
      return FALSE;
    }
  for (gsize i = 0; i < nl; i++)
    if (split->labeled.y[i] < 0 || (guint) split->labeled.y[i] >= K)
      {
        g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                     "label-spreading: labeled point %" G_GSIZE_FORMAT " has label %d outside "
                     "[0, %u)", i, split->labeled.y[i], K);
        return FALSE;
      }

  /* the unlabeled subset, in data order */
  if (self->max_unlabeled >= 0 && nu > (gsize) self->max_unlabeled)
    {
      g_autofree guint32 *perm = g_new (guint32, nu);
      fg_rng_permutation (self->rng, perm, nu);
      nu = (gsize) self->max_unlabeled;
      pick = g_new (guint32, MAX (nu, (gsize) 1));
      memcpy (pick, perm, nu * sizeof (guint32));
      qsort (pick, nu, sizeof *pick, compare_u32);
    }
  n = self->n = nl + nu;
  self->K = K;
  self->dim = d;
  if (self->knn_kernel && self->k > n)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                   "label-spreading: k = %" G_GSIZE_FORMAT " exceeds the %" G_GSIZE_FORMAT
                   " points of the graph", self->k, n);
      return FALSE;
    }
  if (!self->knn_kernel
      && !check_memory (self, (double) n * (double) n * sizeof (float), "the dense rbf graph",
                        error))
    return FALSE;

  xg = fg_tensor_new_2d (n, d);
  for (gsize i = 0; i < nl; i++)
    memcpy (fg_tensor_row (xg, i), fg_tensor_row (&split->labeled.x, i), d * sizeof (float));
  for (gsize i = 0; i < nu; i++)
    memcpy (fg_tensor_row (xg, nl + i),
            fg_tensor_row (&split->unlabeled.x, pick != NULL ? pick[i] : i), d * sizeof (float));
  self->index = fg_neighbor_index_new (xg, self->metric, error);
  g_clear_pointer (&xg, fg_tensor_free); /* the index holds its own copy */
  if (self->index == NULL)
    {
      g_prefix_error (error, "label-spreading: ");
      return FALSE;
    }
  if (fg_split_cancelled (split))
    {
      g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "label-spreading: cancelled");
      return FALSE;
    }

  if (self->gamma_median && !self->knn_kernel)
    self->median_d2 = median_pair_distance (self);
  dinv = g_new (float, n);
  if (self->knn_kernel)
    ok = (csr = build_sparse (self, dinv, error)) != NULL;
  else
    ok = (S = build_dense (self, dinv, error)) != NULL;
  if (!ok)
    return FALSE;
  fg_split_report_progress (split, 0.5, self->knn_kernel ? "knn graph built" : "rbf graph built");

  Y = g_new0 (float, n * K);
  for (gsize i = 0; i < nl; i++)
    Y[i * K + split->labeled.y[i]] = 1.0f;
  self->F = g_new (float, n * K);
  ok = self->direct ? solve_direct (self, S, csr, Y, error)
                    : iterate (self, split, S, csr, Y, error);
  csr_free (csr);
  if (!ok)
    return FALSE;

  if (self->graphssl)
    self->colw = g_steal_pointer (&dinv);
  else
    for (gsize i = 0; i < n; i++)
      {
        double s = 0.0;
        for (guint c = 0; c < K; c++)
          s += self->F[i * K + c];
        if (s != 0.0)
          for (guint c = 0; c < K; c++)
            self->F[i * K + c] = (float) (self->F[i * K + c] / s);
      }
  {
    char what[96];
    g_snprintf (what, sizeof what, "%" G_GSIZE_FORMAT " points, %" G_GINT64_FORMAT " iterations",
                n, self->n_iter);
    fg_split_report_progress (split, 1.0, what);
  }
  g_debug ("label-spreading: %" G_GSIZE_FORMAT " graph points (%" G_GSIZE_FORMAT
           " labeled), %" G_GINT64_FORMAT " iterations", n, nl, self->n_iter);
  return TRUE;
}

/* ---- predict ------------------------------------------------------------------------------- */

static void
finish_row (const Spread *self, const double *p, gint32 *label, float *proba)
{
  double s = 0.0;
  guint best = 0;
  for (guint c = 0; c < self->K; c++)
    s += p[c];
  for (guint c = 1; c < self->K; c++)
    if (p[c] > p[best])
      best = c;
  *label = (gint32) (s > 0.0 ? best : 0);
  if (proba != NULL)
    for (guint c = 0; c < self->K; c++)
      proba[c] = (float) (s > 0.0 ? p[c] / s : 1.0 / self->K);
}

typedef struct {
  const Spread *self;
  const FgTensor *x;
  gint32 *labels_out;
  float *proba_out;
  GMutex lock;
  GError *error; /* the first error of any task, under lock */
} RbfPredictJob;

/* Task `task` of n_tasks: the blocks task, task + n_tasks, ... of PREDICT_BLOCK test rows,
 * each: distances to every graph point, affinities, P = A F.  One affinity buffer per worker
 * (a fresh one per block would cost the kernel's page clearing every time). */
static void
rbf_predict_task (gpointer data, guint task, guint n_tasks)
{
  RbfPredictJob *job = data;
  const Spread *self = job->self;
  gsize n = self->n, rows = fg_tensor_rows (job->x);
  guint K = self->K;
  float *A = g_try_malloc (MIN (rows, (gsize) PREDICT_BLOCK) * n * sizeof (float));
  g_autofree float *P = g_new (float, (gsize) PREDICT_BLOCK * K);
  g_autofree double *p = g_new (double, K);
  const float g = (float) rbf_factor (self);
  GError *local = NULL;

  if (A == NULL)
    g_set_error (&local, FG_ERROR, FG_ERROR_MEMORY, "cannot allocate the test affinities");
  for (gsize r0 = task * PREDICT_BLOCK; A != NULL && r0 < rows;
       r0 += n_tasks * PREDICT_BLOCK)
    {
      gsize m = MIN ((gsize) PREDICT_BLOCK, rows - r0);
      FgTensor view = fg_tensor_view_rows (job->x, r0, m);
      if (!fg_neighbor_index_distances (self->index, &view, A, n, &local))
        break;
      for (gsize i = 0; i < m; i++)
        {
          float *a = A + i * n, dmin = INFINITY;
          for (gsize j = 0; j < n; j++)
            dmin = MIN (dmin, a[j]);
          /* exp(−g (d − d_min)): the factor exp(−g d_min) cancels in the normalisation and the
           * nearest point's weight is 1, so a large γ cannot underflow to 0/0 */
          for (gsize j = 0; j < n; j++)
            a[j] = expf (-g * (a[j] - dmin));
          if (self->colw != NULL)
            for (gsize j = 0; j < n; j++)
              a[j] *= self->colw[j];
        }
      cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) m, (int) K, (int) n, 1.0f, A,
                   (int) n, self->F, (int) K, 0.0f, P, (int) K);
      for (gsize i = 0; i < m; i++)
        {
          for (guint c = 0; c < K; c++)
            p[c] = P[i * K + c];
          finish_row (self, p, job->labels_out + r0 + i,
                      job->proba_out != NULL ? job->proba_out + (r0 + i) * K : NULL);
        }
    }
  g_free (A);
  if (local != NULL)
    {
      g_mutex_lock (&job->lock);
      if (job->error == NULL)
        job->error = local;
      else
        g_error_free (local);
      g_mutex_unlock (&job->lock);
    }
}

static gboolean
spread_predict (gpointer data, const FgTensor *x, gint32 *labels_out, float *proba_out,
                GError **error)
{
  Spread *self = data;
  gsize rows = fg_tensor_rows (x), n = self->n;
  guint K = self->K;
  g_autofree double *p = NULL;

  if (self->F == NULL)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "label-spreading: predict before fit");
      return FALSE;
    }
  if (rows == 0)
    return TRUE;
  p = g_new (double, K);
  if (self->knn_kernel)
    {
      g_autofree guint32 *nb = g_new (guint32, rows * self->k);
      if (!fg_neighbor_index_query (self->index, x, self->k, nb, NULL, error))
        {
          g_prefix_error (error, "label-spreading: ");
          return FALSE;
        }
      for (gsize i = 0; i < rows; i++)
        {
          memset (p, 0, K * sizeof (double));
          for (gsize j = 0; j < self->k; j++)
            {
              guint32 t = nb[i * self->k + j];
              double w = self->colw != NULL ? self->colw[t] : 1.0;
              for (guint c = 0; c < K; c++)
                p[c] += w * self->F[(gsize) t * K + c];
            }
          finish_row (self, p, labels_out + i, proba_out != NULL ? proba_out + i * K : NULL);
        }
      return TRUE;
    }

  {
    gsize n_blocks = (rows + PREDICT_BLOCK - 1) / PREDICT_BLOCK;
    RbfPredictJob job = { self, x, labels_out, proba_out, { 0 }, NULL };
    guint tasks = (guint) MAX ((gsize) 1,
                               MIN ((gsize) fg_tape_parallel_tasks (FG_NS_PER_FLOP * 2.0 * rows * n
                                                                    * self->dim),
                                    n_blocks));
    if (!check_memory (self, (double) MIN (rows, (gsize) PREDICT_BLOCK) * n * sizeof (float)
                               * tasks, "the test affinities", error))
      return FALSE;
    g_mutex_init (&job.lock);
    fg_tape_parallel_run (tasks, rbf_predict_task, &job);
    g_mutex_clear (&job.lock);
    if (job.error != NULL)
      {
        g_propagate_prefixed_error (error, job.error, "label-spreading: ");
        return FALSE;
      }
  }
  return TRUE;
}

static void
spread_destroy (gpointer data)
{
  Spread *self = data;
  if (self == NULL)
    return;
  model_clear (self);
  g_free (self);
}

static const FgBaselineVTable spread_vtable = {
  .struct_size = sizeof (FgBaselineVTable),
  .create = spread_create,
  .fit = spread_fit,
  .predict = spread_predict,
  .destroy = spread_destroy,
};

static const FgComponent spread_components[] = {
  { FG_KIND_BASELINE, "label-spreading",
    "label spreading (Zhou et al. 2004), inductive; dense rbf or sparse knn graph",
    spread_params, &spread_vtable, { 0 } },
  { 0 },
};

static const FgPluginInfo spread_info = {
  .abi_version = FG_PLUGIN_ABI_VERSION,
  .struct_size = sizeof (FgPluginInfo),
  .name = "label-spreading",
  .version = PACKAGE_VERSION,
  .license = "MIT",
  .description = "Label spreading over labeled and unlabeled points (scikit-learn's "
                 "LabelSpreading semantics), test points labeled inductively",
  .components = spread_components,
};

FG_PLUGIN_DEFINE (spread_info)
