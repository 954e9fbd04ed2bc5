/* SPDX-License-Identifier: MIT */
/* flowgmm tests — the logreg baseline: closed-form optima, the gradient against finite
 * differences, first-order optimality in long double, parameter validation.
 *
 * The plugin's source is included so that its objective can be checked directly; the
 * behavioural tests load the built plugin through the registry, as a user would. */
#include "../plugins/baselines/logreg.c"

#include "baseline-helpers.h"

/* Root of u = a·σ(−u) for a > 0 by bisection (the right side decreases, the left increases). */
static double
solve_sigmoid_fixed_point (double a)
{
  double lo = 0.0, hi = a;
  for (int it = 0; it < 200; it++)
    {
      double mid = 0.5 * (lo + hi);
      if (mid - a / (1.0 + exp (mid)) < 0)
        lo = mid;
      else
        hi = mid;
    }
  return 0.5 * (lo + hi);
}

/* n points at x = +1 (class 1) and n at x = −1 (class 0).  By symmetry the intercepts stay 0.
 * multinomial: W₁ = −W₀ = v, f = 2n log(1 + e^{−2v}) + v²/C, so u = 2v solves u = 4nC σ(−u);
 * binomial: f = 2n log(1 + e^{−w}) + w²/(2C), so w solves w = 2nC σ(−w).  In both cases
 * p(class 1 | x = 1) = σ(u). */
static void
test_symmetric_closed_form (void)
{
  const gsize n = 5;
  const double C = 0.3;
  float xs[10];
  gint32 ys[10];
  for (gsize i = 0; i < 2 * n; i++)
    {
      xs[i] = i < n ? 1.0f : -1.0f;
      ys[i] = i < n ? 1 : 0;
    }
  for (int mode = 0; mode < 2; mode++)
    {
      BtModel m;
      FgSplit split;
      g_autoptr (GError) error = NULL;
      FgTensor tx = fg_tensor_wrap_2d (xs, 2 * n, 1);
      float one = 1.0f, proba[2];
      gint32 label;
      FgTensor tq = fg_tensor_wrap_2d (&one, 1, 1);
      double u = solve_sigmoid_fixed_point ((mode == 0 ? 4.0 : 2.0) * (double) n * C);
      g_assert_true (bt_model_init (&m, "logreg",
                                    (const char *[]){ "c=0.3", "tol=1e-12", "ftol=0",
                                                      mode == 0 ? "multi_class=multinomial"
                                                                : "multi_class=auto",
                                                      NULL },
                                    0, &error));
      bt_split_init (&split, 2, &tx, ys, NULL, NULL, NULL);
      bt_fit (&m, &split);
      g_assert_true (m.vt->predict (m.self, &tq, &label, proba, &error));
      g_assert_cmpint (label, ==, 1);
      g_test_message ("mode %d: p = %.9f, closed form %.9f", mode, proba[1],
                      1.0 / (1.0 + exp (-u)));
      g_assert_cmpfloat_with_epsilon (proba[1], 1.0 / (1.0 + exp (-u)), 2e-6);
      bt_model_clear (&m);
    }
}

/* No information in the features: W = 0 and the intercepts reproduce the class frequencies. */
static void
test_intercept_only (void)
{
  float xs[10] = { 0 };
  gint32 ys[10] = { 0, 0, 1, 1, 1, 2, 2, 2, 2, 2 };
  BtModel m;
  FgSplit split;
  g_autoptr (GError) error = NULL;
  FgTensor tx = fg_tensor_wrap_2d (xs, 10, 1);
  float proba[3];
  gint32 label;
  FgTensor tq = fg_tensor_wrap_2d (xs, 1, 1);
  g_assert_true (bt_model_init (&m, "logreg", (const char *[]){ "tol=1e-10", "ftol=0", NULL }, 0,
                                &error));
  bt_split_init (&split, 3, &tx, ys, NULL, NULL, NULL);
  bt_fit (&m, &split);
  g_assert_true (m.vt->predict (m.self, &tq, &label, proba, &error));
  g_assert_cmpint (label, ==, 2);
  g_assert_cmpfloat_with_epsilon (proba[0], 0.2, 1e-6);
  g_assert_cmpfloat_with_epsilon (proba[1], 0.3, 1e-6);
  g_assert_cmpfloat_with_epsilon (proba[2], 0.5, 1e-6);
  bt_model_clear (&m);
}

/* A Logreg set up on a blob problem, with its data (the internal API of the included file). */
typedef struct {
  Logreg *lr;
  FgTensor *x;
  gint32 *y;
  double *X, *Z;
} Problem;

