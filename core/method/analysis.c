/* SPDX-License-Identifier: MIT */
/* flowgmm — calibration, out-of-domain and decision-boundary measures on plain arrays
 * (<flowgmm/analysis.h>).  Everything accumulates in double. */
#include "config.h"

#include <math.h>
#include <string.h>

#include <flowgmm/analysis.h>

/* One row of log-probabilities tempered at T, normalised: out_k = log softmax(log p / T).  A
 * class with log p_k = −inf gets −inf. */
static void
tempered_log_row (const double *lp, guint K, double T, double *out)
{
  double m = -INFINITY, s = 0.0, lse;
  for (guint k = 0; k < K; k++)
    {
      out[k] = lp[k] / T;
      if (out[k] > m)
        m = out[k];
    }
  if (!isfinite (m))
    {
      /* All zero: uniform. */
      for (guint k = 0; k < K; k++)
        out[k] = -log ((double) K);
      return;
    }
  for (guint k = 0; k < K; k++)
    s += exp (out[k] - m);
  lse = m + log (s);
  for (guint k = 0; k < K; k++)
    out[k] -= lse;
}

/**
 * fg_proba_to_log:
 * @proba: n × K probabilities
 * @n: rows
 * @K: classes
 * @logp: (out): n × K log-probabilities (−inf where p = 0)
 * @error: return location for a #GError
 *
 * Returns: %FALSE (FG_ERROR_NUMERIC, naming the row) on a non-finite or negative probability.
 */
gboolean
fg_proba_to_log (const float *proba, gsize n, guint K, double *logp, GError **error)
{
  for (gsize i = 0; i < n; i++)
    for (guint k = 0; k < K; k++)
      {
        const float p = proba[i * K + k];
        if (!isfinite (p) || p < 0.0f)
          {
            g_set_error (error, FG_ERROR, FG_ERROR_NUMERIC,
                         "probability %g of class %u in row %" G_GSIZE_FORMAT
                         " (expected a finite value >= 0)", (double) p, k, i);
            return FALSE;
          }
        logp[i * K + k] = p > 0.0f ? log ((double) p) : -INFINITY;
      }
  return TRUE;
}

/**
 * fg_log_joint_to_log_posterior:
 * @log_joint: (inout): n × K values log p(x, y = k), replaced by log p(y = k | x)
 * @n: rows
 * @K: classes
 *
 * Normalises each row (subtracts its logsumexp, in double: no class underflows to 0 as the
 * probabilities would).  A row without a finite value becomes uniform.
 */
void
fg_log_joint_to_log_posterior (double *log_joint, gsize n, guint K)
{
  for (gsize i = 0; i < n; i++)
    {
      double *row = log_joint + i * K;
      tempered_log_row (row, K, 1.0, row);
    }
}

/* Guo et al.'s bins ((b−1)/M, b/M]: conf in (0, 1/M] is bin 0, 1 is bin M−1. */
static guint
confidence_bin (double conf, guint n_bins)
{
  double c = ceil (CLAMP (conf, 0.0, 1.0) * n_bins) - 1.0;
  return (guint) CLAMP (c, 0.0, (double) n_bins - 1.0);
}

/**
 * fg_calibration_compute:
 * @proba: n × K class probabilities, row-major
 * @y: n labels (< 0: not scored)
 * @n: rows
 * @K: classes
 * @temperature: T > 0; probabilities are used as softmax(log p / T) (T = 1: as given)
 * @out: (out): accuracy, NLL, ECE and Brier score
 * @rel: (nullable) (inout): reliability bins; its n_bins sets the ECE's bin count
 * @error: return location for a #GError
 *
 * Returns: %FALSE on a non-finite or negative probability or a label ≥ K.
 */
gboolean
fg_calibration_compute (const float *proba, const gint32 *y, gsize n, guint K, double temperature,
                        FgCalibration *out, FgReliability *rel, GError **error)
{
  g_autofree double *logp = g_new (double, n * K);
  g_return_val_if_fail (K > 0, FALSE);
  if (!fg_proba_to_log (proba, n, K, logp, error))
    return FALSE;
  return fg_calibration_compute_log (logp, y, n, K, temperature, out, rel, error);
}

/**
 * fg_calibration_compute_log:
 * @logp: n × K class log-probabilities (−inf allowed), row-major
 *
 * fg_calibration_compute () on log-probabilities: q = softmax(log p / T), and at T = 1
 * q = exp (log p) as given.
 *
 * Returns: %FALSE on a NaN or +inf log-probability or a label ≥ K.
 */
