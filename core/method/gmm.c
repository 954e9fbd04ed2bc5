/* SPDX-License-Identifier: MIT */
/* flowgmm — the latent Gaussian mixture and the Bayes classifier (see gmm.h). */
#include "config.h"

#include <math.h>
#include <string.h>

#include <flowgmm/gmm.h>

#define LOG_2PI 1.8378770664093454835606594728112

struct _FgGmm {
  guint K;
  gsize D;
  double sigma;           /* used while σ is fixed */
  gboolean sigma_trainable;
  FgWeight *means;        /* [K, D], owned by the caller's set */
  FgWeight *sigma_raw;    /* [1, 1], σ = softplus(value) */
};

static const char *const means_init_names[] = { "random", "tabular", "circle", "data", "given" };

/**
 * fg_gmm_means_init_from_string:
 * @name: "random", "tabular", "circle", "data" or "given"
 * @init: (out): the placement rule
 * @error: return location for a #GError (%FG_ERROR_INVALID_PARAM)
 *
 * Returns: %TRUE if @name is known.
 */
gboolean
fg_gmm_means_init_from_string (const char *name, FgGmmMeansInit *init, GError **error)
{
  for (guint i = 0; i < G_N_ELEMENTS (means_init_names); i++)
    if (g_strcmp0 (name, means_init_names[i]) == 0)
      {
        *init = (FgGmmMeansInit) i;
        return TRUE;
      }
  g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
               "unknown mean placement '%s' (random, tabular, circle, data or given)",
               name ? name : "(null)");
  return FALSE;
}

/**
 * fg_gmm_means_init_to_string:
 * @init: a placement rule
 *
 * Returns: its name, or "unknown".
 */
const char *
fg_gmm_means_init_to_string (FgGmmMeansInit init)
{
  if ((guint) init < G_N_ELEMENTS (means_init_names))
    return means_init_names[init];
  return "unknown";
}

static double
softplus (double x)
{
  return x > 0 ? x + log1p (exp (-x)) : log1p (exp (x));
}

/* softplus⁻¹(y) = log(e^y − 1), stable for large y. */
static double
softplus_inv (double y)
{
  return y > 20.0 ? y + log1p (-exp (-y)) : log (expm1 (y));
}

/**
 * fg_gmm_new:
 * @n_classes: K ≥ 1
 * @dim: D ≥ 1
 * @sigma: the components' standard deviation, finite and > 0
 * @weights: the set that receives the weights "gmm.means" and "gmm.sigma_raw" (borrowed)
 *
 * Returns: (transfer full): a mixture with all means at 0 and nothing trainable.
 */
FgGmm *
fg_gmm_new (guint n_classes, gsize dim, double sigma, FgWeightSet *weights)
{
  FgGmm *gmm;
  g_return_val_if_fail (n_classes >= 1 && dim >= 1, NULL);
  g_return_val_if_fail (isfinite (sigma) && sigma > 0.0, NULL);
  g_return_val_if_fail (weights != NULL, NULL);
  gmm = g_new0 (FgGmm, 1);
  gmm->K = n_classes;
  gmm->D = dim;
  gmm->sigma = sigma;
  gmm->means = fg_weight_set_add_2d (weights, "gmm.means", n_classes, dim, FALSE);
  gmm->sigma_raw = fg_weight_set_add_2d (weights, "gmm.sigma_raw", 1, 1, FALSE);
  g_return_val_if_fail (gmm->means != NULL && gmm->sigma_raw != NULL, (g_free (gmm), NULL));
  gmm->means->trainable = FALSE;
  gmm->sigma_raw->trainable = FALSE;
  fg_weight_init_const (gmm->means, 0.0f);
  fg_weight_init_const (gmm->sigma_raw, (float) softplus_inv (sigma));
  return gmm;
}

/**
 * fg_gmm_free:
 * @gmm: (nullable): a mixture
 *
 * Frees the mixture (its weights belong to their set).
 */
void
fg_gmm_free (FgGmm *gmm)
{
  g_free (gmm);
}

