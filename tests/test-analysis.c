/* SPDX-License-Identifier: MIT */
/* flowgmm tests — calibration, out-of-domain and decision-boundary measures
 * (core/method/analysis.c).
 *
 * - NLL, ECE, Brier and accuracy against hand-computed values and against numbers computed once
 *   with scikit-learn 1.2.1 / numpy on the fixed inputs below (log_loss; ECE and the multi-class
 *   Brier score written out in numpy, with Guo et al.'s right-closed bins);
 * - tempering matches softmax(log p / T) computed the same way;
 * - the temperature fit recovers a known temperature on synthetic data whose true calibration is
 *   known, and is a minimum of the NLL;
 * - AUROC, AUPR and FPR at 95 % TPR against roc_auc_score, average_precision_score and
 *   roc_curve (drop_intermediate=False) on scores with ties, and against hand-computed cases;
 * - the distance to the decision boundary equals the distance from z to the bisecting
 *   hyperplane of the two closest means computed directly;
 * - the experiment keys end to end on 2-D data: FlowGMM and kNN with temperature-scaled
 *   metrics, an out-of-domain group and the zeros input, d(x) and feature inversion (α = 0
 *   gives the input back); the analyses a method cannot provide are null; bad keys are errors
 *   naming the key.
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <flowgmm/flowgmm.h>
#include <flowgmm/analysis.h>

#include "registry-helpers.h"

/* Twelve rows, three classes (the scikit-learn reference inputs). */
static const float P12[12 * 3] = {
  0.7f, 0.2f, 0.1f,  0.1f, 0.8f, 0.1f,   0.3f, 0.3f, 0.4f,    0.05f, 0.05f, 0.9f,
  0.5f, 0.4f, 0.1f,  0.2f, 0.6f, 0.2f,   0.34f, 0.33f, 0.33f, 0.9f, 0.05f, 0.05f,
  0.1f, 0.1f, 0.8f,  0.25f, 0.5f, 0.25f, 0.6f, 0.3f, 0.1f,    0.15f, 0.7f, 0.15f,
};
static const gint32 Y12[12] = { 0, 1, 2, 2, 1, 1, 0, 0, 1, 0, 0, 2 };

