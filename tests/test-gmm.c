/* SPDX-License-Identifier: MIT */
/* flowgmm tests — the latent Gaussian mixture and the Bayes classifier (core/method/gmm.c).
 *
 * - the component, class-conditional and mixture log-densities against closed forms in double;
 * - eq. 5: the posterior is the softmax of the log-densities, and the prediction its argmax
 *   (the nearest mean);
 * - the tape ops agree with the plain helpers, and their gradients (into z, the means and σ)
 *   agree with central finite differences;
 * - the mean placements (random, the authors' tabular rule, circle, data, given).
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include <flowgmm/flowgmm.h>

#include "gradcheck.h"

#define LOG_2PI 1.8378770664093454835606594728112

/* A mixture with random means and the given σ, in its own set. */
static FgGmm *
make_gmm (FgWeightSet *set, guint K, gsize D, double sigma, guint64 seed)
{
  FgRng rng;
  FgGmm *gmm = fg_gmm_new (K, D, sigma, set);
  fg_rng_init (&rng, seed, 1);
  fg_gmm_init_means (gmm, FG_GMM_MEANS_RANDOM, 1.5, 0.0, &rng);
  return gmm;
}

static FgTensor *
random_latents (gsize N, gsize D, float std, guint64 seed)
{
  FgTensor *z = fg_tensor_new_2d (N, D);
  FgRng rng;
  fg_rng_init (&rng, seed, 2);
  fg_rng_fill_normal (&rng, z->data, N * D, 0.0f, std);
  return z;
}

/* log N(z; μ, σ²I) in double, straight from the definition. */
static double
ref_log_normal (const float *z, const float *mu, gsize D, double sigma)
{
  double q = 0.0;
  for (gsize j = 0; j < D; j++)
    q += ((double) z[j] - mu[j]) * ((double) z[j] - mu[j]);
  return -q / (2.0 * sigma * sigma) - (double) D * log (sigma) - 0.5 * (double) D * LOG_2PI;
}

static void
test_log_densities (void)
{
  const guint K = 4;
  const gsize D = 7, N = 25;
  const double sigmas[] = { 1.0, 1.3132616875182228, 0.25 };
  for (guint si = 0; si < G_N_ELEMENTS (sigmas); si++)
    {
      g_autoptr (FgWeightSet) set = fg_weight_set_new ();
      g_autoptr (FgGmm) gmm = make_gmm (set, K, D, sigmas[si], 10 + si);
      g_autoptr (FgTensor) z = random_latents (N, D, 2.0f, 20 + si);
      g_autofree double *comp = g_new (double, N * K);
      g_autofree double *mix = g_new (double, N);
      const float *mu = fg_gmm_get_means (gmm)->value.data;

      g_assert_cmpfloat (fg_gmm_get_sigma (gmm), ==, sigmas[si]);
      fg_gmm_log_prob_components (gmm, z, comp);
      fg_gmm_log_prob (gmm, z, mix);
      for (gsize i = 0; i < N; i++)
        {
          double lse = 0.0, ref[4];
          for (guint k = 0; k < K; k++)
            {
              ref[k] = ref_log_normal (fg_tensor_row (z, i), mu + k * D, D, sigmas[si]);
              g_assert_cmpfloat_with_epsilon (comp[i * K + k], ref[k], 1e-9 * (1 + fabs (ref[k])));
              lse += exp (ref[k]);
            }
          /* log p(z) = log Σ_k (1/K) N(z; μ_k) */
          g_assert_cmpfloat_with_epsilon (mix[i], log (lse / K), 1e-9 * (1 + fabs (mix[i])));
        }
    }
}

static void
test_posterior_is_softmax (void)
{
  const guint K = 5;
  const gsize D = 3, N = 40;
  g_autoptr (FgWeightSet) set = fg_weight_set_new ();
  g_autoptr (FgGmm) gmm = make_gmm (set, K, D, 0.8, 3);
  g_autoptr (FgTensor) z = random_latents (N, D, 1.5f, 4);
  g_autofree double *comp = g_new (double, N * K);
  g_autofree float *proba = g_new (float, N * K);
  g_autofree gint32 *labels = g_new (gint32, N);
  const float *mu = fg_gmm_get_means (gmm)->value.data;

  fg_gmm_log_prob_components (gmm, z, comp);
  fg_gmm_predict (gmm, z, labels, proba);
  for (gsize i = 0; i < N; i++)
    {
      double m = -INFINITY, s = 0.0, sum_p = 0.0, best_d = INFINITY;
      gint32 nearest = -1;
      for (guint k = 0; k < K; k++)
        m = MAX (m, comp[i * K + k]);
      for (guint k = 0; k < K; k++)
        s += exp (comp[i * K + k] - m);
      for (guint k = 0; k < K; k++)
        {
          /* eq. 5: N(f(x)|μ_y) / Σ_k N(f(x)|μ_k) */
          double p = exp (comp[i * K + k] - m) / s;
          double d = 0.0;
          g_assert_cmpfloat_with_epsilon (proba[i * K + k], p, 1e-6);
          sum_p += proba[i * K + k];
          for (gsize j = 0; j < D; j++)
            d += pow (fg_tensor_row (z, i)[j] - mu[k * D + j], 2);
          if (d < best_d)
            best_d = d, nearest = (gint32) k;
        }
      g_assert_cmpfloat_with_epsilon (sum_p, 1.0, 1e-5);
      g_assert_cmpint (labels[i], ==, nearest);
    }
}