/**
 * fg_gmm_get_n_classes:
 * @gmm: a mixture
 *
 * Returns: K.
 */
guint
fg_gmm_get_n_classes (const FgGmm *gmm)
{
  g_return_val_if_fail (gmm != NULL, 0);
  return gmm->K;
}

/**
 * fg_gmm_get_dim:
 * @gmm: a mixture
 *
 * Returns: D.
 */
gsize
fg_gmm_get_dim (const FgGmm *gmm)
{
  g_return_val_if_fail (gmm != NULL, 0);
  return gmm->D;
}

/**
 * fg_gmm_get_sigma:
 * @gmm: a mixture
 *
 * Returns: σ: the fixed value, or softplus of the raw weight while σ is trainable.
 */
double
fg_gmm_get_sigma (const FgGmm *gmm)
{
  g_return_val_if_fail (gmm != NULL, NAN);
  return gmm->sigma_trainable ? softplus (gmm->sigma_raw->value.data[0]) : gmm->sigma;
}

/**
 * fg_gmm_set_sigma:
 * @gmm: a mixture
 * @sigma: finite and > 0
 *
 * Fixes σ; the raw weight is updated to match and becomes a constant.
 */
void
fg_gmm_set_sigma (FgGmm *gmm, double sigma)
{
  g_return_if_fail (gmm != NULL);
  g_return_if_fail (isfinite (sigma) && sigma > 0.0);
  gmm->sigma = sigma;
  gmm->sigma_trainable = FALSE;
  gmm->sigma_raw->trainable = FALSE;
  gmm->sigma_raw->value.data[0] = (float) softplus_inv (sigma);
}

/**
 * fg_gmm_get_means:
 * @gmm: a mixture
 *
 * Returns: (transfer none): the [K, D] means weight.
 */
FgWeight *
fg_gmm_get_means (const FgGmm *gmm)
{
  g_return_val_if_fail (gmm != NULL, NULL);
  return gmm->means;
}

/**
 * fg_gmm_get_sigma_raw:
 * @gmm: a mixture
 *
 * Returns: (transfer none): the [1, 1] weight c with σ = softplus(c).
 */
FgWeight *
fg_gmm_get_sigma_raw (const FgGmm *gmm)
{
  g_return_val_if_fail (gmm != NULL, NULL);
  return gmm->sigma_raw;
}

/**
 * fg_gmm_set_trainable:
 * @gmm: a mixture
 * @means: learn the means
 * @sigma: learn σ (through c, σ = softplus(c))
 *
 * Sets which of the mixture's weights an optimizer updates.  Turning σ learning on starts c at
 * softplus⁻¹ of the current σ; turning it off keeps the current σ as the fixed value.
 */
void
fg_gmm_set_trainable (FgGmm *gmm, gboolean means, gboolean sigma)
{
  g_return_if_fail (gmm != NULL);
  gmm->means->trainable = means;
  if (sigma && !gmm->sigma_trainable)
    gmm->sigma_raw->value.data[0] = (float) softplus_inv (gmm->sigma);
  else if (!sigma && gmm->sigma_trainable)
    gmm->sigma = softplus (gmm->sigma_raw->value.data[0]);
  gmm->sigma_trainable = sigma;
  gmm->sigma_raw->trainable = sigma;
}

/**
 * fg_gmm_init_means:
 * @gmm: a mixture
 * @init: %FG_GMM_MEANS_RANDOM, %FG_GMM_MEANS_TABULAR or %FG_GMM_MEANS_CIRCLE
 * @r: scale (random) or radius (circle); unused by the tabular rule
 * @angle: θ0 in radians (circle)
 * @rng: (nullable): the generator (random and tabular)
 *
 * Places the means:
 * - random: μ_k = r·ε_k with ε_k ~ N(0, I), drawn class by class;
 * - tabular (REFERENCE §1.2): K = 2: m = 0.8·ε, μ_0 = 3.75·m/‖m‖, μ_1 = −μ_0; K ≠ 2:
 *   μ_k = 0.56·ε_k;
 * - circle: μ_k = r·(cos θ_k, sin θ_k, 0, …) with θ_k = θ0 + 2πk/K (D = 1: r·cos θ_k).
 */
