/* SPDX-License-Identifier: MIT */
/* flowgmm — multinomial logistic regression with an L2 penalty (baseline "logreg").
 *
 * The objective is scikit-learn's (LogisticRegression, solver lbfgs):
 *     f(W, b) = Σ_i −log softmax(W x_i + b)_{y_i}  +  ‖W‖² / (2C)
 * summed (not averaged) over the labeled points, the intercept b unpenalised, every class with
 * its own weight row (the multinomial parameterisation).  With multi_class = auto and two
 * classes it is the binomial model instead, as scikit-learn's default: class 0's row and
 * intercept are pinned at 0 (only w = W₁ − W₀ is fitted and penalised).
 *
 * Solved with liblbfgs (L-BFGS, More–Thuente line search, 10 corrections as scipy's L-BFGS-B)
 * from zero.  Stops when ‖∇f‖∞ ≤ tol (scipy's gtol, which scikit-learn sets to its tol) or when
 * the relative decrease of f over one iteration falls below ftol (default 2.2e-9, scipy's
 * factr 1e7 × machine epsilon), or after max_iter iterations.  Objective and gradient are
 * computed in double with dgemm.
 *
 * Classes with no labeled point are never predicted (probability 0), as scikit-learn, which
 * only knows the classes it saw.
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include <cblas.h>
#include <lbfgs.h>

#include <flowgmm/flowgmm.h>

#define CANCELLED 1001                     /* our progress callback's stop codes */
#define CONVERGED 1002

static const FgParamSpec logreg_params[] = {
  FG_PARAM_SPEC_DOUBLE ("c", "1.0", 1e-12, 1e12,
                        "inverse L2 strength: minimise Σ cross-entropy + ‖W‖²/(2c) "
                        "(scikit-learn's C)"),
  FG_PARAM_SPEC_DOUBLE ("tol", "1e-4", 0.0, INFINITY,
                        "stop when the largest gradient component is at most this (scipy's "
                        "gtol, scikit-learn's tol)"),
  FG_PARAM_SPEC_DOUBLE ("ftol", "2.220446049250313e-09", 0.0, 1.0,
                        "also stop when an iteration lowers f by less than this fraction "
                        "(scipy's L-BFGS-B default); 0: only tol and max_iter stop"),
  FG_PARAM_SPEC_INT ("max_iter", "1000", 1, 10000000,
                     "most L-BFGS iterations (scikit-learn's default is 100)"),
  FG_PARAM_SPEC_BOOL ("fit_intercept", "true", "learn an unpenalised intercept per class"),
  FG_PARAM_SPEC_CHOICE ("multi_class", "multinomial", "multinomial|auto",
                        "multinomial: softmax over all classes (the paper's setting); auto: "
                        "binomial for two classes, as scikit-learn's default"),
  FG_PARAM_SPEC_END,
};

typedef struct {
  /* parameters */
  double C, tol, ftol;
  gint64 max_iter;
  gboolean fit_intercept, binomial_if_two;

  /* model */
  guint K;          /* classes of the split */
  gsize dim;
  guint m;          /* classes with a free weight row */
  guint *cls;       /* cls[r]: class of free row r */
  gboolean pinned;  /* binomial: class pinned_cls has logit 0 */
  guint pinned_cls;
  gboolean *present;
  float *W;         /* m × dim, for predict */
  float *b;         /* m */

  /* during fit */
  const double *X;  /* n × dim, double copy of the labeled points */
  const gint32 *y;
  gsize n;
  double *Z;        /* n × m logits, then P − Y */
  const FgSplit *split;
  int iters;
  double final_f, final_gmax;
} Logreg;

static gpointer
logreg_create (const FgParams *params, FgRng *rng, GError **error)
{
  Logreg *self = g_new0 (Logreg, 1);
  self->C = fg_params_get_double (params, "c");
  self->tol = fg_params_get_double (params, "tol");
  self->ftol = fg_params_get_double (params, "ftol");
  self->max_iter = fg_params_get_int (params, "max_iter");
  self->fit_intercept = fg_params_get_bool (params, "fit_intercept");
  self->binomial_if_two = g_strcmp0 (fg_params_get_string (params, "multi_class"), "auto") == 0;
  return self;
}

static gsize
n_vars (const Logreg *self)
{
  return (gsize) self->m * (self->dim + (self->fit_intercept ? 1 : 0));
}