static void
test_tape_ops_match_plain (void)
{
  const guint K = 3;
  const gsize D = 6, N = 12;
  g_autoptr (FgWeightSet) set = fg_weight_set_new ();
  g_autoptr (FgGmm) gmm = make_gmm (set, K, D, 1.3, 5);
  g_autoptr (FgTensor) z = random_latents (N, D, 1.0f, 6);
  g_autoptr (FgTape) tape = fg_tape_new ();
  g_autofree double *comp = g_new (double, N * K);
  g_autofree double *mix = g_new (double, N);
  gint32 y[12];
  FgVar *zv = fg_tape_constant (tape, z);
  FgVar *c = fg_gmm_op_log_prob_components (gmm, tape, zv);
  FgVar *m = fg_gmm_op_log_prob (gmm, tape, zv);
  FgVar *post = fg_gmm_op_log_posterior (gmm, tape, zv);
  FgVar *cls;

  for (gsize i = 0; i < N; i++)
    y[i] = (gint32) (i % (K + 1)) - 1; /* includes -1: no term */
  cls = fg_gmm_op_log_prob_class (gmm, tape, zv, y);
  g_assert_nonnull (c);
  g_assert_nonnull (m);
  g_assert_nonnull (post);
  g_assert_nonnull (cls);
  fg_gmm_log_prob_components (gmm, z, comp);
  fg_gmm_log_prob (gmm, z, mix);
  for (gsize i = 0; i < N; i++)
    {
      double sum = 0.0;
      for (guint k = 0; k < K; k++)
        {
          g_assert_cmpfloat_with_epsilon (c->value.data[i * K + k], comp[i * K + k],
                                          1e-5 * (1 + fabs (comp[i * K + k])));
          sum += exp (post->value.data[i * K + k]);
        }
      g_assert_cmpfloat_with_epsilon (sum, 1.0, 1e-5);
      g_assert_cmpfloat_with_epsilon (m->value.data[i], mix[i], 1e-5 * (1 + fabs (mix[i])));
      if (y[i] < 0)
        g_assert_cmpfloat (cls->value.data[i], ==, 0.0f);
      else
        g_assert_cmpfloat_with_epsilon (cls->value.data[i], comp[i * K + y[i]],
                                        1e-5 * (1 + fabs (comp[i * K + y[i]])));
    }
}

typedef struct {
  FgGmm *gmm;
  int which; /* 0: components, 1: mixture, 2: class, 3: log posterior */
  const gint32 *y;
} GmmBuild;

static FgVar *
build_gmm (FgTape *tape, FgVar *const *inputs, gpointer user_data)
{
  GmmBuild *b = user_data;
  switch (b->which)
    {
    case 0:
      return fg_gmm_op_log_prob_components (b->gmm, tape, inputs[0]);
    case 1:
      return fg_gmm_op_log_prob (b->gmm, tape, inputs[0]);
    case 2:
      return fg_gmm_op_log_prob_class (b->gmm, tape, inputs[0], b->y);
    default:
      return fg_gmm_op_log_posterior (b->gmm, tape, inputs[0]);
    }
}

/* Gradients into z, the means and σ (through softplus) against finite differences. */
static void
test_gradcheck (void)
{
  const guint K = 3;
  const gsize D = 4, N = 6;
  const gint32 y[6] = { 0, 2, 1, -1, 2, 0 };
  for (int trainable = 0; trainable < 2; trainable++)
    for (int which = 0; which < 4; which++)
      {
        g_autoptr (FgWeightSet) set = fg_weight_set_new ();
        g_autoptr (FgWeightSet) zset = fg_weight_set_new ();
        g_autoptr (FgGmm) gmm = make_gmm (set, K, D, 0.9, 7);
        FgWeight *zw = fg_weight_set_add_2d (zset, "z", N, D, FALSE);
        FgRng rng;
        GmmBuild b = { gmm, which, y };
        FgWeight *inputs[3];
        GcOptions opts;
        char what[64];
        fg_rng_init (&rng, 8, 0);
        fg_weight_init_normal (zw, &rng, 1.0f);
        fg_gmm_set_trainable (gmm, trainable, trainable);
        inputs[0] = zw;
        inputs[1] = fg_gmm_get_means (gmm);
        inputs[2] = fg_gmm_get_sigma_raw (gmm);
        gc_options_init (&opts);
        opts.eps = 1e-3;
        g_snprintf (what, sizeof what, "gmm op %d trainable %d", which, trainable);
        gc_assert (inputs, trainable ? 3 : 1, build_gmm, &b, &opts, what);
      }
}