gboolean
fg_calibration_compute_log (const double *logp, const gint32 *y, gsize n, guint K,
                            double temperature, FgCalibration *out, FgReliability *rel,
                            GError **error)
{
  guint n_bins = rel != NULL ? rel->n_bins : FG_ECE_BINS;
  g_autofree double *conf_sum = g_new0 (double, n_bins);
  g_autofree double *correct_sum = g_new0 (double, n_bins);
  g_autofree gsize *count = g_new0 (gsize, n_bins);
  g_autofree double *q = g_new (double, K), *lq = g_new (double, K);
  double nll = 0, brier = 0, ece = 0;
  gsize scored = 0, correct = 0;

  g_return_val_if_fail (K > 0 && n_bins > 0 && temperature > 0, FALSE);
  memset (out, 0, sizeof *out);
  for (gsize i = 0; i < n; i++)
    {
      const double *p = logp + i * K;
      guint arg = 0;
      double conf;
      for (guint k = 0; k < K; k++)
        if (isnan (p[k]) || p[k] == INFINITY)
          {
            g_set_error (error, FG_ERROR, FG_ERROR_NUMERIC,
                         "log-probability %g of class %u in row %" G_GSIZE_FORMAT
                         " (expected a number < +inf)", p[k], k, i);
            return FALSE;
          }
      if (y[i] < 0)
        continue;
      if ((guint) y[i] >= K)
        {
          g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                       "label %d of row %" G_GSIZE_FORMAT " is outside the %u classes", y[i], i, K);
          return FALSE;
        }
      if (temperature == 1.0)
        memcpy (lq, p, K * sizeof (double));
      else
        tempered_log_row (p, K, temperature, lq);
      for (guint k = 0; k < K; k++)
        q[k] = exp (lq[k]);
      for (guint k = 1; k < K; k++)
        if (q[k] > q[arg])
          arg = k;
      scored++;
      correct += (gint32) arg == y[i];
      /* exact from the log-probability; only p = 0 takes the floor */
      nll -= lq[y[i]] > -INFINITY ? MIN (lq[y[i]], 0.0) : log (FG_PROBA_FLOOR);
      for (guint k = 0; k < K; k++)
        {
          double t = q[k] - ((gint32) k == y[i] ? 1.0 : 0.0);
          brier += t * t;
        }
      conf = CLAMP (q[arg], 0.0, 1.0);
      {
        guint b = confidence_bin (conf, n_bins);
        conf_sum[b] += conf;
        correct_sum[b] += (gint32) arg == y[i];
        count[b]++;
      }
    }
  out->n = scored;
  if (scored == 0)
    {
      out->accuracy = out->nll = out->ece = out->brier = NAN;
    }
  else
    {
      /* Σ_b |B_b|/n |acc − conf| = Σ_b |correct_b − conf_b| / n. */
      for (guint b = 0; b < n_bins; b++)
        ece += fabs (correct_sum[b] - conf_sum[b]);
      out->accuracy = (double) correct / (double) scored;
      out->nll = nll / (double) scored;
      out->ece = ece / (double) scored;
      out->brier = brier / (double) scored;
    }
  if (rel != NULL)
    for (guint b = 0; b < n_bins; b++)
      {
        rel->count[b] = count[b];
        rel->confidence[b] = count[b] ? conf_sum[b] / count[b] : NAN;
        rel->accuracy[b] = count[b] ? correct_sum[b] / count[b] : NAN;
      }
  return TRUE;
}

/**
 * fg_tempered_nll:
 *
 * Returns: the mean NLL of softmax(log p / T) over the scored rows whose true class has p > 0
 *   (NAN when there is none).
 */
double
fg_tempered_nll (const float *proba, const gint32 *y, gsize n, guint K, double temperature)
{
  g_autofree double *logp = g_new (double, n * K);
  if (!fg_proba_to_log (proba, n, K, logp, NULL))
    return NAN;
  return fg_tempered_nll_log (logp, y, n, K, temperature);
}

/**
 * fg_tempered_nll_log:
 *
 * fg_tempered_nll () on log-probabilities (rows whose true class has log p = −inf are skipped).
 */
double
fg_tempered_nll_log (const double *logp, const gint32 *y, gsize n, guint K, double temperature)
{
  g_autofree double *q = g_new (double, K);
  double sum = 0;
  gsize used = 0;
  for (gsize i = 0; i < n; i++)
    {
      if (y[i] < 0 || (guint) y[i] >= K || !(logp[i * K + y[i]] > -INFINITY))
        continue;
      tempered_log_row (logp + i * K, K, temperature, q);
      sum -= q[y[i]];
      used++;
    }
  return used ? sum / (double) used : NAN;
}

#define LOG_T_BOUND 20.0

static double
objective (const double *logp, const gint32 *y, gsize n, guint K, double u)
{
  return fg_tempered_nll_log (logp, y, n, K, exp (u));
}