void
fg_gmm_init_means (FgGmm *gmm, FgGmmMeansInit init, double r, double angle, FgRng *rng)
{
  float *mu;
  const guint K = gmm ? gmm->K : 0;
  const gsize D = gmm ? gmm->D : 0;
  g_return_if_fail (gmm != NULL);
  mu = gmm->means->value.data;
  switch (init)
    {
    case FG_GMM_MEANS_RANDOM:
      g_return_if_fail (rng != NULL);
      fg_rng_fill_normal (rng, mu, (gsize) K * D, 0.0f, (float) r);
      return;
    case FG_GMM_MEANS_TABULAR:
      g_return_if_fail (rng != NULL);
      if (K == 2)
        {
          double norm = 0.0;
          fg_rng_fill_normal (rng, mu, D, 0.0f, 0.8f);
          for (gsize j = 0; j < D; j++)
            norm += (double) mu[j] * mu[j];
          norm = sqrt (norm);
          if (norm == 0.0)
            norm = 1.0;
          for (gsize j = 0; j < D; j++)
            {
              mu[j] = (float) (mu[j] * (7.5 / (2.0 * norm)));
              mu[D + j] = -mu[j];
            }
        }
      else
        fg_rng_fill_normal (rng, mu, (gsize) K * D, 0.0f, 0.8f * 0.7f);
      return;
    case FG_GMM_MEANS_CIRCLE:
      memset (mu, 0, (gsize) K * D * sizeof (float));
      for (guint k = 0; k < K; k++)
        {
          double th = angle + 2.0 * G_PI * k / K;
          mu[k * D] = (float) (r * cos (th));
          if (D > 1)
            mu[k * D + 1] = (float) (r * sin (th));
        }
      return;
    case FG_GMM_MEANS_DATA:
    case FG_GMM_MEANS_GIVEN:
    default:
      g_critical ("fg_gmm_init_means: placement '%s' needs data: use "
                  "fg_gmm_init_means_from_latents () or fg_gmm_set_means ()",
                  fg_gmm_means_init_to_string (init));
      return;
    }
}

/**
 * fg_gmm_set_means:
 * @gmm: a mixture
 * @means: K × D values, row-major
 *
 * Copies @means into the means weight.
 */
void
fg_gmm_set_means (FgGmm *gmm, const float *means)
{
  g_return_if_fail (gmm != NULL && means != NULL);
  memcpy (gmm->means->value.data, means, (gsize) gmm->K * gmm->D * sizeof (float));
}

/**
 * fg_gmm_init_means_from_latents:
 * @gmm: a mixture
 * @z: N latents ([N, D] or N×C×H×W with C·H·W = D; any ld)
 * @y: N labels in [0, K), or −1 to skip a row
 * @r: the scale applied to each class mean (App. B)
 * @rng: (nullable): draws r·ε for a class without points (needed only then)
 * @n_missing: (out) (optional): the number of such classes
 *
 * Sets μ_k = r·(1/n_k) Σ_{y_i = k} z_i, accumulated in double (the data-dependent placement of
 * App. B).
 */