static void
problem_init (Problem *p, gsize n, gsize d, guint K, gboolean intercept, gboolean binomial,
              double C)
{
  g_autoptr (FgParams) params = fg_params_new (logreg_params);
  g_autoptr (GError) error = NULL;
  bt_blobs (3, n, d, K, 1.5, &p->x, &p->y);
  g_assert_true (fg_params_set (params, "fit_intercept", intercept ? "true" : "false", NULL));
  g_assert_true (fg_params_set (params, "multi_class", binomial ? "auto" : "multinomial", NULL));
  {
    g_autofree char *c = g_strdup_printf ("%g", C);
    g_assert_true (fg_params_set (params, "c", c, NULL));
  }
  p->lr = logreg_create (params, NULL, NULL);
  p->lr->dim = d;
  g_assert_true (setup_classes (p->lr, p->y, n, K, &error));
  p->X = g_new (double, n * d);
  for (gsize i = 0; i < n * d; i++)
    p->X[i] = p->x->data[i];
  p->Z = g_new (double, n * p->lr->m);
  p->lr->X = p->X;
  p->lr->Z = p->Z;
  p->lr->y = p->y;
  p->lr->n = n;
}

static void
problem_clear (Problem *p)
{
  p->lr->X = p->lr->Z = NULL;
  logreg_destroy (p->lr);
  fg_tensor_free (p->x);
  g_free (p->y);
  g_free (p->X);
  g_free (p->Z);
}

static void
test_gradient_finite_differences (void)
{
  for (int variant = 0; variant < 4; variant++)
    {
      gboolean intercept = variant & 1, binomial = variant >> 1;
      guint K = binomial ? 2 : 4;
      Problem p;
      gsize nv;
      FgRng rng;
      double max_err = 0;
      problem_init (&p, 40, 6, K, intercept, binomial, 0.7);
      nv = n_vars (p.lr);
      g_autofree double *x = g_new (double, nv), *g = g_new (double, nv);
      fg_rng_init (&rng, 5, (guint64) variant);
      for (gsize j = 0; j < nv; j++)
        x[j] = 0.5 * fg_rng_normal (&rng);
      logreg_objective (p.lr, x, g);
      for (gsize j = 0; j < nv; j++)
        {
          double h = 1e-5, save = x[j], fp, fm, num;
          x[j] = save + h;
          fp = logreg_objective (p.lr, x, NULL);
          x[j] = save - h;
          fm = logreg_objective (p.lr, x, NULL);
          x[j] = save;
          num = (fp - fm) / (2 * h);
          max_err = MAX (max_err, fabs (num - g[j]) / (1e-6 + fabs (num)));
        }
      g_test_message ("variant %d: %" G_GSIZE_FORMAT " variables, max relative error %.3g",
                      variant, nv, max_err);
      g_assert_cmpfloat (max_err, <, 1e-6);
      problem_clear (&p);
    }
}

/* The fitted model satisfies ∇f = 0 to the requested tolerance, with f and ∇f recomputed
 * naively in long double (independent of the plugin's dgemm code). */