/**
 * fg_temperature_fit:
 * @proba: n × K probabilities
 * @y: labels
 * @n: rows
 * @K: classes
 * @temperature: (out): the fitted T
 * @error: return location for a #GError
 *
 * Minimises the tempered NLL over u = log T: bracket by doubling steps from u = 0, then Brent's
 * method (parabolic steps with golden-section fallback) to |Δu| ≈ 1e-7.
 *
 * Returns: %FALSE (FG_ERROR_DATA) when no row can be scored.
 */
gboolean
fg_temperature_fit (const float *proba, const gint32 *y, gsize n, guint K, double *temperature,
                    GError **error)
{
  g_autofree double *logp = g_new (double, n * K);
  if (!fg_proba_to_log (proba, n, K, logp, error))
    return FALSE;
  return fg_temperature_fit_log (logp, y, n, K, temperature, error);
}

/**
 * fg_temperature_fit_log:
 *
 * fg_temperature_fit () on log-probabilities.
 */
gboolean
fg_temperature_fit_log (const double *logp, const gint32 *y, gsize n, guint K,
                        double *temperature, GError **error)
{
  const double golden = 0.3819660112501051, tol = 1e-7;
  double a, b, c, fa, fb, fc, step = 0.5;
  double x, w, v, fx, fw, fv, d = 0, e = 0;

  fb = objective (logp, y, n, K, 0.0);
  if (isnan (fb))
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                   "temperature: no labeled row whose true class has a probability > 0");
      return FALSE;
    }
  /* Bracket: a < b < c with f(b) ≤ f(a), f(c), or stop at a bound. */
  b = 0.0;
  a = -step;
  c = step;
  fa = objective (logp, y, n, K, a);
  fc = objective (logp, y, n, K, c);
  while (!(fb <= fa && fb <= fc))
    {
      step *= 2.0;
      if (fa < fc)
        {
          /* Go down: new point left of a. */
          c = b, fc = fb;
          b = a, fb = fa;
          a = MAX (b - step, -LOG_T_BOUND);
          fa = objective (logp, y, n, K, a);
          if (a <= -LOG_T_BOUND && fa <= fb)
            {
              *temperature = exp (a);
              return TRUE;
            }
        }
      else
        {
          a = b, fa = fb;
          b = c, fb = fc;
          c = MIN (b + step, LOG_T_BOUND);
          fc = objective (logp, y, n, K, c);
          if (c >= LOG_T_BOUND && fc <= fb)
            {
              *temperature = exp (c);
              return TRUE;
            }
        }
    }

  /* Brent's minimiser on [a, c] from b (Numerical Recipes' brent, Brent 1973). */
  x = w = v = b;
  fx = fw = fv = fb;
  for (int iter = 0; iter < 200; iter++)
    {
      double xm = 0.5 * (a + c);
      double tol1 = tol * fabs (x) + 1e-10, tol2 = 2.0 * tol1;
      double u, fu;
      if (fabs (x - xm) <= tol2 - 0.5 * (c - a))
        break;
      if (fabs (e) > tol1)
        {
          double r = (x - w) * (fx - fv);
          double q = (x - v) * (fx - fw);
          double p = (x - v) * q - (x - w) * r;
          double etemp = e;
          q = 2.0 * (q - r);
          if (q > 0.0)
            p = -p;
          q = fabs (q);
          e = d;
          if (fabs (p) >= fabs (0.5 * q * etemp) || p <= q * (a - x) || p >= q * (c - x))
            {
              e = x >= xm ? a - x : c - x;
              d = golden * e;
            }
          else
            {
              d = p / q;
              u = x + d;
              if (u - a < tol2 || c - u < tol2)
                d = xm - x >= 0 ? tol1 : -tol1;
            }
        }
      else
        {
          e = x >= xm ? a - x : c - x;
          d = golden * e;
        }
      u = fabs (d) >= tol1 ? x + d : x + (d >= 0 ? tol1 : -tol1);
      fu = objective (logp, y, n, K, u);
      if (fu <= fx)
        {
          if (u >= x)
            a = x;
          else
            c = x;
          v = w, fv = fw;
          w = x, fw = fx;
          x = u, fx = fu;
        }
      else
        {
          if (u < x)
            a = u;
          else
            c = u;
          if (fu <= fw || w == x)
            {
              v = w, fv = fw;
              w = u, fw = fu;
            }
          else if (fu <= fv || v == x || v == w)
            {
              v = u, fv = fu;
            }
        }
    }
  *temperature = exp (x);
  return TRUE;
}

typedef struct {
  double s;
  gboolean in;
} Scored;

static int
cmp_desc (gconstpointer pa, gconstpointer pb)
{
  const Scored *a = pa, *b = pb;
  return (a->s < b->s) - (a->s > b->s);
}