void
fg_gmm_init_means_from_latents (FgGmm *gmm, const FgTensor *z, const gint32 *y, double r,
                                FgRng *rng, guint *n_missing)
{
  g_autofree double *sum = NULL;
  g_autofree double *count = NULL;
  guint missing = 0;
  g_return_if_fail (gmm != NULL && z != NULL && (y != NULL || fg_tensor_rows (z) == 0));
  g_return_if_fail (fg_tensor_cols (z) == gmm->D);
  const gsize N = fg_tensor_rows (z), D = gmm->D;
  sum = g_new0 (double, (gsize) gmm->K * D);
  count = g_new0 (double, gmm->K);
  for (gsize i = 0; i < N; i++)
    {
      const float *zr = fg_tensor_row (z, i);
      double *s;
      if (y[i] < 0 || (guint) y[i] >= gmm->K)
        continue;
      s = sum + (gsize) y[i] * D;
      for (gsize j = 0; j < D; j++)
        s[j] += zr[j];
      count[y[i]] += 1.0;
    }
  for (guint k = 0; k < gmm->K; k++)
    {
      float *mu = gmm->means->value.data + (gsize) k * D;
      if (count[k] > 0)
        for (gsize j = 0; j < D; j++)
          mu[j] = (float) (r * sum[(gsize) k * D + j] / count[k]);
      else
        {
          missing++;
          g_return_if_fail (rng != NULL);
          fg_rng_fill_normal (rng, mu, D, 0.0f, (float) r);
        }
    }
  if (n_missing != NULL)
    *n_missing = missing;
}

/**
 * fg_gmm_set_means_from_string:
 * @gmm: a mixture
 * @text: K rows separated by ';', each D numbers separated by ',' (spaces allowed)
 * @error: return location for a #GError (%FG_ERROR_INVALID_PARAM)
 *
 * Returns: %TRUE when @text holds exactly K × D finite numbers; the means are untouched
 * otherwise.
 */
gboolean
fg_gmm_set_means_from_string (FgGmm *gmm, const char *text, GError **error)
{
  g_auto (GStrv) rows = NULL;
  g_autofree float *mu = NULL;
  guint n_rows;
  g_return_val_if_fail (gmm != NULL, FALSE);
  if (text == NULL)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM, "no means given");
      return FALSE;
    }
  rows = g_strsplit (text, ";", -1);
  n_rows = g_strv_length (rows);
  if (n_rows != gmm->K)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                   "means: %u rows given, the mixture has %u classes", n_rows, gmm->K);
      return FALSE;
    }
  mu = g_new (float, (gsize) gmm->K * gmm->D);
  for (guint k = 0; k < n_rows; k++)
    {
      g_auto (GStrv) cols = g_strsplit (rows[k], ",", -1);
      guint n_cols = g_strv_length (cols);
      if (n_cols != gmm->D)
        {
          g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                       "means: row %u has %u values, the latent has %" G_GSIZE_FORMAT
                       " dimensions", k + 1, n_cols, gmm->D);
          return FALSE;
        }
      for (guint j = 0; j < n_cols; j++)
        {
          char *end = NULL;
          const char *s = g_strstrip (cols[j]);
          double v = g_ascii_strtod (s, &end);
          if (*s == '\0' || end == NULL || *end != '\0' || !isfinite (v))
            {
              g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                           "means: row %u value %u '%s' is not a finite number", k + 1, j + 1,
                           s);
              return FALSE;
            }
          mu[(gsize) k * gmm->D + j] = (float) v;
        }
    }
  fg_gmm_set_means (gmm, mu);
  return TRUE;
}

/* ---- Kernels ------------------------------------------------------------------------------- */

/* d2[k] = ‖z − μ_k‖² in double for one latent. */
static void
row_sq_dists (const FgGmm *gmm, const float *z, double *d2)
{
  const gsize D = gmm->D;
  const float *mu = gmm->means->value.data;
  for (guint k = 0; k < gmm->K; k++)
    {
      const float *m = mu + (gsize) k * D;
      double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      gsize j = 0;
      for (; j + 4 <= D; j += 4)
        {
          double a = (double) z[j] - m[j], b = (double) z[j + 1] - m[j + 1];
          double c = (double) z[j + 2] - m[j + 2], d = (double) z[j + 3] - m[j + 3];
          s0 += a * a;
          s1 += b * b;
          s2 += c * c;
          s3 += d * d;
        }
      for (; j < D; j++)
        {
          double a = (double) z[j] - m[j];
          s0 += a * a;
        }
      d2[k] = (s0 + s1) + (s2 + s3);
    }
}