static void
test_optimality_long_double (void)
{
  const gsize n = 120, d = 5;
  const guint K = 3;
  const long double C = 0.5L;
  g_autoptr (FgTensor) x = NULL;
  g_autofree gint32 *y = NULL;
  g_autoptr (FgParams) params = fg_params_new (logreg_params);
  FgSplit split;
  g_autoptr (GError) error = NULL;
  Logreg *lr;
  long double gW[3][5] = { { 0 } }, gb[3] = { 0 }, gmax = 0;

  bt_blobs (4, n, d, K, 2.0, &x, &y);
  g_assert_true (fg_params_set (params, "c", "0.5", NULL));
  g_assert_true (fg_params_set (params, "tol", "1e-9", NULL));
  g_assert_true (fg_params_set (params, "ftol", "0", NULL));
  lr = logreg_create (params, NULL, NULL);
  bt_split_init (&split, K, x, y, NULL, NULL, NULL);
  g_assert_true (logreg_fit (lr, &split, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (lr->m, ==, K);
  for (gsize i = 0; i < n; i++)
    {
      long double z[3], mx = -INFINITY, s = 0;
      for (guint k = 0; k < K; k++)
        {
          z[k] = lr->b[k];
          for (gsize j = 0; j < d; j++)
            z[k] += (long double) lr->W[k * d + j] * fg_tensor_row (x, i)[j];
          mx = MAX (mx, z[k]);
        }
      for (guint k = 0; k < K; k++)
        s += expl (z[k] - mx);
      for (guint k = 0; k < K; k++)
        {
          long double r = expl (z[k] - mx) / s - (y[i] == (gint32) k);
          gb[k] += r;
          for (gsize j = 0; j < d; j++)
            gW[k][j] += r * fg_tensor_row (x, i)[j];
        }
    }
  for (guint k = 0; k < K; k++)
    {
      gmax = MAX (gmax, fabsl (gb[k]));
      for (gsize j = 0; j < d; j++)
        gmax = MAX (gmax, fabsl (gW[k][j] + lr->W[k * d + j] / C));
    }
  g_test_message ("max |∇f| at the solution: %.3Lg (%d iterations)", gmax, lr->iters);
  /* the solution is stored in float: allow its rounding */
  g_assert_cmpfloat ((double) gmax, <, 1e-4);
  logreg_destroy (lr);
}

static void
test_blobs_accuracy (void)
{
  g_autoptr (FgTensor) x = NULL, xt = NULL;
  g_autofree gint32 *y = NULL, *yt = NULL;
  BtModel m;
  FgSplit split;
  g_autoptr (GError) error = NULL;
  bt_blobs (6, 60, 10, 3, 5.0, &x, &y);
  bt_blobs (6, 3000, 10, 3, 5.0, &xt, &yt);
  g_assert_true (bt_model_init (&m, "logreg", NULL, 0, &error));
  bt_split_init (&split, 3, x, y, NULL, NULL, NULL);
  bt_fit (&m, &split);
  g_assert_cmpfloat (bt_accuracy (&m, xt, yt, 3), >, 0.9);
  bt_model_clear (&m);
}

/* Features of scale 1e30: every step overflows, the weights stay 0 and the probabilities would
 * be uniform.  That is an error, not an "ok" fit. */
static void
test_extreme_scale_is_an_error (void)
{
  g_autoptr (FgTensor) x = NULL;
  g_autofree gint32 *y = NULL;
  BtModel m;
  FgSplit split;
  g_autoptr (GError) error = NULL;
  bt_blobs (6, 60, 10, 3, 5.0, &x, &y);
  for (gsize i = 0; i < fg_tensor_rows (x); i++)
    for (gsize j = 0; j < fg_tensor_cols (x); j++)
      fg_tensor_row (x, i)[j] *= 1e30f;
  g_assert_true (bt_model_init (&m, "logreg", NULL, 0, &error));
  bt_split_init (&split, 3, x, y, NULL, NULL, NULL);
  g_assert_false (m.vt->fit (m.self, &split, &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_NUMERIC);
  g_test_message ("%s", error->message);
  bt_model_clear (&m);
}

static void
test_absent_class_never_predicted (void)
{
  float xs[6] = { -2, -1, -1.5f, 1, 2, 1.5f };
  gint32 ys[6] = { 0, 0, 0, 2, 2, 2 };
  BtModel m;
  FgSplit split;
  g_autoptr (GError) error = NULL;
  FgTensor tx = fg_tensor_wrap_2d (xs, 6, 1);
  float proba[6 * 3];
  gint32 labels[6];
  g_assert_true (bt_model_init (&m, "logreg", NULL, 0, &error));
  bt_split_init (&split, 3, &tx, ys, NULL, NULL, NULL);
  bt_fit (&m, &split);
  g_assert_true (m.vt->predict (m.self, &tx, labels, proba, &error));
  for (int i = 0; i < 6; i++)
    {
      g_assert_cmpint (labels[i], ==, ys[i]);
      g_assert_cmpfloat (proba[i * 3 + 1], ==, 0.0f);
    }
  bt_model_clear (&m);
}

static void
test_param_validation (void)
{
  const char *bad[] = { "c=0", "c=-1", "tol=-1", "max_iter=0", "multi_class=ovr",
                        "fit_intercept=maybe", "ftol=-1", NULL };
  for (guint i = 0; bad[i] != NULL; i++)
    {
      BtModel m;
      g_autoptr (GError) error = NULL;
      g_assert_false (bt_model_init (&m, "logreg", (const char *[]){ bad[i], NULL }, 0, &error));
      g_assert_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM);
    }
  {
    float xs[3] = { 1, 2, 3 };
    gint32 ys[3] = { 1, 1, 1 };
    BtModel m;
    FgSplit split;
    g_autoptr (GError) error = NULL;
    FgTensor tx = fg_tensor_wrap_2d (xs, 3, 1);
    g_assert_true (bt_model_init (&m, "logreg", NULL, 0, &error));
    bt_split_init (&split, 2, &tx, ys, NULL, NULL, NULL);
    g_assert_false (m.vt->fit (m.self, &split, &error));
    g_assert_error (error, FG_ERROR, FG_ERROR_DATA);
    g_assert_nonnull (strstr (error->message, "1 class"));
    bt_model_clear (&m);
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/logreg/symmetric-closed-form", test_symmetric_closed_form);
  g_test_add_func ("/logreg/intercept-only", test_intercept_only);
  g_test_add_func ("/logreg/gradient-finite-differences", test_gradient_finite_differences);
  g_test_add_func ("/logreg/optimality-long-double", test_optimality_long_double);
  g_test_add_func ("/logreg/blobs-accuracy", test_blobs_accuracy);
  g_test_add_func ("/logreg/absent-class-never-predicted", test_absent_class_never_predicted);
  g_test_add_func ("/logreg/extreme-scale-is-an-error", test_extreme_scale_is_an_error);
  g_test_add_func ("/logreg/param-validation", test_param_validation);
  return g_test_run ();
}