static void
test_trainable_sigma (void)
{
  g_autoptr (FgWeightSet) set = fg_weight_set_new ();
  g_autoptr (FgGmm) gmm = fg_gmm_new (2, 3, 1.0, set);
  FgWeight *c = fg_gmm_get_sigma_raw (gmm);
  g_assert_false (c->trainable);
  g_assert_false (fg_gmm_get_means (gmm)->trainable);
  /* the authors' default raw value log(e − 1) gives σ = 1 */
  g_assert_cmpfloat_with_epsilon (c->value.data[0], log (G_E - 1.0), 1e-6);
  fg_gmm_set_trainable (gmm, TRUE, TRUE);
  g_assert_true (c->trainable);
  g_assert_true (fg_gmm_get_means (gmm)->trainable);
  g_assert_cmpfloat_with_epsilon (fg_gmm_get_sigma (gmm), 1.0, 1e-6);
  c->value.data[0] = 1.0f; /* the authors' tabular raw value: σ = softplus(1) */
  g_assert_cmpfloat_with_epsilon (fg_gmm_get_sigma (gmm), 1.3132616875182228, 1e-6);
  fg_gmm_set_trainable (gmm, FALSE, FALSE);
  g_assert_cmpfloat_with_epsilon (fg_gmm_get_sigma (gmm), 1.3132616875182228, 1e-6);
  fg_gmm_set_sigma (gmm, 2.0);
  g_assert_cmpfloat (fg_gmm_get_sigma (gmm), ==, 2.0);
  g_assert_cmpstr (fg_weight_set_get (set, 0)->name, ==, "gmm.means");
  g_assert_cmpstr (fg_weight_set_get (set, 1)->name, ==, "gmm.sigma_raw");
}

static void
test_means_tabular (void)
{
  FgRng rng;
  fg_rng_init (&rng, 3, 0);
  {
    g_autoptr (FgWeightSet) set = fg_weight_set_new ();
    g_autoptr (FgGmm) gmm = fg_gmm_new (2, 21, 1.3132616875182228, set);
    const float *mu = fg_gmm_get_means (gmm)->value.data;
    double norm = 0.0, dist = 0.0;
    fg_gmm_init_means (gmm, FG_GMM_MEANS_TABULAR, 1.0, 0.0, &rng);
    for (gsize j = 0; j < 21; j++)
      {
        norm += (double) mu[j] * mu[j];
        dist += pow ((double) mu[j] - mu[21 + j], 2);
        g_assert_cmpfloat (mu[21 + j], ==, -mu[j]);
      }
    g_assert_cmpfloat_with_epsilon (sqrt (norm), 3.75, 1e-5);
    g_assert_cmpfloat_with_epsilon (sqrt (dist), 7.5, 1e-5);
  }
  {
    /* K > 2: 0.56·N(0, I); with 4 × 768 draws the sample std is 0.56 within ~1.5 %. */
    g_autoptr (FgWeightSet) set = fg_weight_set_new ();
    g_autoptr (FgGmm) gmm = fg_gmm_new (4, 768, 1.0, set);
    const float *mu = fg_gmm_get_means (gmm)->value.data;
    double ss = 0.0;
    fg_gmm_init_means (gmm, FG_GMM_MEANS_TABULAR, 1.0, 0.0, &rng);
    for (gsize j = 0; j < 4 * 768; j++)
      ss += (double) mu[j] * mu[j];
    g_assert_cmpfloat_with_epsilon (sqrt (ss / (4 * 768)), 0.56, 0.56 * 0.05);
  }
}