/* The additive constant −D·log σ − (D/2)·log 2π and 1/(2σ²). */
static void
gmm_consts (const FgGmm *gmm, double *c0, double *half_inv_var)
{
  double sigma = fg_gmm_get_sigma (gmm);
  *c0 = -(double) gmm->D * (log (sigma) + 0.5 * LOG_2PI);
  *half_inv_var = 0.5 / (sigma * sigma);
}

static gboolean
check_latent (const FgGmm *gmm, const FgTensor *z, const char *what)
{
  if (fg_tensor_cols (z) != gmm->D)
    {
      g_critical ("%s: latent of %" G_GSIZE_FORMAT " columns for a mixture over %" G_GSIZE_FORMAT
                  " dimensions", what, fg_tensor_cols (z), gmm->D);
      return FALSE;
    }
  return TRUE;
}

/**
 * fg_gmm_log_prob_components:
 * @gmm: a mixture
 * @z: N latents
 * @out: N × K doubles
 *
 * out[i·K + k] = log N(z_i; μ_k, σ²I).
 */
void
fg_gmm_log_prob_components (const FgGmm *gmm, const FgTensor *z, double *out)
{
  double c0, h;
  g_return_if_fail (gmm != NULL && z != NULL && out != NULL);
  if (!check_latent (gmm, z, "fg_gmm_log_prob_components"))
    return;
  gmm_consts (gmm, &c0, &h);
  for (gsize i = 0; i < fg_tensor_rows (z); i++)
    {
      double *o = out + i * gmm->K;
      row_sq_dists (gmm, fg_tensor_row (z, i), o);
      for (guint k = 0; k < gmm->K; k++)
        o[k] = c0 - h * o[k];
    }
}

static double
logsumexp_d (const double *x, guint n)
{
  double m = -INFINITY, s = 0.0;
  for (guint k = 0; k < n; k++)
    m = MAX (m, x[k]);
  if (!isfinite (m))
    return m;
  for (guint k = 0; k < n; k++)
    s += exp (x[k] - m);
  return m + log (s);
}

/**
 * fg_gmm_log_prob:
 * @gmm: a mixture
 * @z: N latents
 * @out: N doubles
 *
 * out[i] = log p(z_i) = logsumexp_k log N(z_i; μ_k, σ²I) − log K.
 */
void
fg_gmm_log_prob (const FgGmm *gmm, const FgTensor *z, double *out)
{
  double stack[256];
  g_autofree double *heap = NULL;
  double *lp = stack;
  g_return_if_fail (gmm != NULL && z != NULL && out != NULL);
  if (!check_latent (gmm, z, "fg_gmm_log_prob"))
    return;
  if (gmm->K > G_N_ELEMENTS (stack))
    lp = heap = g_new (double, gmm->K);
  for (gsize i = 0; i < fg_tensor_rows (z); i++)
    {
      FgTensor row = fg_tensor_view_rows (z, i, 1);
      fg_gmm_log_prob_components (gmm, &row, lp);
      out[i] = logsumexp_d (lp, gmm->K) - log ((double) gmm->K);
    }
}

/**
 * fg_gmm_predict:
 * @gmm: a mixture
 * @z: N latents
 * @labels: (nullable): N labels out: argmax_k p(k | z_i), the lowest k on ties
 * @proba: (nullable): N × K probabilities out, p(k | z_i) (eq. 5)
 *
 * The Bayes classifier of eq. 5: with equal σ and π it picks the nearest mean.
 */
void
fg_gmm_predict (const FgGmm *gmm, const FgTensor *z, gint32 *labels, float *proba)
{
  double stack[256];
  g_autofree double *heap = NULL;
  double *lp = stack;
  g_return_if_fail (gmm != NULL && z != NULL);
  if (!check_latent (gmm, z, "fg_gmm_predict"))
    return;
  /* No heap for the usual K: the trainer calls this every step (flowgmm-cons). */
  if (gmm->K > G_N_ELEMENTS (stack))
    lp = heap = g_new (double, gmm->K);
  for (gsize i = 0; i < fg_tensor_rows (z); i++)
    {
      FgTensor row = fg_tensor_view_rows (z, i, 1);
      guint best = 0;
      fg_gmm_log_prob_components (gmm, &row, lp);
      for (guint k = 1; k < gmm->K; k++)
        if (lp[k] > lp[best])
          best = k;
      if (labels != NULL)
        labels[i] = (gint32) best;
      if (proba != NULL)
        {
          double lse = logsumexp_d (lp, gmm->K);
          for (guint k = 0; k < gmm->K; k++)
            proba[i * gmm->K + k] = (float) exp (lp[k] - lse);
        }
    }
}