/**
 * fg_ood_metrics:
 * @s_in: scores of in-domain examples (the positives; higher = more in-domain)
 * @n_in: their number (> 0)
 * @s_out: scores of out-of-domain examples
 * @n_out: their number (> 0)
 * @out: (out): AUROC, AUPR (average precision) and FPR at 95 % TPR
 * @error: return location for a #GError
 *
 * Thresholds are the distinct scores in decreasing order, as scikit-learn's roc_curve and
 * average_precision_score.
 *
 * Returns: %FALSE for an empty set or a NaN score.
 */
gboolean
fg_ood_metrics (const double *s_in, gsize n_in, const double *s_out, gsize n_out,
                FgOodMetrics *out, GError **error)
{
  gsize n = n_in + n_out, tp = 0, fp = 0;
  g_autofree Scored *all = NULL;
  double auc = 0, ap = 0, prev_tpr = 0, prev_fpr = 0;
  gboolean have_fpr95 = FALSE;

  if (n_in == 0 || n_out == 0)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                   "out-of-domain metrics need both sets (%" G_GSIZE_FORMAT " in-domain, %"
                   G_GSIZE_FORMAT " out-of-domain scores)", n_in, n_out);
      return FALSE;
    }
  all = g_new (Scored, n);
  for (gsize i = 0; i < n; i++)
    {
      all[i].in = i < n_in;
      all[i].s = i < n_in ? s_in[i] : s_out[i - n_in];
      if (isnan (all[i].s))
        {
          g_set_error (error, FG_ERROR, FG_ERROR_NUMERIC, "NaN score of %s example %" G_GSIZE_FORMAT,
                       i < n_in ? "in-domain" : "out-of-domain", i < n_in ? i : i - n_in);
          return FALSE;
        }
    }
  qsort (all, n, sizeof *all, cmp_desc);
  out->fpr95 = 1.0;
  for (gsize i = 0; i < n;)
    {
      gsize j = i;
      double tpr, fpr;
      for (; j < n && all[j].s == all[i].s; j++)
        {
          if (all[j].in)
            tp++;
          else
            fp++;
        }
      tpr = (double) tp / (double) n_in;
      fpr = (double) fp / (double) n_out;
      auc += (fpr - prev_fpr) * (tpr + prev_tpr) * 0.5; /* trapezoid: ties count half */
      ap += (tpr - prev_tpr) * ((double) tp / (double) (tp + fp));
      if (!have_fpr95 && tpr >= 0.95)
        {
          out->fpr95 = fpr;
          have_fpr95 = TRUE;
        }
      prev_tpr = tpr;
      prev_fpr = fpr;
      i = j;
    }
  out->auroc = auc;
  out->aupr = ap;
  return TRUE;
}

/**
 * fg_decision_distance:
 * @z: n × D latents
 * @n: rows
 * @D: dimension
 * @means: K × D means (K ≥ 2)
 * @K: components
 * @d: (out): n distances to the boundary between the two closest means
 * @nearest: (out) (nullable): n indices of the closest mean
 */
void
fg_decision_distance (const float *z, gsize n, gsize D, const float *means, guint K, double *d,
                      gint32 *nearest)
{
  g_return_if_fail (K >= 2);
  for (gsize i = 0; i < n; i++)
    {
      const float *zi = z + i * D;
      double d1 = INFINITY, d2 = INFINITY, sep = 0;
      guint k1 = 0, k2 = 1;
      for (guint k = 0; k < K; k++)
        {
          double q = 0;
          for (gsize j = 0; j < D; j++)
            {
              double t = (double) zi[j] - means[k * D + j];
              q += t * t;
            }
          if (q < d1)
            {
              d2 = d1, k2 = k1;
              d1 = q, k1 = k;
            }
          else if (q < d2)
            {
              d2 = q, k2 = k;
            }
        }
      for (gsize j = 0; j < D; j++)
        {
          double t = (double) means[k1 * D + j] - means[k2 * D + j];
          sep += t * t;
        }
      d[i] = sep > 0 ? (d2 - d1) / (2.0 * sqrt (sep)) : 0.0;
      if (nearest != NULL)
        nearest[i] = (gint32) k1;
    }
}

/**
 * fg_histogram:
 * @values: n values
 * @n: count
 * @lo: left edge
 * @hi: right edge (> lo)
 * @n_bins: bins
 * @counts: (out): n_bins counts
 */
void
fg_histogram (const double *values, gsize n, double lo, double hi, guint n_bins, gsize *counts)
{
  g_return_if_fail (n_bins > 0 && hi > lo);
  memset (counts, 0, n_bins * sizeof *counts);
  for (gsize i = 0; i < n; i++)
    {
      double b;
      if (!isfinite (values[i]))
        continue;
      b = floor ((values[i] - lo) / (hi - lo) * n_bins);
      counts[(guint) CLAMP (b, 0.0, (double) n_bins - 1.0)]++;
    }
}