static void
test_means_random_circle_given_data (void)
{
  g_autoptr (FgWeightSet) set = fg_weight_set_new ();
  g_autoptr (FgGmm) gmm = fg_gmm_new (3, 2, 1.0, set);
  g_autoptr (GError) error = NULL;
  const float *mu = fg_gmm_get_means (gmm)->value.data;
  FgRng rng, rng2;
  float ref[6];

  /* random: r·N(0, I) from the given stream only (reproducible) */
  fg_rng_init (&rng, 5, 9);
  fg_rng_init (&rng2, 5, 9);
  fg_gmm_init_means (gmm, FG_GMM_MEANS_RANDOM, 2.0, 0.0, &rng);
  fg_rng_fill_normal (&rng2, ref, 6, 0.0f, 2.0f);
  for (int j = 0; j < 6; j++)
    g_assert_cmpfloat (mu[j], ==, ref[j]);

  /* circle: radius 5.5 at angles 90° + 120°·k (the authors' 8-Gaussians placement, rotated) */
  fg_gmm_init_means (gmm, FG_GMM_MEANS_CIRCLE, 5.5, G_PI / 2, NULL);
  for (int k = 0; k < 3; k++)
    {
      double th = G_PI / 2 + 2 * G_PI * k / 3;
      g_assert_cmpfloat_with_epsilon (mu[2 * k], 5.5 * cos (th), 1e-5);
      g_assert_cmpfloat_with_epsilon (mu[2 * k + 1], 5.5 * sin (th), 1e-5);
    }

  /* given */
  g_assert_true (fg_gmm_set_means_from_string (gmm, "-3.5, -3.5; 3.5,3.5 ;0,1e-1", &error));
  g_assert_no_error (error);
  g_assert_cmpfloat (mu[0], ==, -3.5f);
  g_assert_cmpfloat (mu[3], ==, 3.5f);
  g_assert_cmpfloat (mu[5], ==, 0.1f);
  g_assert_false (fg_gmm_set_means_from_string (gmm, "1,2;3,4", &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM);
  g_clear_error (&error);
  g_assert_false (fg_gmm_set_means_from_string (gmm, "1,2;3,4;5", &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM);
  g_clear_error (&error);
  g_assert_false (fg_gmm_set_means_from_string (gmm, "1,2;3,x;5,6", &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM);
  g_clear_error (&error);
  g_assert_cmpfloat (mu[0], ==, -3.5f); /* untouched on error */

  /* data: r × the class means; class 2 has no point and gets r·N(0, I) */
  {
    float zd[] = { 1, 2, 3, 4, 10, 10, -1, -1 };
    gint32 y[] = { 0, 0, 1, -1 };
    FgTensor z = fg_tensor_wrap_2d (zd, 4, 2);
    guint missing = 0;
    fg_gmm_init_means_from_latents (gmm, &z, y, 0.5, &rng, &missing);
    g_assert_cmpuint (missing, ==, 1);
    g_assert_cmpfloat (mu[0], ==, 1.0f);  /* 0.5 · (1 + 3)/2 */
    g_assert_cmpfloat (mu[1], ==, 1.5f);  /* 0.5 · (2 + 4)/2 */
    g_assert_cmpfloat (mu[2], ==, 5.0f);
    g_assert_cmpfloat (mu[3], ==, 5.0f);
  }
}

static void
test_means_init_names (void)
{
  FgGmmMeansInit init;
  g_autoptr (GError) error = NULL;
  for (int i = FG_GMM_MEANS_RANDOM; i <= FG_GMM_MEANS_GIVEN; i++)
    {
      g_assert_true (fg_gmm_means_init_from_string (fg_gmm_means_init_to_string (i), &init, NULL));
      g_assert_cmpint (init, ==, i);
    }
  g_assert_false (fg_gmm_means_init_from_string ("kmeans", &init, &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM);
}

/* Images: the latent is N×C×H×W with C·H·W = D. */
static void
test_4d_latent (void)
{
  g_autoptr (FgWeightSet) set = fg_weight_set_new ();
  g_autoptr (FgGmm) gmm = make_gmm (set, 2, 12, 1.0, 1);
  g_autoptr (FgTensor) z4 = fg_tensor_new ((guint) 4, (gsize[]){ 3, 3, 2, 2 });
  g_autoptr (FgTensor) z2 = NULL;
  gint32 l4[3], l2[3];
  FgRng rng;
  fg_rng_init (&rng, 1, 1);
  fg_rng_fill_normal (&rng, z4->data, 36, 0.0f, 1.0f);
  z2 = fg_tensor_new_2d (3, 12);
  memcpy (z2->data, z4->data, 36 * sizeof (float));
  fg_gmm_predict (gmm, z4, l4, NULL);
  fg_gmm_predict (gmm, z2, l2, NULL);
  g_assert_cmpmem (l4, sizeof l4, l2, sizeof l2);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/gmm/log-densities", test_log_densities);
  g_test_add_func ("/gmm/posterior-is-softmax", test_posterior_is_softmax);
  g_test_add_func ("/gmm/tape-ops-match-plain", test_tape_ops_match_plain);
  g_test_add_func ("/gmm/gradcheck", test_gradcheck);
  g_test_add_func ("/gmm/trainable-sigma", test_trainable_sigma);
  g_test_add_func ("/gmm/means/tabular", test_means_tabular);
  g_test_add_func ("/gmm/means/random-circle-given-data", test_means_random_circle_given_data);
  g_test_add_func ("/gmm/means/names", test_means_init_names);
  g_test_add_func ("/gmm/4d-latent", test_4d_latent);
  return g_test_run ();
}