/* ---- The fused tape op ---------------------------------------------------------------------- */

typedef struct {
  FgGmm *gmm;
  double sigma;
  double *d2; /* N × K squared distances (arena) */
} CompSaved;

/* G = dL/d out [N, K], a = 1/σ²:
 *   dz_i  = −a Σ_k G_ik (z_i − μ_k)         = −a (z_i Σ_k G_ik − Σ_k G_ik μ_k)
 *   dμ_k  =  a Σ_i G_ik (z_i − μ_k)
 *   dσ    =  Σ_ik G_ik (d2_ik / σ³ − D / σ),  dc = dσ · sigmoid(c) */
static void
comp_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  const CompSaved *s = saved;
  const FgGmm *gmm = s->gmm;
  const guint K = gmm->K;
  const gsize D = gmm->D, N = fg_tensor_rows (&in[0]->value);
  const double sigma = s->sigma, a = 1.0 / (sigma * sigma);
  const FgTensor *G = &out->grad, *Z = &in[0]->value;
  const float *mu = in[1]->value.data;
  FgTensor *dz = fg_tape_grad (tape, in[0]);
  FgTensor *dmu = fg_tape_grad (tape, in[1]);
  FgTensor *dc = fg_tape_grad (tape, in[2]);
  double *dmu_acc = NULL, *gsum = NULL, *zacc = NULL;
  double dsig = 0.0;

  if (dz != NULL)
    zacc = fg_tape_alloc (tape, D * sizeof (double));

  if (dmu != NULL)
    {
      dmu_acc = fg_tape_alloc (tape, (gsize) K * D * sizeof (double));
      gsum = fg_tape_alloc (tape, K * sizeof (double));
      memset (dmu_acc, 0, (gsize) K * D * sizeof (double));
      memset (gsum, 0, K * sizeof (double));
    }
  for (gsize i = 0; i < N; i++)
    {
      const float *g = fg_tensor_row (G, i);
      const float *z = fg_tensor_row (Z, i);
      if (dz != NULL)
        {
          float *d = fg_tensor_row (dz, i);
          double gs = 0.0;
          for (guint k = 0; k < K; k++)
            gs += g[k];
          for (gsize j = 0; j < D; j++)
            zacc[j] = gs * z[j];
          for (guint k = 0; k < K; k++)
            {
              const double gk = g[k];
              const float *m = mu + (gsize) k * D;
              if (gk == 0.0)
                continue;
              for (gsize j = 0; j < D; j++)
                zacc[j] -= gk * m[j];
            }
          for (gsize j = 0; j < D; j++)
            d[j] += (float) (-a * zacc[j]);
        }
      if (dmu_acc != NULL)
        for (guint k = 0; k < K; k++)
          {
            double *acc = dmu_acc + (gsize) k * D;
            const double gk = g[k];
            if (gk == 0.0)
              continue;
            gsum[k] += gk;
            for (gsize j = 0; j < D; j++)
              acc[j] += gk * z[j];
          }
      if (dc != NULL)
        for (guint k = 0; k < K; k++)
          dsig += g[k] * (s->d2[i * K + k] / (sigma * sigma * sigma) - (double) D / sigma);
    }
  if (dmu != NULL)
    for (guint k = 0; k < K; k++)
      for (gsize j = 0; j < D; j++)
        {
          const double v = dmu_acc[(gsize) k * D + j] - gsum[k] * mu[(gsize) k * D + j];
          dmu->data[(gsize) k * D + j] += (float) (a * v);
        }
  if (dc != NULL)
    {
      const double c = in[2]->value.data[0];
      dc->data[0] += (float) (dsig / (1.0 + exp (-c)));
    }
}