static void
test_calibration_hand (void)
{
  /* p = (0.75, 0.25) with y = 0 and (0.55, 0.45) with y = 1:
   * NLL = (−ln 0.75 − ln 0.45)/2; Brier = (2·0.25² + 2·0.55²)/2 = 0.365;
   * ECE: bin (11/15, 12/15] holds 0.75 (correct), (8/15, 9/15] holds 0.55 (wrong):
   * (|1 − 0.75| + |0 − 0.55|)/2 = 0.4. */
  const float p[4] = { 0.75f, 0.25f, 0.55f, 0.45f };
  const gint32 y[2] = { 0, 1 };
  gsize count[15];
  double conf[15], acc[15];
  FgReliability rel = { 15, count, conf, acc };
  FgCalibration c;
  g_autoptr (GError) error = NULL;

  g_assert_true (fg_calibration_compute (p, y, 2, 2, 1.0, &c, &rel, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (c.n, ==, 2);
  g_assert_cmpfloat_with_epsilon (c.accuracy, 0.5, 1e-12);
  g_assert_cmpfloat_with_epsilon (c.nll, (-log (0.75) - log (0.45)) / 2, 1e-7);
  g_assert_cmpfloat_with_epsilon (c.brier, 0.365, 1e-7);
  g_assert_cmpfloat_with_epsilon (c.ece, 0.4, 1e-7);
  g_assert_cmpuint (count[11], ==, 1);
  g_assert_cmpuint (count[8], ==, 1);
  g_assert_cmpfloat_with_epsilon (acc[11], 1.0, 1e-12);
  g_assert_cmpfloat_with_epsilon (acc[8], 0.0, 1e-12);
  g_assert_cmpfloat_with_epsilon (conf[8], 0.55, 1e-7);
  g_assert_true (isnan (conf[0]));
  /* A confidence exactly on an edge goes to the bin it closes (Guo et al.): with 4 bins,
   * 0.75 closes (0.5, 0.75], bin 2. */
  {
    const float q[2] = { 0.75f, 0.25f };
    const gint32 y0[1] = { 0 };
    FgReliability rel4 = { 4, count, conf, acc };
    g_assert_true (fg_calibration_compute (q, y0, 1, 2, 1.0, &c, &rel4, &error));
    g_assert_cmpuint (count[2], ==, 1);
    g_assert_cmpuint (count[3], ==, 0);
    g_assert_cmpfloat_with_epsilon (c.ece, 0.25, 1e-12);
  }
}

static void
test_calibration_sklearn (void)
{
  FgCalibration c;
  g_autoptr (GError) error = NULL;

  g_assert_true (fg_calibration_compute (P12, Y12, 12, 3, 1.0, &c, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpfloat_with_epsilon (c.nll, 0.8591317775548957, 1e-6);   /* log_loss */
  g_assert_cmpfloat_with_epsilon (c.brier, 0.5094499992112322, 1e-6);
  g_assert_cmpfloat_with_epsilon (c.ece, 0.35499999920527137, 1e-6);
  g_assert_cmpfloat_with_epsilon (c.accuracy, 0.6666666666666666, 1e-12);

  /* T = 2.5: numpy softmax(log P / 2.5), then log_loss and the Brier score. */
  g_assert_true (fg_calibration_compute (P12, Y12, 12, 3, 2.5, &c, NULL, &error));
  g_assert_cmpfloat_with_epsilon (c.nll, 0.9222255036330367, 1e-6);
  g_assert_cmpfloat_with_epsilon (c.brier, 0.542754372113948, 1e-6);
  g_assert_cmpfloat_with_epsilon (fg_tempered_nll (P12, Y12, 12, 3, 2.5), 0.9222255036330367,
                                  1e-6);
}

static void
test_calibration_errors (void)
{
  const float bad[2] = { NAN, 1.0f };
  const float ok[2] = { 0.5f, 0.5f };
  const gint32 y[1] = { 0 }, y_big[1] = { 2 }, y_none[1] = { -1 };
  FgCalibration c;
  g_autoptr (GError) error = NULL;

  g_assert_false (fg_calibration_compute (bad, y, 1, 2, 1.0, &c, NULL, &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_NUMERIC);
  g_clear_error (&error);
  g_assert_false (fg_calibration_compute (ok, y_big, 1, 2, 1.0, &c, NULL, &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_DATA);
  g_clear_error (&error);
  g_assert_true (fg_calibration_compute (ok, y_none, 1, 2, 1.0, &c, NULL, &error));
  g_assert_cmpuint (c.n, ==, 0);
  g_assert_true (isnan (c.nll));
  {
    double t;
    g_assert_false (fg_temperature_fit (ok, y_none, 1, 2, &t, &error));
    g_assert_error (error, FG_ERROR, FG_ERROR_DATA);
  }
}

/* K standard normal logits l and a label drawn from softmax(l). */
static gint32
draw_logits_and_label (FgRng *rng, double *l, guint K)
{
  double s = 0, acc = 0, u;
  for (guint k = 0; k < K; k++)
    {
      l[k] = fg_rng_normal (rng);
      s += exp (l[k]);
    }
  u = fg_rng_uniform (rng);
  for (guint k = 0; k < K; k++)
    {
      acc += exp (l[k]) / s;
      if (u < acc)
        return (gint32) k;
    }
  return (gint32) K - 1;
}

/* Labels drawn from softmax(l) and reported probabilities softmax(β l): tempering with T = β
 * gives back the true conditional, so the fitted T should be close to β. */
static void
test_temperature_recovers (void)
{
  const gsize n = 20000;
  const guint K = 4;
  const double beta = 3.0;
  g_autofree float *p = g_new (float, n * K);
  g_autofree gint32 *y = g_new (gint32, n);
  g_autoptr (GError) error = NULL;
  FgRng rng;
  double T, f0, fm, fp;

  fg_rng_init (&rng, 7, 0);
  for (gsize i = 0; i < n; i++)
    {
      double l[4], sb = 0;
      y[i] = draw_logits_and_label (&rng, l, K);
      for (guint k = 0; k < K; k++)
        sb += exp (beta * l[k]);
      for (guint k = 0; k < K; k++)
        p[i * K + k] = (float) (exp (beta * l[k]) / sb);
    }
  g_assert_true (fg_temperature_fit (p, y, n, K, &T, &error));
  g_assert_no_error (error);
  g_test_message ("fitted T = %.4f (true %.1f)", T, beta);
  g_assert_cmpfloat (fabs (T - beta) / beta, <, 0.05);
  /* A minimum: both neighbours are higher. */
  f0 = fg_tempered_nll (p, y, n, K, T);
  fm = fg_tempered_nll (p, y, n, K, T * 0.99);
  fp = fg_tempered_nll (p, y, n, K, T * 1.01);
  g_assert_cmpfloat (f0, <=, fm);
  g_assert_cmpfloat (f0, <=, fp);
  /* Tempering improves the NLL over T = 1. */
  g_assert_cmpfloat (f0, <, fg_tempered_nll (p, y, n, K, 1.0));

  /* Under-confident probabilities (β < 1) give T < 1. */
  for (gsize i = 0; i < n; i++)
    {
      double s = 0;
      for (guint k = 0; k < K; k++)
        s += pow (p[i * K + k], 0.5 / beta); /* now softmax(0.5 l) */
      for (guint k = 0; k < K; k++)
        p[i * K + k] = (float) (pow (p[i * K + k], 0.5 / beta) / s);
    }
  g_assert_true (fg_temperature_fit (p, y, n, K, &T, &error));
  g_test_message ("fitted T = %.4f (true 0.5)", T);
  g_assert_cmpfloat (fabs (T - 0.5) / 0.5, <, 0.05);
}

/* Log-probabilities: labels from softmax(l), reported log p(x, y = k) = β l_k + c_i with
 * β = 400 (FlowGMM's regime: latent distances of hundreds).  As floats most probabilities are 0
 * and no temperature can bring them back; from the log joint (normalised in double) the fit
 * recovers T ≈ β and the tempered metrics are those of the true conditional. */
static void
test_temperature_log (void)
{
  const gsize n = 20000;
  const guint K = 4;
  const double beta = 400.0;
  g_autofree double *lj = g_new (double, n * K), *truth = g_new (double, n * K);
  g_autofree float *p = g_new (float, n * K);
  g_autofree gint32 *y = g_new (gint32, n);
  g_autoptr (GError) error = NULL;
  FgCalibration cal, cal_true, cal_float;
  gsize zeros = 0;
  FgRng rng;
  double T, T_float;

  fg_rng_init (&rng, 8, 0);
  for (gsize i = 0; i < n; i++)
    {
      double l[4], s = 0, c = 50.0 * fg_rng_normal (&rng);
      y[i] = draw_logits_and_label (&rng, l, K);
      for (guint k = 0; k < K; k++)
        s += exp (l[k]);
      for (guint k = 0; k < K; k++)
        {
          lj[i * K + k] = beta * l[k] + c;
          truth[i * K + k] = l[k] - log (s);
        }
    }
  fg_log_joint_to_log_posterior (lj, n, K);
  for (gsize i = 0; i < n * K; i++)
    {
      p[i] = (float) exp (lj[i]);
      zeros += p[i] == 0.0f;
    }
  g_test_message ("%" G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT " float probabilities are 0", zeros,
                  n * K);
  g_assert_cmpuint (zeros, >, n);
  g_assert_true (fg_temperature_fit_log (lj, y, n, K, &T, &error));
  g_assert_no_error (error);
  g_test_message ("fitted T = %.2f (true %.0f)", T, beta);
  g_assert_cmpfloat (fabs (T - beta) / beta, <, 0.05);
  g_assert_true (fg_calibration_compute_log (lj, y, n, K, T, &cal, NULL, &error));
  g_assert_true (fg_calibration_compute_log (truth, y, n, K, 1.0, &cal_true, NULL, &error));
  g_assert_cmpfloat_with_epsilon (cal.nll, cal_true.nll, 0.01);
  g_assert_cmpfloat (cal.nll, <, log ((double) K));
  g_assert_cmpfloat (cal.ece, <, 0.02);
  /* The float probabilities: the rows whose true class is 0 stay at the floor. */
  g_assert_true (fg_temperature_fit (p, y, n, K, &T_float, &error));
  g_assert_true (fg_calibration_compute (p, y, n, K, T_float, &cal_float, NULL, &error));
  g_test_message ("from floats: T = %.2f, NLL %.3f (from the log joint %.3f)", T_float,
                  cal_float.nll, cal.nll);
  g_assert_cmpfloat (cal_float.nll, >, 2.0 * cal.nll);
  /* The two entry points agree where nothing underflows (T = 1 and tempered). */
  {
    const float q[6] = { 0.7f, 0.2f, 0.1f, 0.05f, 0.05f, 0.9f };
    const gint32 yq[2] = { 0, 1 };
    double lq[6];
    FgCalibration a, b;
    g_assert_true (fg_proba_to_log (q, 2, 3, lq, &error));
    for (guint k = 0; k < 2; k++)
      {
        const double t = k ? 2.5 : 1.0;
        g_assert_true (fg_calibration_compute (q, yq, 2, 3, t, &a, NULL, &error));
        g_assert_true (fg_calibration_compute_log (lq, yq, 2, 3, t, &b, NULL, &error));
        g_assert_cmpfloat_with_epsilon (a.nll, b.nll, 1e-12);
        g_assert_cmpfloat_with_epsilon (a.ece, b.ece, 1e-12);
        g_assert_cmpfloat_with_epsilon (a.brier, b.brier, 1e-12);
      }
    lq[1] = NAN;
    g_assert_false (fg_calibration_compute_log (lq, yq, 2, 3, 1.0, &b, NULL, &error));
    g_assert_error (error, FG_ERROR, FG_ERROR_NUMERIC);
  }
}

/* Every row right: the NLL falls towards 0 as T → 0; the fit goes there (to where the NLL is 0
 * in double, or to the bound). */
static void
test_temperature_bound (void)
{
  const float p[4] = { 0.9f, 0.1f, 0.2f, 0.8f };
  const gint32 y[2] = { 0, 1 };
  double T;
  g_autoptr (GError) error = NULL;
  g_assert_true (fg_temperature_fit (p, y, 2, 2, &T, &error));
  g_assert_cmpfloat (T, <, 0.01);
  g_assert_cmpfloat (fg_tempered_nll (p, y, 2, 2, T), <, 1e-9);
}

static void
test_ood_sklearn (void)
{
  const double s_in[10] = { 3.0, 2.5, 2.5, 1.0, 0.5, 4.0, -1.0, 2.0, 1.5, 0.0 };
  const double s_out[7] = { 0.5, -2.0, 1.0, -0.5, 2.5, -3.0, 0.2 };
  FgOodMetrics m;
  g_autoptr (GError) error = NULL;
  g_assert_true (fg_ood_metrics (s_in, 10, s_out, 7, &m, &error));
  g_assert_no_error (error);
  g_assert_cmpfloat_with_epsilon (m.auroc, 0.7714285714285715, 1e-12);  /* roc_auc_score */
  g_assert_cmpfloat_with_epsilon (m.aupr, 0.8154501054501054, 1e-12);   /* average_precision */
  g_assert_cmpfloat_with_epsilon (m.fpr95, 0.7142857142857143, 1e-12);  /* roc_curve */
}

static void
test_ood_hand (void)
{
  /* Perfectly separated: AUROC = AUPR = 1, FPR95 = 0. */
  const double a[3] = { 5, 6, 7 }, b[2] = { 1, 2 };
  /* All tied: AUROC = 0.5, AP = the positive share, FPR95 = 1. */
  const double t_in[2] = { 1, 1 }, t_out[2] = { 1, 1 };
  /* One inversion of 2 × 2 pairs: in = {3, 1}, out = {2, 0}: AUROC = 3/4;
   * thresholds 3 (R = 1/2, P = 1), 2 (R = 1/2, P = 1/2), 1 (R = 1, P = 2/3): AP = 1/2 + 1/2·2/3
   * = 5/6; TPR ≥ 0.95 first at threshold 1, where FPR = 1/2. */
  const double i_in[2] = { 3, 1 }, i_out[2] = { 2, 0 };
  const double nan_in[1] = { NAN };
  FgOodMetrics m;
  g_autoptr (GError) error = NULL;

  g_assert_true (fg_ood_metrics (a, 3, b, 2, &m, &error));
  g_assert_cmpfloat_with_epsilon (m.auroc, 1.0, 1e-12);
  g_assert_cmpfloat_with_epsilon (m.aupr, 1.0, 1e-12);
  g_assert_cmpfloat_with_epsilon (m.fpr95, 0.0, 1e-12);
  g_assert_true (fg_ood_metrics (t_in, 2, t_out, 2, &m, &error));
  g_assert_cmpfloat_with_epsilon (m.auroc, 0.5, 1e-12);
  g_assert_cmpfloat_with_epsilon (m.aupr, 0.5, 1e-12);
  g_assert_cmpfloat_with_epsilon (m.fpr95, 1.0, 1e-12);
  g_assert_true (fg_ood_metrics (i_in, 2, i_out, 2, &m, &error));
  g_assert_cmpfloat_with_epsilon (m.auroc, 0.75, 1e-12);
  g_assert_cmpfloat_with_epsilon (m.aupr, 5.0 / 6.0, 1e-12);
  g_assert_cmpfloat_with_epsilon (m.fpr95, 0.5, 1e-12);
  g_assert_false (fg_ood_metrics (nan_in, 1, b, 2, &m, &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_NUMERIC);
  g_clear_error (&error);
  g_assert_false (fg_ood_metrics (a, 3, b, 0, &m, &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_DATA);
}

/* d(x) against the hyperplane {x : w·x = b}, w = μ' − μ'', b = (‖μ'‖² − ‖μ''‖²)/2, of the two
 * closest means found by brute force. */
static void
test_decision_distance (void)
{
  const gsize n = 200, D = 5;
  const guint K = 4;
  g_autofree float *z = g_new (float, n * D);
  g_autofree float *mu = g_new (float, K * D);
  g_autofree double *d = g_new (double, n);
  g_autofree gint32 *nearest = g_new (gint32, n);
  FgRng rng;

  fg_rng_init (&rng, 3, 0);
  fg_rng_fill_normal (&rng, z, n * D, 0.0f, 2.0f);
  fg_rng_fill_normal (&rng, mu, K * D, 0.0f, 1.5f);
  fg_decision_distance (z, n, D, mu, K, d, nearest);
  for (gsize i = 0; i < n; i++)
    {
      double dist[4];
      guint k1 = 0, k2;
      double w[5], b = 0, wz = 0, ww = 0;
      for (guint k = 0; k < K; k++)
        {
          dist[k] = 0;
          for (gsize j = 0; j < D; j++)
            dist[k] += ((double) z[i * D + j] - mu[k * D + j]) * ((double) z[i * D + j] - mu[k * D + j]);
          if (dist[k] < dist[k1])
            k1 = k;
        }
      k2 = k1 == 0 ? 1 : 0;
      for (guint k = 0; k < K; k++)
        if (k != k1 && dist[k] < dist[k2])
          k2 = k;
      for (gsize j = 0; j < D; j++)
        {
          w[j] = (double) mu[k1 * D + j] - mu[k2 * D + j];
          b += 0.5 * ((double) mu[k1 * D + j] * mu[k1 * D + j] - (double) mu[k2 * D + j] * mu[k2 * D + j]);
          wz += w[j] * z[i * D + j];
          ww += w[j] * w[j];
        }
      g_assert_cmpint (nearest[i], ==, (gint32) k1);
      g_assert_cmpfloat (d[i], >=, 0.0);
      g_assert_cmpfloat_with_epsilon (d[i], fabs (wz - b) / sqrt (ww), 1e-9 * (1 + d[i]));
    }
}

static void
test_histogram (void)
{
  const double v[7] = { -5, 0, 0.49, 0.5, 0.99, 1, NAN };
  gsize c[2];
  fg_histogram (v, 7, 0.0, 1.0, 2, c);
  g_assert_cmpuint (c[0], ==, 3); /* −5 clamped, 0, 0.49 */
  g_assert_cmpuint (c[1], ==, 3); /* 0.5, 0.99, 1 */
}

#define TOY_EXPERIMENT \
  "[experiment]\n" \
  "seeds = 0\n" \
  "metrics = accuracy;nll;ece;brier;nll_temp;ece_temp;brier_temp\n" \
  "table = rows:method columns:dataset metric:test_nll+test_nll_temp\n" \
  "datasets = moons\n" \
  "ood = circles\n" \
  "ood_zeros = true\n" \
  "analysis = reliability;boundary;features\n" \
  "feature_layer = 2\n" \
  "feature_alphas = -1;0;1\n" \
  "feature_examples = 3\n" \
  "[dataset:moons]\nplugin = moons\nn_train = 500\nn_test = 300\nvalidation = 100\n" \
  "unlabeled = 300\n" \
  "[dataset:circles]\nplugin = circles\nn_test = 200\nstandardize = true\n" \
  "[method:flowgmm]\nplugin = flowgmm\nflow.layers = 3\nflow.hidden = 16\n" \
  "flow.dropout = 0\nmeans = circle\nmeans_r = 4\noptimizer = adam\nlr = 1e-3\n" \
  "iterations = 40\nunlabeled_batch = 100\nunlabeled_order = sample\n" \
  "[method:knn]\nplugin = knn\nk = 3\n"

static JsonObject *
record_of (GPtrArray *records, const char *method)
{
  for (guint i = 0; i < records->len; i++)
    {
      JsonObject *o = g_ptr_array_index (records, i);
      if (g_strcmp0 (json_object_get_string_member (o, "method"), method) == 0)
        return o;
    }
  g_assert_not_reached ();
}

static void
test_experiment_keys (void)
{
  FgRegistry *reg = th_registry ();
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("fg-analysis-XXXXXX", &error);
  g_autofree char *results = NULL, *md = NULL, *path = NULL;
  g_autoptr (FgExperiment) exp = NULL;
  g_auto (GStrv) lines = NULL;
  g_autoptr (GPtrArray) records = g_ptr_array_new_with_free_func ((GDestroyNotify) json_object_unref);
  g_autoptr (GPtrArray) parsers = g_ptr_array_new_with_free_func (g_object_unref);
  FgRunOptions opts = { 0 };
  FgRunSummary sum;
  JsonObject *fg, *knn, *ood, *zeros, *circles, *bnd, *feat;

  g_assert_no_error (error);
  exp = fg_experiment_load_data (TOY_EXPERIMENT, -1, "toy.exp", dir, reg, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (fg_experiment_get_n_cells (exp), ==, 2); /* circles is scored, not run */
  opts.out_dir = dir;
  opts.quiet = TRUE;
  g_assert_true (fg_experiment_run (exp, &opts, &sum, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (sum.n_ok, ==, 2);

  path = g_build_filename (dir, "results.jsonl", NULL);
  g_assert_true (g_file_get_contents (path, &results, NULL, NULL));
  lines = g_strsplit (results, "\n", -1);
  for (guint i = 0; lines[i]; i++)
    if (*lines[i])
      {
        JsonParser *p = json_parser_new ();
        g_assert_true (json_parser_load_from_data (p, lines[i], -1, NULL));
        g_ptr_array_add (parsers, p);
        g_ptr_array_add (records, json_object_ref (json_node_get_object (json_parser_get_root (p))));
      }
  fg = record_of (records, "flowgmm");
  knn = record_of (records, "knn");
  for (int m = 0; m < 2; m++)
    {
      JsonObject *r = m ? knn : fg;
      g_assert_cmpstr (json_object_get_string_member (r, "status"), ==, "ok");
      g_assert_cmpfloat (json_object_get_double_member (r, "temperature"), >, 0.0);
      /* Tempering minimises the validation NLL, so it never makes it worse. */
      g_assert_cmpfloat (json_object_get_double_member (r, "val_nll_temp"), <=,
                         json_object_get_double_member (r, "val_nll") + 1e-9);
      g_assert_true (json_object_has_member (r, "test_brier"));
      g_assert_true (json_object_has_member (r, "analysis_file"));
    }
  /* kNN has no density, latent space or flow. */
  g_assert_true (json_object_get_null_member (knn, "ood"));
  g_assert_true (json_object_get_null_member (knn, "boundary"));
  g_assert_true (json_object_get_null_member (knn, "features"));

  ood = json_object_get_object_member (fg, "ood");
  circles = json_object_get_object_member (json_object_get_object_member (ood, "sets"), "circles");
  zeros = json_object_get_object_member (json_object_get_object_member (ood, "sets"), "zeros");
  g_assert_cmpint (json_object_get_int_member (circles, "n"), ==, 200);
  g_assert_cmpfloat (json_object_get_double_member (circles, "auroc"), >=, 0.0);
  g_assert_cmpfloat (json_object_get_double_member (circles, "auroc"), <=, 1.0);
  g_assert_cmpint (json_object_get_int_member (zeros, "n"), ==, 1);
  g_assert_cmpint (json_object_get_int_member (zeros, "class"), <, 2);
  g_assert_cmpint (json_object_get_int_member (json_object_get_object_member (ood, "in"), "n"),
                   ==, 300);
  bnd = json_object_get_object_member (fg, "boundary");
  g_assert_cmpstr (json_object_get_string_member (bnd, "part"), ==, "unlabeled");
  g_assert_cmpint (json_object_get_int_member (bnd, "n"), ==, 300);
  g_assert_cmpint (json_object_get_int_member (bnd, "below"), <=, 300);
  feat = json_object_get_object_member (fg, "features");
  g_assert_cmpint (json_object_get_int_member (feat, "layer"), ==, 2);
  g_assert_cmpfloat (json_object_get_double_member (feat, "sigma"), >, 0.0);
  g_assert_cmpfloat (json_object_get_double_member (feat, "alpha0_max_abs_error"), <, 1e-4);

  g_clear_pointer (&path, g_free);
  path = g_build_filename (dir, "analysis.md", NULL);
  g_assert_true (g_file_get_contents (path, &md, NULL, NULL));
  g_assert_nonnull (strstr (md, "| moons | flowgmm | 0 | – | circles | 200 |"));
  g_assert_nonnull (strstr (md, "## Distance to the decision boundary"));
  g_clear_pointer (&path, g_free);
  path = g_build_filename (dir, "figures", "analysis-ood-moons__flowgmm__s0__p0.svg", NULL);
  g_assert_true (g_file_test (path, G_FILE_TEST_EXISTS));

  /* The experiment files that use these keys parse and validate. */
  {
    const char *files[] = { "table4-mnist.exp", "table4-mnist-pca50.exp",
                            "ood-mnist-fashion.exp", "ood-mnist-fashion-pca50.exp",
                            "boundary-mnist.exp" };
    for (guint i = 0; i < G_N_ELEMENTS (files); i++)
      {
        g_autofree char *f = g_build_filename (g_getenv ("FG_TOP_SRCDIR"), "experiments",
                                               "paper", files[i], NULL);
        g_autoptr (FgExperiment) e = fg_experiment_load (f, reg, &error);
        g_assert_no_error (error);
        g_assert_nonnull (e);
      }
  }

  /* A second run finds everything stored. */
  g_assert_true (fg_experiment_run (exp, &opts, &sum, &error));
  g_assert_cmpuint (sum.n_skipped, ==, 2);
  {
    g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", dir);
    g_assert_cmpint (system (cmd), ==, 0);
  }
}

static void
test_experiment_key_errors (void)
{
  static const struct {
    const char *text, *expect;
  } cases[] = {
    { "[experiment]\nanalysis = calibration\n", "key 'analysis': unknown analysis 'calibration'" },
    { "[experiment]\nood = nowhere\n", "key 'ood': no group [dataset:nowhere]" },
    { "[experiment]\nfeature_alphas = 1;x\n", "key 'feature_alphas': 'x' is not a number" },
    { "[experiment]\nanalysis_bins = 1\n", "key 'analysis_bins': '1': expected an integer" },
    { "[experiment]\nood_zeros = maybe\n", "key 'ood_zeros': 'maybe': expected true or false" },
    { "[experiment]\ntable = metric:test_nll+brier_x\n", "unknown metric 'brier_x'" },
    { "[experiment]\ntable = metric:test_nll+test_brier\n",
      "the table shows test_brier, which 'metrics' does not compute" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *text = g_strconcat (cases[i].text,
                                           "[dataset:moons]\nplugin = moons\n"
                                           "[method:knn]\nplugin = knn\n", NULL);
      g_autoptr (GError) error = NULL;
      g_autoptr (FgExperiment) exp = fg_experiment_load_data (text, -1, "bad.exp", NULL,
                                                              th_registry (), &error);
      g_assert_null (exp);
      g_assert_error (error, FG_EXPERIMENT_ERROR, FG_EXPERIMENT_ERROR_BAD_VALUE);
      if (strstr (error->message, cases[i].expect) == NULL)
        g_error ("case %u: '%s' lacks '%s'", i, error->message, cases[i].expect);
      g_assert_nonnull (strstr (error->message, "bad.exp:"));
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/analysis/calibration/hand", test_calibration_hand);
  g_test_add_func ("/analysis/calibration/sklearn", test_calibration_sklearn);
  g_test_add_func ("/analysis/calibration/errors", test_calibration_errors);
  g_test_add_func ("/analysis/temperature/recovers", test_temperature_recovers);
  g_test_add_func ("/analysis/temperature/bound", test_temperature_bound);
  g_test_add_func ("/analysis/temperature/log", test_temperature_log);
  g_test_add_func ("/analysis/ood/sklearn", test_ood_sklearn);
  g_test_add_func ("/analysis/ood/hand", test_ood_hand);
  g_test_add_func ("/analysis/decision-distance", test_decision_distance);
  g_test_add_func ("/analysis/histogram", test_histogram);
  g_test_add_func ("/analysis/experiment/keys", test_experiment_keys);
  g_test_add_func ("/analysis/experiment/key-errors", test_experiment_key_errors);
  return g_test_run ();
}