/* ---- objective ---------------------------------------------------------------------------- */

/* The rows are processed in chunks small enough (about 192 KiB of X, chunk_rows ()) that a
 * chunk of X stays in L2 between its two products, Z_c = X_c Wᵀ and ∇W += (P − Y)_cᵀ X_c, and
 * that OpenBLAS takes its small-matrix path without packing: on MNIST-sized problems (1000 ×
 * 784, 10 classes) this is 2.5–5× faster than two whole-matrix dgemm calls, which spend most of
 * their time packing X.  Chunks are split over the core's worker pool; each task sums into its
 * own gradient, and the parts are added in task order (reproducible for a thread count). */
static gsize
chunk_rows (gsize dim)
{
  return CLAMP (24576 / MAX (dim, (gsize) 1), (gsize) 16, (gsize) 256);
}

typedef struct {
  Logreg *self;
  const double *W, *b;  /* m × d, m (b NULL without intercept) */
  double *g;            /* n_tasks × n_vars gradient parts (NULL: no gradient) */
  double *f;            /* n_tasks loss parts */
  gsize chunk, n_chunks;
} EvalJob;

static void
eval_task (gpointer data, guint t, guint n_tasks)
{
  EvalJob *job = data;
  Logreg *self = job->self;
  const gsize n = self->n, d = self->dim, m = self->m, nv = n_vars (self);
  const gsize c0 = job->n_chunks * t / n_tasks, c1 = job->n_chunks * (t + 1) / n_tasks;
  double *g = job->g != NULL ? job->g + t * nv : NULL, f = 0.0;

  if (g != NULL)
    memset (g, 0, nv * sizeof (double));
  for (gsize c = c0; c < c1; c++)
    {
      const gsize r0 = c * job->chunk, rows = MIN (job->chunk, n - r0);
      const double *X = self->X + r0 * d;
      double *Z = self->Z + r0 * m;
      /* Z = X Wᵀ + b */
      cblas_dgemm (CblasRowMajor, CblasNoTrans, CblasTrans, (int) rows, (int) m, (int) d, 1.0, X,
                   (int) d, job->W, (int) d, 0.0, Z, (int) m);
      for (gsize i = 0; i < rows; i++)
        {
          double *z = Z + i * m, mx = self->pinned ? 0.0 : -INFINITY, s;
          double zy = 0.0; /* the pinned class's logit is 0 */
          const guint y = (guint) self->y[r0 + i];
          if (job->b != NULL)
            for (gsize r = 0; r < m; r++)
              z[r] += job->b[r];
          for (gsize r = 0; r < m; r++)
            mx = MAX (mx, z[r]);
          s = self->pinned ? exp (-mx) : 0.0;
          for (gsize r = 0; r < m; r++)
            {
              if (self->cls[r] == y)
                zy = z[r];
              z[r] = exp (z[r] - mx);
              s += z[r];
            }
          f += mx + log (s) - zy;
          /* Z ← P − Y, the gradient of the loss with respect to the logits */
          for (gsize r = 0; r < m; r++)
            {
              z[r] /= s;
              if (self->cls[r] == y)
                z[r] -= 1.0;
              if (g != NULL && job->b != NULL)
                g[m * d + r] += z[r];
            }
        }
      /* ∇W += (P − Y)_cᵀ X_c */
      if (g != NULL)
        cblas_dgemm (CblasRowMajor, CblasTrans, CblasNoTrans, (int) m, (int) d, (int) rows, 1.0,
                     Z, (int) m, X, (int) d, 1.0, g, (int) d);
    }
  job->f[t] = f;
}