/**
 * fg_gmm_op_log_prob_components:
 * @gmm: a mixture
 * @tape: a tape
 * @z: (nullable): N latents, rows × D
 *
 * Returns: (transfer none) (nullable): [N, K] log N(z_i; μ_k, σ²I), with gradients into @z and
 * the trainable weights of @gmm.
 */
FgVar *
fg_gmm_op_log_prob_components (FgGmm *gmm, FgTape *tape, FgVar *z)
{
  CompSaved *s;
  double c0, h;
  g_return_val_if_fail (gmm != NULL && tape != NULL, NULL);
  if (z == NULL || !check_latent (gmm, &z->value, "fg_gmm_op_log_prob_components"))
    return NULL;
  const gsize N = fg_tensor_rows (&z->value);
  const guint K = gmm->K;
  FgVar *inputs[3] = { z, fg_tape_weight (tape, gmm->means), fg_tape_weight (tape, gmm->sigma_raw) };
  gsize shape[2] = { N, K };
  FgVar *out = fg_tape_op_new (tape, 2, shape, inputs, 3, comp_backward, sizeof *s,
                               (gpointer *) &s);
  if (out == NULL)
    return NULL;
  s->gmm = gmm;
  s->sigma = fg_gmm_get_sigma (gmm);
  s->d2 = fg_tape_alloc (tape, MAX (N * K, 1) * sizeof (double));
  gmm_consts (gmm, &c0, &h);
  for (gsize i = 0; i < N; i++)
    {
      double *d2 = s->d2 + i * K;
      float *o = out->value.data + i * K;
      row_sq_dists (gmm, fg_tensor_row (&z->value, i), d2);
      for (guint k = 0; k < K; k++)
        o[k] = (float) (c0 - h * d2[k]);
    }
  return out;
}

/**
 * fg_gmm_op_log_prob_class:
 * @gmm: a mixture
 * @tape: a tape
 * @z: (nullable): N latents
 * @y: N labels (copied); y_i < 0 gives 0 with no gradient
 *
 * Returns: (transfer none) (nullable): [N, 1] log N(z_i; μ_{y_i}, σ²I), without log π (the
 * labeled term of eq. 4 as the authors compute it).
 */
FgVar *
fg_gmm_op_log_prob_class (FgGmm *gmm, FgTape *tape, FgVar *z, const gint32 *y)
{
  g_return_val_if_fail (gmm != NULL && tape != NULL, NULL);
  return fg_op_gather (tape, fg_gmm_op_log_prob_components (gmm, tape, z), y);
}

/**
 * fg_gmm_op_log_prob:
 * @gmm: a mixture
 * @tape: a tape
 * @z: (nullable): N latents
 *
 * Returns: (transfer none) (nullable): [N, 1] log p(z_i) = logsumexp_k log N(z_i; μ_k) − log K.
 */
FgVar *
fg_gmm_op_log_prob (FgGmm *gmm, FgTape *tape, FgVar *z)
{
  g_return_val_if_fail (gmm != NULL && tape != NULL, NULL);
  return fg_op_add_scalar (tape,
                           fg_op_logsumexp (tape, fg_gmm_op_log_prob_components (gmm, tape, z)),
                           (float) -log ((double) gmm->K));
}

/**
 * fg_gmm_op_log_posterior:
 * @gmm: a mixture
 * @tape: a tape
 * @z: (nullable): N latents
 *
 * Returns: (transfer none) (nullable): [N, K] log p(k | z_i) (eq. 5 in log space).
 */
FgVar *
fg_gmm_op_log_posterior (FgGmm *gmm, FgTape *tape, FgVar *z)
{
  g_return_val_if_fail (gmm != NULL && tape != NULL, NULL);
  return fg_op_log_softmax (tape, fg_gmm_op_log_prob_components (gmm, tape, z));
}