/* f and ∇f at x = [W (m × dim, row-major), b (m)]. */
static double
logreg_objective (Logreg *self, const double *x, double *g)
{
  const gsize n = self->n, d = self->dim, m = self->m, nv = n_vars (self);
  EvalJob job = { self, x, self->fit_intercept ? x + m * d : NULL, NULL, NULL, 0, 0 };
  double f = 0.0, reg = 0.0, fparts[64];
  guint tasks;
  g_autofree double *gparts = NULL;

  job.chunk = chunk_rows (d);
  job.n_chunks = (n + job.chunk - 1) / job.chunk;
  tasks = fg_tape_parallel_tasks (0.01 /* ns per flop */ * 4.0 * (double) n * d * m);
  tasks = (guint) MAX ((gsize) 1, MIN (MIN ((gsize) tasks, job.n_chunks), G_N_ELEMENTS (fparts)));
  job.f = fparts;
  if (g != NULL)
    job.g = tasks == 1 ? g : (gparts = g_new (double, tasks * nv));
  fg_tape_parallel_run (tasks, eval_task, &job);
  for (guint t = 0; t < tasks; t++)
    f += fparts[t];
  if (g != NULL && tasks > 1)
    {
      memcpy (g, gparts, nv * sizeof (double));
      for (guint t = 1; t < tasks; t++)
        for (gsize j = 0; j < nv; j++)
          g[j] += gparts[t * nv + j];
    }
  for (gsize j = 0; j < m * d; j++)
    reg += x[j] * x[j];
  f += reg / (2.0 * self->C);
  if (g != NULL)
    for (gsize j = 0; j < m * d; j++)
      g[j] += x[j] / self->C;
  return f;
}

static lbfgsfloatval_t
evaluate_cb (void *instance, const lbfgsfloatval_t *x, lbfgsfloatval_t *g, const int n,
             const lbfgsfloatval_t step)
{
  return logreg_objective (instance, x, g);
}

static double
inf_norm (const double *g, gsize n)
{
  double mx = 0.0;
  for (gsize j = 0; j < n; j++)
    mx = MAX (mx, fabs (g[j]));
  return mx;
}

static int
progress_cb (void *instance, const lbfgsfloatval_t *x, const lbfgsfloatval_t *g,
             const lbfgsfloatval_t fx, const lbfgsfloatval_t xnorm,
             const lbfgsfloatval_t gnorm, const lbfgsfloatval_t step, int n, int k, int ls)
{
  Logreg *self = instance;
  self->iters = k;
  self->final_f = fx;
  self->final_gmax = inf_norm (g, (gsize) n);
  if (self->split != NULL && k % 10 == 0)
    {
      char what[96];
      g_snprintf (what, sizeof what, "iteration %d f %.6g max|g| %.3g", k, fx, self->final_gmax);
      fg_split_report_progress (self->split, MIN (1.0, (double) k / (double) self->max_iter),
                                what);
    }
  if (self->split != NULL && fg_split_cancelled (self->split))
    return CANCELLED;
  if (self->final_gmax <= self->tol)
    return CONVERGED;
  return 0;
}

static void
model_clear (Logreg *self)
{
  g_clear_pointer (&self->cls, g_free);
  g_clear_pointer (&self->present, g_free);
  g_clear_pointer (&self->W, g_free);
  g_clear_pointer (&self->b, g_free);
}

/* Set up classes (present / free rows / pinned) from the labels. */
static gboolean
setup_classes (Logreg *self, const gint32 *y, gsize n, guint K, GError **error)
{
  guint n_present = 0;
  model_clear (self);
  self->K = K;
  self->present = g_new0 (gboolean, K);
  for (gsize i = 0; i < n; i++)
    {
      if (y[i] < 0 || (guint) y[i] >= K)
        {
          g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                       "logreg: labeled point %" G_GSIZE_FORMAT " has label %d outside [0, %u)",
                       i, y[i], K);
          return FALSE;
        }
      self->present[y[i]] = TRUE;
    }
  self->cls = g_new (guint, K);
  for (guint k = 0; k < K; k++)
    if (self->present[k])
      self->cls[n_present++] = k;
  if (n_present < 2)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                   "logreg: the labeled points hold %u class%s; at least two are needed",
                   n_present, n_present == 1 ? "" : "es");
      return FALSE;
    }
  self->pinned = self->binomial_if_two && n_present == 2;
  if (self->pinned)
    {
      self->pinned_cls = self->cls[0];
      self->cls[0] = self->cls[1];
      self->m = 1;
    }
  else
    self->m = n_present;
  return TRUE;
}

/* The whole fit on double data X (n × dim) with labels y; x_out (n_vars) receives the solution. */
static gboolean
solve (Logreg *self, double *x, GError **error)
{
  lbfgs_parameter_t param;
  g_autofree double *g = g_new (double, n_vars (self));
  double fx = 0.0;
  int ret;

  memset (x, 0, n_vars (self) * sizeof (double));
  self->iters = 0;
  self->final_f = logreg_objective (self, x, g);
  self->final_gmax = inf_norm (g, n_vars (self));
  if (self->final_gmax <= self->tol)
    return TRUE; /* already optimal (e.g. balanced classes, no features) */

  lbfgs_parameter_init (&param);
  param.m = 10;               /* scipy's maxcor */
  param.epsilon = 0.0;        /* our own ‖g‖∞ test in progress_cb */
  param.past = self->ftol > 0.0 ? 1 : 0;
  param.delta = self->ftol;
  param.max_iterations = (int) MIN (self->max_iter, (gint64) G_MAXINT);
  param.max_linesearch = 20;  /* scipy's maxls */
  ret = lbfgs ((int) n_vars (self), x, &fx, evaluate_cb, progress_cb, self, &param);
  switch (ret)
    {
    case LBFGS_SUCCESS:
    case LBFGS_STOP:
    case LBFGS_ALREADY_MINIMIZED:
    case CONVERGED:
    case LBFGSERR_MAXIMUMITERATION:
      break;
    case CANCELLED:
      g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "logreg: cancelled");
      return FALSE;
    case LBFGSERR_ROUNDING_ERROR:
    case LBFGSERR_MINIMUMSTEP:
    case LBFGSERR_MAXIMUMSTEP:
    case LBFGSERR_MAXIMUMLINESEARCH:
    case LBFGSERR_WIDTHTOOSMALL:
    case LBFGSERR_INCREASEGRADIENT:
    case LBFGSERR_INCORRECT_TMINMAX:
      /* The line search cannot improve further (at the limit of double precision); liblbfgs
       * has restored the best point found. */
      g_debug ("logreg: line search stopped (liblbfgs status %d) at f = %.9g, max|g| = %.3g "
               "after %d iterations", ret, self->final_f, self->final_gmax, self->iters);
      break;
    default:
      g_set_error (error, FG_ERROR, FG_ERROR_NUMERIC, "logreg: L-BFGS failed (liblbfgs status %d)",
                   ret);
      return FALSE;
    }
  self->final_f = logreg_objective (self, x, g);
  self->final_gmax = inf_norm (g, n_vars (self));
  if (!isfinite (self->final_f))
    {
      g_set_error (error, FG_ERROR, FG_ERROR_NUMERIC, "logreg: the objective is not finite");
      return FALSE;
    }
  /* A fit that cannot leave its start though the gradient says it should (features of a scale
   * such as 1e30 make every step overflow) would predict uniform probabilities: that is no
   * result.  Nor are weights that do not fit a float. */
  {
    const gsize n_w = (gsize) self->m * self->dim; /* the weights; the intercepts follow */
    gboolean moved = FALSE;
    double gw = 0.0;
    for (gsize i = 0; i < n_vars (self); i++)
      {
        if (!isfinite ((float) x[i]))
          {
            g_set_error (error, FG_ERROR, FG_ERROR_NUMERIC,
                         "logreg: weight %" G_GSIZE_FORMAT " is not finite in single precision "
                         "(%g): scale the features (standardize = true)", i, x[i]);
            return FALSE;
          }
        if (i < n_w)
          {
            moved |= x[i] != 0.0;
            gw = MAX (gw, fabs (g[i]));
          }
      }
    if (n_w > 0 && !moved && !(gw <= self->tol))
      {
        g_set_error (error, FG_ERROR, FG_ERROR_NUMERIC,
                     "logreg: the weights cannot leave their starting point (max |gradient| "
                     "%g): are the features of an extreme scale? (standardize = true)", gw);
        return FALSE;
      }
  }
  g_debug ("logreg: %d iterations, f = %.9g, max|g| = %.3g (status %d)", self->iters,
           self->final_f, self->final_gmax, ret);
  return TRUE;
}

static gboolean
logreg_fit (gpointer data, const FgSplit *split, GError **error)
{
  Logreg *self = data;
  gsize n = split->labeled.n, d = split->dim;
  g_autofree double *X = NULL, *Z = NULL;
  lbfgsfloatval_t *x;
  gboolean ok;

  if (n == 0 || split->labeled.y == NULL)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA, "logreg: the split has no labeled points");
      return FALSE;
    }
  self->dim = d;
  if (!setup_classes (self, split->labeled.y, n, split->n_classes, error))
    return FALSE;
  X = g_new (double, n * d);
  for (gsize i = 0; i < n; i++)
    {
      const float *row = fg_tensor_row (&split->labeled.x, i);
      for (gsize j = 0; j < d; j++)
        X[i * d + j] = row[j];
    }
  Z = g_new (double, n * self->m);
  self->X = X;
  self->y = split->labeled.y;
  self->n = n;
  self->Z = Z;
  self->split = split;
  x = lbfgs_malloc ((int) n_vars (self));
  if (x == NULL)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_MEMORY, "logreg: out of memory for %" G_GSIZE_FORMAT
                   " variables", n_vars (self));
      return FALSE;
    }
  ok = solve (self, x, error);
  if (ok)
    {
      self->W = g_new (float, (gsize) self->m * d);
      self->b = g_new0 (float, self->m);
      for (gsize j = 0; j < (gsize) self->m * d; j++)
        self->W[j] = (float) x[j];
      if (self->fit_intercept)
        for (guint r = 0; r < self->m; r++)
          self->b[r] = (float) x[(gsize) self->m * d + r];
      fg_split_report_progress (split, 1.0, "converged");
    }
  lbfgs_free (x);
  self->X = NULL;
  self->Z = NULL;
  self->y = NULL;
  self->split = NULL;
  return ok;
}

static gboolean
logreg_predict (gpointer data, const FgTensor *x, gint32 *labels_out, float *proba_out,
                GError **error)
{
  Logreg *self = data;
  gsize rows = fg_tensor_rows (x), m = self->m, d = self->dim;
  g_autofree float *Z = NULL;
  g_autofree double *p = NULL;

  if (self->W == NULL)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "logreg: predict before fit");
      return FALSE;
    }
  if (fg_tensor_cols (x) != d)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                   "logreg: fitted on %" G_GSIZE_FORMAT " features, asked about %" G_GSIZE_FORMAT,
                   d, fg_tensor_cols (x));
      return FALSE;
    }
  if (rows == 0)
    return TRUE;
  Z = g_new (float, rows * m);
  p = g_new (double, self->K);
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, (int) rows, (int) m, (int) d, 1.0f,
               x->data, (int) MAX (x->ld, d), self->W, (int) d, 0.0f, Z, (int) m);
  for (gsize i = 0; i < rows; i++)
    {
      double mx = -INFINITY, s = 0.0;
      guint best = 0;
      gboolean any = FALSE;
      for (guint k = 0; k < self->K; k++)
        p[k] = -INFINITY; /* absent classes */
      if (self->pinned)
        p[self->pinned_cls] = 0.0;
      for (gsize r = 0; r < m; r++)
        p[self->cls[r]] = (double) Z[i * m + r] + self->b[r];
      for (guint k = 0; k < self->K; k++)
        mx = MAX (mx, p[k]);
      for (guint k = 0; k < self->K; k++)
        {
          p[k] = exp (p[k] - mx);
          s += p[k];
        }
      for (guint k = 0; k < self->K; k++)
        {
          p[k] /= s;
          if (!any || p[k] > p[best]) /* ties: the smallest label, as numpy's argmax */
            best = k, any = TRUE;
          if (proba_out != NULL)
            proba_out[i * self->K + k] = (float) p[k];
        }
      labels_out[i] = (gint32) best;
    }
  return TRUE;
}

static void
logreg_destroy (gpointer data)
{
  Logreg *self = data;
  if (self == NULL)
    return;
  model_clear (self);
  g_free (self);
}

static const FgBaselineVTable logreg_vtable = {
  .struct_size = sizeof (FgBaselineVTable),
  .create = logreg_create,
  .fit = logreg_fit,
  .predict = logreg_predict,
  .destroy = logreg_destroy,
};

static const FgComponent logreg_components[] = {
  { FG_KIND_BASELINE, "logreg",
    "multinomial logistic regression, L2 penalty, L-BFGS to tolerance (labeled points only)",
    logreg_params, &logreg_vtable, { 0 } },
  { 0 },
};

static const FgPluginInfo logreg_info = {
  .abi_version = FG_PLUGIN_ABI_VERSION,
  .struct_size = sizeof (FgPluginInfo),
  .name = "logreg",
  .version = PACKAGE_VERSION,
  .license = "MIT",
  .description = "L2-penalised multinomial logistic regression solved with liblbfgs "
                 "(scikit-learn's objective)",
  .components = logreg_components,
};

FG_PLUGIN_DEFINE (logreg_info)
