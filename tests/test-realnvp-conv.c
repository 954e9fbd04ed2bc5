/* SPDX-License-Identifier: MIT */
/* flowgmm tests — the realnvp-conv flow plugin (plugins/flows/realnvp-conv.c), loaded through the
 * registry as a user would.  Single layers are built with the `structure` key.
 *
 * - every layer and the whole multi-scale flow (each variant): ‖f⁻¹(f(x)) − x‖∞ < 1e-4;
 * - the log-det against log|det J| of the Jacobian (reverse mode, column by column) on 1×4×4 and
 *   2×4×4 images;
 * - gradients of z and the log-det with respect to every trainable weight against finite
 *   differences, in training mode (batch statistics);
 * - batch norm: training mode couples the examples of a batch, evaluation mode uses the
 *   running statistics (updated with momentum 0.1) and treats each example alone;
 * - squeeze and factor-out are the documented exact permutations;
 * - the 1×1 convolution: z = W x per pixel and log-det = H·W·log|det W|, W rebuilt from the
 *   weights and its determinant taken by the test's own LU in double;
 * - ActNorm's data-dependent init gives per-channel mean 0 and standard deviation 1;
 * - parameter counts of the authors' MNIST and CIFAR models;
 * - the partial passes forward_to / inverse_from: image shapes at every layer, round trips, and
 *   eq. 8 through the method (α = 0 gives the input back);
 * - a short seeded MNIST run through the flowgmm method learns (skipped without the data).
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <flowgmm/flowgmm.h>

#include "gradcheck.h"
#include "registry-helpers.h"

typedef struct {
  const FgFlowVTable *vt;
  gpointer self;
  FgWeightSet *weights;
  gsize C, H, W, D;
} Flow;

static void
flow_init (Flow *f, gsize C, gsize H, gsize W, guint64 seed, const char *const *settings)
{
  g_autoptr (GError) error = NULL;
  const FgComponent *c = fg_registry_find (th_registry (), FG_KIND_FLOW, "realnvp-conv", &error);
  g_autoptr (FgParams) params = NULL;
  FgSampleShape shape = { 3, { C, H, W } };
  FgRng rng;
  g_assert_no_error (error);
  g_assert_nonnull (c);
  params = th_params_new (c, settings);
  fg_rng_init (&rng, seed, 0);
  f->vt = c->vtable;
  f->weights = fg_weight_set_new ();
  f->C = C;
  f->H = H;
  f->W = W;
  f->D = C * H * W;
  f->self = f->vt->create (params, &shape, f->weights, &rng, &error);
  g_assert_no_error (error);
  g_assert_nonnull (f->self);
}

static void
flow_clear (Flow *f)
{
  f->vt->destroy (f->self);
  fg_weight_set_free (f->weights);
}

static FgTensor *
random_images (gsize N, gsize C, gsize H, gsize W, guint64 seed, gboolean pixels)
{
  FgTensor *x = fg_tensor_new ((guint) 4, (gsize[]){ N, C, H, W });
  FgRng rng;
  fg_rng_init (&rng, seed, 3);
  for (gsize i = 0; i < fg_tensor_numel (x); i++)
    x->data[i] = pixels ? (float) fg_rng_below (&rng, 256) / 255.0f : (float) fg_rng_normal (&rng);
  return x;
}

/* Move the flow away from its initialisation: rescales 1.5, random output convolutions and
 * biases, ActNorm and 1×1 parameters off their defaults. */
static void
perturb (Flow *f, guint64 seed)
{
  FgRng rng;
  fg_rng_init (&rng, seed, 9);
  for (guint i = 0; i < fg_weight_set_len (f->weights); i++)
    {
      FgWeight *w = fg_weight_set_get (f->weights, i);
      if (g_str_has_suffix (w->name, ".rescale.weight_g"))
        fg_weight_init_const (w, 1.5f);
      else if (strstr (w->name, "out_conv.weight_g") != NULL && strstr (w->name, "blocks") == NULL)
        fg_weight_init_const (w, 1.0f);
      else if (strstr (w->name, ".actnorm.") != NULL || g_str_has_suffix (w->name, "conv1x1.bias")
               || g_str_has_suffix (w->name, "conv1x1.log_s"))
        fg_weight_init_uniform (w, &rng, 0.5f);
    }
}

/* One training-mode pass (updates the batch-norm running statistics). */
static void
flow_train_pass (Flow *f, const FgTensor *x, guint64 seed)
{
  g_autoptr (FgTape) tape = fg_tape_new ();
  g_autoptr (GError) error = NULL;
  FgRng rng;
  FgFlowRun run = { .train = TRUE, .rng = &rng };
  FgVar *ld = NULL;
  fg_rng_init (&rng, seed, 5);
  fg_tape_set_grad_enabled (tape, FALSE);
  g_assert_nonnull (f->vt->forward (f->self, tape, fg_tape_constant (tape, x), &run, &ld, &error));
  g_assert_no_error (error);
}

/* Forward (evaluation unless train), z and log-det copied out. */
static void
flow_run (Flow *f, const FgTensor *x, gboolean train, FgTensor *z, float *logdet)
{
  g_autoptr (FgTape) tape = fg_tape_new ();
  g_autoptr (GError) error = NULL;
  FgRng rng;
  FgFlowRun run = { .train = train, .rng = train ? &rng : NULL };
  FgVar *ld = NULL, *zv;
  fg_rng_init (&rng, 77, 5);
  fg_tape_set_grad_enabled (tape, FALSE);
  zv = f->vt->forward (f->self, tape, fg_tape_constant (tape, x), &run, &ld, &error);
  g_assert_no_error (error);
  g_assert_nonnull (zv);
  g_assert_true (fg_tensor_same_shape (&zv->value, x));
  g_assert_cmpuint (fg_tensor_rows (&ld->value), ==, fg_tensor_rows (x));
  if (z != NULL)
    fg_tensor_copy_into (z, &zv->value);
  for (gsize i = 0; logdet && i < fg_tensor_rows (x); i++)
    logdet[i] = fg_tensor_row (&ld->value, i)[0];
}

static FgTensor *
flow_inverse (Flow *f, const FgTensor *z)
{
  g_autoptr (FgTape) tape = fg_tape_new ();
  g_autoptr (GError) error = NULL;
  fg_tape_set_grad_enabled (tape, FALSE);
  FgVar *x = f->vt->inverse (f->self, tape, fg_tape_constant (tape, z), &error);
  g_assert_no_error (error);
  g_assert_nonnull (x);
  return fg_tensor_copy (&x->value);
}

/* ---------------------------------------------------------------------- round trips */

typedef struct {
  const char *what;
  gsize C, H, W;
  const char *settings[6];
  gboolean pixels;  /* inputs k/255 (for the logit layer) */
  gboolean changes; /* f is not the identity */
} Config;

static const Config configs[] = {
  { "logit", 1, 4, 4, { "structure=logit", "dequant_eval=mid", NULL }, TRUE, TRUE },
  { "checker", 1, 4, 4, { "structure=checker", "mid_channels=4", "blocks=1", NULL }, FALSE, TRUE },
  { "checker-r", 2, 4, 4, { "structure=checker-r", "mid_channels=4", "blocks=2", NULL }, FALSE,
    TRUE },
  { "channel", 4, 2, 2, { "structure=channel", "mid_channels=4", "blocks=1", NULL }, FALSE, TRUE },
  { "channel-r", 2, 4, 4, { "structure=channel-r", "mid_channels=3", "blocks=0", NULL }, FALSE,
    TRUE },
  { "squeeze", 2, 4, 6, { "structure=squeeze", NULL }, FALSE, TRUE },
  { "squeeze+split", 1, 4, 4, { "structure=squeeze,split", NULL }, FALSE, TRUE },
  { "actnorm", 3, 4, 4, { "structure=actnorm", NULL }, FALSE, TRUE },
  { "1x1", 3, 4, 4, { "structure=1x1", NULL }, FALSE, TRUE },
  { "affine 2 scales", 1, 4, 4,
    { "scales=2", "mid_channels=4", "blocks=1", "dequant_eval=mid", NULL }, TRUE, TRUE },
  { "affine 3 scales", 1, 8, 8,
    { "scales=3", "mid_channels=2", "blocks=1", "dequant_eval=mid", NULL }, TRUE, TRUE },
  { "1x1 2 scales", 2, 4, 4,
    { "scales=2", "mid_channels=4", "blocks=1", "variant=1x1", "dequant_eval=mid", NULL }, TRUE,
    TRUE },
  { "actnorm 2 scales", 1, 4, 4,
    { "scales=2", "mid_channels=4", "blocks=1", "variant=actnorm", "dequant_eval=mid", NULL },
    TRUE, TRUE },
  { "no logit", 1, 4, 4, { "scales=2", "mid_channels=4", "blocks=1", "logit=false", NULL }, FALSE,
    TRUE },
};

static void
test_roundtrip (void)
{
  for (guint i = 0; i < G_N_ELEMENTS (configs); i++)
    {
      const Config *cf = &configs[i];
      const gsize N = 5;
      Flow f;
      flow_init (&f, cf->C, cf->H, cf->W, 3 + i, cf->settings);
      perturb (&f, 40 + i);
      g_autoptr (FgTensor) x = random_images (N, cf->C, cf->H, cf->W, 100 + i, cf->pixels);
      g_autoptr (FgTensor) z = fg_tensor_new (4, x->shape);
      flow_train_pass (&f, x, 1); /* non-trivial running statistics */
      flow_run (&f, x, FALSE, z, NULL);
      g_autoptr (FgTensor) xr = flow_inverse (&f, z);
      const double err = fg_tensor_max_abs_diff (xr, x);
      g_test_message ("%s: ‖f⁻¹(f(x)) − x‖∞ = %g, ‖z − x‖∞ = %g", cf->what, err,
                      fg_tensor_max_abs_diff (z, x));
      if (!(err < 1e-4))
        g_error ("%s: ‖f⁻¹(f(x)) − x‖∞ = %g", cf->what, err);
      if (cf->changes)
        g_assert_cmpfloat (fg_tensor_max_abs_diff (z, x), >, 1e-2);
      flow_clear (&f);
    }
}

/* ---------------------------------------------------------------------- log-det vs Jacobian */

static void
test_logdet_jacobian (void)
{
  for (guint i = 0; i < G_N_ELEMENTS (configs); i++)
    {
      const Config *cf = &configs[i];
      if (cf->H * cf->W > 16 || cf->C > 2 || (cf->C == 2 && cf->H * cf->W != 16))
        continue; /* 1×4×4 and 2×4×4 */
      const gsize N = 2, D = cf->C * cf->H * cf->W;
      Flow f;
      flow_init (&f, cf->C, cf->H, cf->W, 13 + i, cf->settings);
      perturb (&f, 60 + i);
      g_autoptr (FgTensor) x0 = random_images (N, cf->C, cf->H, cf->W, 200 + i, cf->pixels);
      flow_train_pass (&f, x0, 2);
      g_autoptr (FgWeightSet) xset = fg_weight_set_new ();
      FgWeight *xw = fg_weight_set_add (xset, "x", 4, x0->shape, FALSE);
      fg_tensor_copy_into (&xw->value, x0);
      g_autoptr (FgTape) tape = fg_tape_new ();
      g_autoptr (GError) error = NULL;
      FgFlowRun run = { .train = FALSE, .rng = NULL };
      FgVar *ld = NULL;
      FgVar *z = f.vt->forward (f.self, tape, fg_tape_weight (tape, xw), &run, &ld, &error);
      g_assert_no_error (error);
      g_autofree double *jac = g_new (double, N * D * D);
      g_autofree float *seed = g_new0 (float, N * D);
      for (gsize j = 0; j < D; j++)
        {
          FgTensor s = fg_tensor_wrap (seed, 4, x0->shape);
          memset (seed, 0, N * D * sizeof (float));
          for (gsize n = 0; n < N; n++)
            seed[n * D + j] = 1.0f;
          fg_weight_set_zero_grad (xset);
          g_assert_true (fg_tape_backward_seed (tape, z, &s, &error));
          for (gsize n = 0; n < N; n++)
            for (gsize k = 0; k < D; k++)
              jac[n * D * D + j * D + k] = xw->grad.data[n * D + k];
        }
      for (gsize n = 0; n < N; n++)
        {
          /* The logit layer's log-det is that of u = (255 x + ν)/256 ↦ y (REFERENCE §2.2: the
           * 1/256 is the loss's −D log 256), so it exceeds log|det ∂y/∂x| by D log (256/255). */
          const double want = gc_log_abs_det (jac + n * D * D, D)
                              + (cf->pixels ? (double) D * log (256.0 / 255.0) : 0.0);
          const double got = ld->value.data[n];
          g_test_message ("%s row %" G_GSIZE_FORMAT ": logdet %g, log|det J| %g", cf->what, n,
                          got, want);
          if (!(fabs (got - want) < 1e-3 * (1.0 + fabs (want))))
            g_error ("%s row %" G_GSIZE_FORMAT ": logdet %g, log|det J| %g", cf->what, n, got,
                     want);
          if (strcmp (cf->what, "squeeze") != 0 && strcmp (cf->what, "squeeze+split") != 0)
            g_assert_cmpfloat (fabs (got), >, 1e-2);
        }
      flow_clear (&f);
    }
}

/* ---------------------------------------------------------------------- gradients */

typedef struct {
  Flow *f;
  FgTensor *x;
  gboolean train;
} GradCase;

/* [N, D + 1]: z and the log-det (no noise: no logit layer). */
static FgVar *
grad_build (FgTape *tape, FgVar *const *inputs, gpointer data)
{
  GradCase *g = data;
  FgRng rng;
  FgFlowRun run = { .train = g->train, .rng = &rng };
  FgVar *ld = NULL;
  (void) inputs; /* the flow makes its own leaves of the same weights */
  fg_rng_init (&rng, 1, 1);
  FgVar *z = g->f->vt->forward (g->f->self, tape, fg_tape_constant (tape, g->x), &run, &ld, NULL);
  const gsize N = fg_tensor_rows (g->x);
  return fg_op_concat (tape, fg_op_reshape (tape, z, 2, (gsize[]){ N, g->f->D }), ld);
}

static void
test_gradients (void)
{
  static const struct {
    const char *what;
    gsize C, H, W;
    const char *settings[5];
    gboolean train;
  } cases[] = {
    { "checker", 1, 4, 4, { "structure=checker", "mid_channels=2", "blocks=1", NULL }, FALSE },
    { "channel-r", 4, 4, 4, { "structure=channel-r", "mid_channels=2", "blocks=1", NULL }, FALSE },
    { "actnorm,1x1,checker-r,squeeze,split,channel", 2, 4, 4,
      { "structure=actnorm,1x1,checker-r,squeeze,split,channel", "mid_channels=2", "blocks=0",
        NULL }, FALSE },
    { "checker, training mode", 1, 4, 4,
      { "structure=checker", "mid_channels=3", "blocks=1", NULL }, TRUE },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      Flow f;
      flow_init (&f, cases[i].C, cases[i].H, cases[i].W, 21 + i, cases[i].settings);
      perturb (&f, 80 + i);
      g_autoptr (FgTensor) x = random_images (4, cases[i].C, cases[i].H, cases[i].W, 360 + i,
                                              FALSE);
      flow_train_pass (&f, x, 3); /* running statistics for the evaluation-mode check */
      GradCase g = { &f, x, cases[i].train };
      g_autoptr (GPtrArray) ws = g_ptr_array_new ();
      for (guint k = 0; k < fg_weight_set_len (f.weights); k++)
        if (fg_weight_set_get (f.weights, k)->trainable)
          g_ptr_array_add (ws, fg_weight_set_get (f.weights, k));
      GcOptions opts;
      gc_options_init (&opts);
      opts.eps = 1e-3;
      opts.atol = 5e-3;
      opts.rtol = 2e-2;
      /* gc_check takes at most 16 weights at once; the flow reads all of them itself.  A
       * central difference that straddles a ReLU kink is wrong by O(1), so up to 2 % of the
       * elements may miss (a wrong backward misses most elements of the weights it feeds). */
      gsize checked = 0, failed = 0;
      for (guint k = 0; k < ws->len; k += 16)
        {
          GcResult res;
          gc_check ((FgWeight *const *) ws->pdata + k, MIN (16, ws->len - k), grad_build, &g,
                    &opts, &res);
          g_test_message ("gradcheck %s, weights %u..: %" G_GSIZE_FORMAT " elements, %"
                          G_GSIZE_FORMAT " failed, max err/tol %.3g (%s)",
                          cases[i].what, k, res.n_checked, res.n_failed, res.max_ratio,
                          res.worst);
          checked += res.n_checked;
          failed += res.n_failed;
        }
      g_test_message ("gradcheck %s: %" G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT " failed",
                      cases[i].what, failed, checked);
      g_assert_cmpuint (checked, >, 100);
      g_assert_cmpuint (failed * 50, <=, checked);
      flow_clear (&f);
    }
}

/* ---------------------------------------------------------------------- batch norm modes */

static void
test_batchnorm_modes (void)
{
  const char *settings[] = { "structure=checker", "mid_channels=4", "blocks=1", NULL };
  Flow f;
  flow_init (&f, 1, 4, 4, 31, settings);
  perturb (&f, 31);
  g_autoptr (FgTensor) x = random_images (4, 1, 4, 4, 400, FALSE);
  g_autoptr (FgTensor) x2 = fg_tensor_copy (x);
  g_autoptr (FgTensor) za = fg_tensor_new (4, x->shape), zb = fg_tensor_new (4, x->shape);
  /* change examples 1..3 only */
  for (gsize j = 16; j < 64; j++)
    x2->data[j] = 3.0f * x2->data[j] + 1.0f;

  /* the running statistics start at 0 / 1 and move by momentum 0.1 towards the batch's */
  FgWeight *rm = fg_weight_set_lookup (f.weights, "layer0.st_net.in_norm.running_mean");
  FgWeight *rv = fg_weight_set_lookup (f.weights, "layer0.st_net.in_norm.running_var");
  g_assert_nonnull (rm);
  g_assert_nonnull (rv);
  g_assert_false (rm->trainable);
  flow_train_pass (&f, x, 1);
  {
    /* the stem's BN sees x ⊙ b: mean and unbiased variance over the 64 values */
    double s = 0.0, q = 0.0;
    for (gsize n = 0; n < 4; n++)
      for (gsize i = 0; i < 4; i++)
        for (gsize j = 0; j < 4; j++)
          {
            const double v = (i + j) % 2 == 1 ? x->data[n * 16 + i * 4 + j] : 0.0;
            s += v;
            q += v * v;
          }
    const double mu = s / 64, var = (q - 64 * mu * mu) / 63;
    g_assert_cmpfloat_with_epsilon (rm->value.data[0], 0.1 * mu, 1e-5);
    g_assert_cmpfloat_with_epsilon (rv->value.data[0], 0.9 + 0.1 * var, 1e-4);
  }

  /* training mode: example 0's output depends on the rest of the batch */
  flow_run (&f, x, TRUE, za, NULL);
  flow_run (&f, x2, TRUE, zb, NULL);
  double d0 = 0.0;
  for (gsize j = 0; j < 16; j++)
    d0 = MAX (d0, fabs (za->data[j] - zb->data[j]));
  g_assert_cmpfloat (d0, >, 1e-3);
  /* evaluation mode: it does not, and the running statistics do not move */
  const float rm_before = rm->value.data[0];
  flow_run (&f, x, FALSE, za, NULL);
  flow_run (&f, x2, FALSE, zb, NULL);
  for (gsize j = 0; j < 16; j++)
    g_assert_cmpfloat (za->data[j], ==, zb->data[j]);
  g_assert_cmpfloat (rm->value.data[0], ==, rm_before);
  flow_clear (&f);
}

/* ---------------------------------------------------------------------- permutations */

static void
test_permutations (void)
{
  {
    /* squeeze: z[n, 4c + 2dy + dx, i, j] = x[n, c, 2i + dy, 2j + dx] */
    const char *settings[] = { "structure=squeeze", NULL };
    const gsize N = 2, C = 2, H = 4, W = 6;
    Flow f;
    flow_init (&f, C, H, W, 1, settings);
    g_autoptr (FgTensor) x = random_images (N, C, H, W, 5, FALSE);
    g_autoptr (FgTensor) z = fg_tensor_new (4, x->shape);
    float ld[2];
    flow_run (&f, x, TRUE, z, ld);
    for (gsize n = 0; n < N; n++)
      {
        g_assert_cmpfloat (ld[n], ==, 0.0f);
        for (gsize c = 0; c < C; c++)
          for (gsize y = 0; y < H; y++)
            for (gsize xx = 0; xx < W; xx++)
              {
                const gsize oc = 4 * c + 2 * (y % 2) + xx % 2;
                const float want = x->data[((n * C + c) * H + y) * W + xx];
                const float got = z->data[n * C * H * W + (oc * (H / 2) + y / 2) * (W / 2) + xx / 2];
                g_assert_cmpfloat (got, ==, want);
              }
      }
    g_autoptr (FgTensor) xr = flow_inverse (&f, z);
    g_assert_cmpfloat (fg_tensor_max_abs_diff (xr, x), ==, 0.0);
    flow_clear (&f);
  }
  {
    /* squeeze then split: z = (channels [2, 4) of the squeezed image, then channels [0, 2)) */
    const char *settings[] = { "structure=squeeze,split", NULL };
    const gsize N = 2, H = 4, W = 4;
    Flow f;
    flow_init (&f, 1, H, W, 1, settings);
    g_autoptr (FgTensor) x = random_images (N, 1, H, W, 6, FALSE);
    g_autoptr (FgTensor) z = fg_tensor_new (4, x->shape);
    flow_run (&f, x, FALSE, z, NULL);
    for (gsize n = 0; n < N; n++)
      for (gsize y = 0; y < H; y++)
        for (gsize xx = 0; xx < W; xx++)
          {
            const gsize oc = 2 * (y % 2) + xx % 2;
            const gsize pos = (y / 2) * 2 + xx / 2;
            const gsize at = oc >= 2 ? (oc - 2) * 4 + pos : 8 + oc * 4 + pos;
            g_assert_cmpfloat (z->data[n * 16 + at], ==, x->data[n * 16 + y * W + xx]);
          }
    g_autoptr (FgTensor) xr = flow_inverse (&f, z);
    g_assert_cmpfloat (fg_tensor_max_abs_diff (xr, x), ==, 0.0);
    flow_clear (&f);
  }
}

/* ---------------------------------------------------------------------- 1×1 convolution */

static void
test_conv1x1 (void)
{
  const char *settings[] = { "structure=1x1", NULL };
  const gsize N = 3, C = 5, H = 2, W = 3, P = H * W;
  Flow f;
  flow_init (&f, C, H, W, 17, settings);
  perturb (&f, 17);
  /* move L and U off their initial values too */
  FgRng rng;
  fg_rng_init (&rng, 4, 4);
  fg_weight_init_uniform (fg_weight_set_lookup (f.weights, "layer0.conv1x1.lower"), &rng, 0.7f);
  fg_weight_init_uniform (fg_weight_set_lookup (f.weights, "layer0.conv1x1.upper"), &rng, 0.7f);
  const float *perm = fg_weight_set_lookup (f.weights, "layer0.conv1x1.perm")->value.data;
  const float *sign = fg_weight_set_lookup (f.weights, "layer0.conv1x1.sign")->value.data;
  const float *lo = fg_weight_set_lookup (f.weights, "layer0.conv1x1.lower")->value.data;
  const float *up = fg_weight_set_lookup (f.weights, "layer0.conv1x1.upper")->value.data;
  const float *ls = fg_weight_set_lookup (f.weights, "layer0.conv1x1.log_s")->value.data;
  const float *b = fg_weight_set_lookup (f.weights, "layer0.conv1x1.bias")->value.data;
  double A[25], Wm[25];
  /* A = L U', W[i, :] = A[perm[i], :] */
  for (gsize i = 0; i < C; i++)
    for (gsize j = 0; j < C; j++)
      {
        double acc = 0.0;
        for (gsize m = 0; m < C; m++)
          {
            const double l = m == i ? 1.0 : m < i ? lo[i * C + m] : 0.0;
            const double u = m == j ? sign[m] * exp (ls[m]) : m < j ? up[m * C + j] : 0.0;
            acc += l * u;
          }
        A[i * C + j] = acc;
      }
  gboolean seen[5] = { FALSE };
  for (gsize i = 0; i < C; i++)
    {
      const gsize r = (gsize) perm[i];
      g_assert_cmpuint (r, <, C);
      g_assert_false (seen[r]);
      seen[r] = TRUE;
      memcpy (Wm + i * C, A + r * C, C * sizeof (double));
    }
  double Wc[25];
  memcpy (Wc, Wm, sizeof Wc);
  const double slogdet = gc_log_abs_det (Wc, C);

  g_autoptr (FgTensor) x = random_images (N, C, H, W, 8, FALSE);
  g_autoptr (FgTensor) z = fg_tensor_new (4, x->shape);
  float ld[3];
  flow_run (&f, x, FALSE, z, ld);
  for (gsize n = 0; n < N; n++)
    {
      g_assert_cmpfloat_with_epsilon (ld[n], P * slogdet, 1e-4 * (1.0 + fabs (P * slogdet)));
      for (gsize o = 0; o < C; o++)
        for (gsize p = 0; p < P; p++)
          {
            double acc = b[o];
            for (gsize c = 0; c < C; c++)
              acc += Wm[o * C + c] * x->data[(n * C + c) * P + p];
            g_assert_cmpfloat_with_epsilon (z->data[(n * C + o) * P + p], acc, 1e-4);
          }
    }
  g_assert_cmpfloat (fabs (slogdet), >, 1e-2);
  flow_clear (&f);
}

/* ---------------------------------------------------------------------- ActNorm init */

static void
test_actnorm_init (void)
{
  const char *settings[] = { "structure=checker,actnorm", "mid_channels=4", "blocks=1", NULL };
  const gsize N = 6, C = 3, H = 4, W = 4, P = H * W;
  Flow f;
  flow_init (&f, C, H, W, 5, settings);
  perturb (&f, 5);
  g_autoptr (FgTensor) x = random_images (N, C, H, W, 9, FALSE);
  for (gsize i = 0; i < fg_tensor_numel (x); i++)
    x->data[i] = 4.0f * x->data[i] + 2.0f; /* far from mean 0 / std 1 */
  g_assert_true (f.vt->struct_size >= G_STRUCT_OFFSET (FgFlowVTable, init) + sizeof f.vt->init
                 && f.vt->init != NULL);
  {
    g_autoptr (FgTape) tape = fg_tape_new ();
    g_autoptr (GError) error = NULL;
    FgRng rng;
    FgFlowRun run = { .train = TRUE, .rng = &rng };
    fg_rng_init (&rng, 1, 2);
    g_assert_true (f.vt->init (f.self, tape, fg_tape_constant (tape, x), &run, &error));
    g_assert_no_error (error);
  }
  g_autoptr (FgTensor) z = fg_tensor_new (4, x->shape);
  flow_run (&f, x, TRUE, z, NULL);
  for (gsize c = 0; c < C; c++)
    {
      double s = 0.0, q = 0.0;
      for (gsize n = 0; n < N; n++)
        for (gsize p = 0; p < P; p++)
          s += z->data[(n * C + c) * P + p];
      const double mu = s / (N * P);
      for (gsize n = 0; n < N; n++)
        for (gsize p = 0; p < P; p++)
          q += pow (z->data[(n * C + c) * P + p] - mu, 2);
      g_assert_cmpfloat_with_epsilon (mu, 0.0, 1e-4);
      g_assert_cmpfloat_with_epsilon (sqrt (q / (N * P)), 1.0, 1e-4);
    }
  flow_clear (&f);
}

/* ---------------------------------------------------------------------- parameter counts */

static void
test_parameter_counts (void)
{
  /* The authors' RealNVP (2 scales, mid 64, 8 blocks): 19.6 M parameters on CIFAR (REFERENCE
   * §2.1); the running statistics of batch norm are not parameters. */
  Flow f;
  const char *none[] = { NULL };
  flow_init (&f, 3, 32, 32, 1, none);
  const gsize cifar = fg_weight_set_numel (f.weights);
  flow_clear (&f);
  flow_init (&f, 1, 28, 28, 1, none);
  const gsize mnist = fg_weight_set_numel (f.weights);
  flow_clear (&f);
  g_test_message ("trainable parameters: CIFAR %" G_GSIZE_FORMAT ", MNIST %" G_GSIZE_FORMAT, cifar,
                  mnist);
  g_assert_cmpuint (cifar, >=, 19550000);
  g_assert_cmpuint (cifar, <, 19650000);
  g_assert_cmpuint (mnist, <, cifar);
}

/* ---------------------------------------------------------------------- bad parameters */

static void
test_errors (void)
{
  g_autoptr (GError) error = NULL;
  const FgComponent *c = fg_registry_find (th_registry (), FG_KIND_FLOW, "realnvp-conv", NULL);
  FgRng rng;
  fg_rng_init (&rng, 1, 1);
  {
    const char *s[] = { "scales=3", NULL };
    g_autoptr (FgParams) p = th_params_new (c, s);
    g_autoptr (FgWeightSet) w = fg_weight_set_new ();
    FgSampleShape shape = { 3, { 1, 6, 6 } };
    g_assert_null (((const FgFlowVTable *) c->vtable)->create (p, &shape, w, &rng, &error));
    g_assert_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM);
    g_assert_nonnull (strstr (error->message, "divisible by 4"));
    g_clear_error (&error);
  }
  {
    const char *s[] = { "structure=checker,bogus", NULL };
    g_autoptr (FgParams) p = th_params_new (c, s);
    g_autoptr (FgWeightSet) w = fg_weight_set_new ();
    FgSampleShape shape = { 3, { 1, 4, 4 } };
    g_assert_null (((const FgFlowVTable *) c->vtable)->create (p, &shape, w, &rng, &error));
    g_assert_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM);
    g_assert_nonnull (strstr (error->message, "'bogus' (item 2)"));
    g_clear_error (&error);
  }
  {
    const char *s[] = { NULL };
    g_autoptr (FgParams) p = th_params_new (c, s);
    g_autoptr (FgWeightSet) w = fg_weight_set_new ();
    FgSampleShape shape = { 1, { 16 } };
    g_assert_null (((const FgFlowVTable *) c->vtable)->create (p, &shape, w, &rng, &error));
    g_assert_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM);
  }
}


/* ---------------------------------------------------------------------- learning on MNIST */

typedef struct {
  double first, last;
  guint n;
} LossTrace;

static void
record_progress (gpointer data, double fraction, const char *what)
{
  LossTrace *t = data;
  const char *l = strstr (what, "loss ");
  (void) fraction;
  if (l == NULL)
    return;
  const double v = g_ascii_strtod (l + 5, NULL);
  if (t->n++ == 0)
    t->first = v;
  t->last = v;
}

/* A split of N×C×H×W images x, all labeled (y: N labels filled with i mod 2), nothing else. */
static void
labeled_split (FgSplit *split, const FgTensor *x, gint32 *y, const char *fingerprint)
{
  const gsize N = x->shape[0];
  for (gsize i = 0; i < N; i++)
    y[i] = (gint32) (i % 2);
  memset (split, 0, sizeof *split);
  split->n_classes = 2;
  split->shape.ndim = 3;
  for (guint d = 0; d < 3; d++)
    split->shape.dims[d] = x->shape[d + 1];
  split->dim = fg_tensor_cols (x);
  split->labeled.x = *x;
  split->labeled.y = y;
  split->labeled.n = N;
  split->unlabeled.x = fg_tensor_view_rows (x, 0, 0);
  split->validation.x = fg_tensor_view_rows (x, 0, 0);
  split->fingerprint = fingerprint;
  split->seed = 1;
}

/* The flowgmm method with flow = realnvp-conv and "key=value" settings, fitted on split. */
static gpointer
fit_method (const FgSplit *split, const char *const *settings, const FgBaselineVTable **vt_out)
{
  g_autoptr (GError) error = NULL;
  const FgComponent *mc = fg_registry_find (th_registry (), FG_KIND_BASELINE, "flowgmm", &error);
  const FgComponent *fc = fg_registry_find (th_registry (), FG_KIND_FLOW, "realnvp-conv", &error);
  g_assert_no_error (error);
  g_autoptr (FgParams) mp = fg_params_new (mc->params);
  g_assert_true (fg_registry_resolve_params (th_registry (), mp, &error));
  g_assert_true (fg_params_set_component (mp, "flow", "realnvp-conv", fc->params, &error));
  g_assert_true (th_params_set_all (mp, settings, &error));
  g_assert_true (fg_registry_resolve_params (th_registry (), mp, &error));
  g_assert_no_error (error);
  FgRng rng;
  fg_rng_init (&rng, 1, 42);
  const FgBaselineVTable *vt = mc->vtable;
  gpointer model = vt->create (mp, &rng, &error);
  g_assert_no_error (error);
  g_assert_true (vt->fit (model, split, &error));
  g_assert_no_error (error);
  *vt_out = vt;
  return model;
}

/* Rows [0, n) of 1×28×28 images averaged over 2×2 blocks: 1×14×14. */
static FgTensor *
pool2 (const FgTensor *x, gsize n)
{
  FgTensor *y = fg_tensor_new (4, (gsize[]){ n, 1, 14, 14 });
  for (gsize i = 0; i < n; i++)
    for (gsize r = 0; r < 14; r++)
      for (gsize c = 0; c < 14; c++)
        {
          const float *p = fg_tensor_row (x, i) + 2 * r * 28 + 2 * c;
          y->data[i * 196 + r * 14 + c] = 0.25f * (p[0] + p[1] + p[28] + p[29]);
        }
  return y;
}

/* The flowgmm method with a tiny realnvp-conv (2 scales, mid 8, 1 block) trained as FlowGMM Sup
 * on 200 labeled MNIST images, 2×2-average-pooled to 14×14 so that 100 steps take seconds, with
 * the paper's random means: test accuracy on 200 test images well above chance (10 %; 34.5 %
 * when written), and the loss (so bits/dim) falls. */
static void
test_mnist_learns (void)
{
  const char *dir = g_getenv ("FG_SHARED_DATA");
  g_autofree char *images = g_build_filename (dir ? dir : "", "mnist", "train-images-idx3-ubyte.gz",
                                              NULL);
  g_autofree char *labels = g_build_filename (dir ? dir : "", "mnist", "train-labels-idx1-ubyte.gz",
                                              NULL);
  g_autofree char *timages = g_build_filename (dir ? dir : "", "mnist", "t10k-images-idx3-ubyte.gz",
                                               NULL);
  g_autofree char *tlabels = g_build_filename (dir ? dir : "", "mnist", "t10k-labels-idx1-ubyte.gz",
                                               NULL);
  if (dir == NULL || !g_file_test (images, G_FILE_TEST_EXISTS)
      || !g_file_test (timages, G_FILE_TEST_EXISTS))
    {
      g_test_skip ("MNIST not found under $FG_SHARED_DATA/mnist");
      return;
    }
  g_autoptr (GError) error = NULL;
  const FgComponent *dc = fg_registry_find (th_registry (), FG_KIND_DATASET, "idx", &error);
  g_assert_no_error (error);
  g_autoptr (FgParams) dp = fg_params_new (dc->params);
  g_assert_true (fg_params_set (dp, "images", images, &error));
  g_assert_true (fg_params_set (dp, "labels", labels, &error));
  g_assert_true (fg_params_set (dp, "test_images", timages, &error));
  g_assert_true (fg_params_set (dp, "test_labels", tlabels, &error));
  FgLoadContext ctx = { "/", { 0 } };
  g_autoptr (FgDataset) ds = ((const FgDatasetVTable *) dc->vtable)->load (dp, &ctx, &error);
  g_assert_no_error (error);
  const FgDataPart *train = fg_dataset_get_part (ds, FG_PART_TRAIN);
  const FgDataPart *test = fg_dataset_get_part (ds, FG_PART_TEST);
  const gsize n_train = 200, n_test = 200;

  FgSplit split;
  memset (&split, 0, sizeof split);
  split.n_classes = 10;
  g_autoptr (FgTensor) train14 = pool2 (&train->x, n_train);
  g_autoptr (FgTensor) test14 = pool2 (&test->x, n_test);
  split.shape.ndim = 3;
  split.shape.dims[0] = 1;
  split.shape.dims[1] = split.shape.dims[2] = 14;
  split.dim = 196;
  split.labeled.x = *train14;
  split.labeled.y = train->y;
  split.labeled.n = n_train;
  split.unlabeled.x = fg_tensor_view_rows (&train->x, 0, 0);
  split.validation.x = fg_tensor_view_rows (&train->x, 0, 0);
  split.fingerprint = "mnist-200";
  split.seed = 1;
  LossTrace trace = { 0 };
  FgFitHooks hooks = { record_progress, NULL, &trace };
  split.hooks = &hooks;

  const char *settings[] = { "labeled_only=true", "labeled_batch=50", "epochs=25",
                             "optimizer=adam",    "lr=2e-3",          "weight_decay=5e-5",
                             "schedule=constant", "flow.mid_channels=8", "flow.blocks=1",
                             "flow.scales=2",     NULL };
  const FgBaselineVTable *vt;
  gpointer model = fit_method (&split, settings, &vt);
  g_autofree gint32 *pred = g_new (gint32, n_test);
  FgTensor tx = *test14;
  g_assert_true (vt->predict (model, &tx, pred, NULL, &error));
  gsize right = 0;
  for (gsize i = 0; i < n_test; i++)
    right += pred[i] == test->y[i];
  /* loss = NLL per image in nats of the dequantised u ∈ [0, 1]^D; bits/dim = loss/(D ln 2) + 8 */
  g_test_message ("MNIST 200 images: test accuracy %.1f %%, bits/dim %.3f -> %.3f over %u epochs",
                  100.0 * right / n_test, trace.first / (196 * G_LN2) + 8,
                  trace.last / (196 * G_LN2) + 8, trace.n);
  g_assert_cmpuint (trace.n, >=, 2);
  g_assert_cmpfloat (trace.last, <, trace.first);
  g_assert_cmpuint (right, >=, n_test / 4); /* chance: 10 % */
  vt->destroy (model);
}

/* ---------------------------------------------------------------------- chunked evaluation */

/* Gradient-free evaluation runs in chunks of eval_chunk images on a private tape: the same
 * values (noise included) as one pass. */
static void
test_eval_chunks (void)
{
  const gsize N = 7;
  g_autoptr (FgTensor) x = random_images (N, 1, 8, 8, 11, TRUE);
  g_autoptr (FgTensor) z1 = fg_tensor_new (4, x->shape), z2 = fg_tensor_new (4, x->shape);
  float ld1[7], ld2[7];
  g_autoptr (FgTensor) r1 = NULL, r2 = NULL;
  for (guint k = 0; k < 2; k++)
    {
      const char *settings[] = { "scales=2", "mid_channels=4", "blocks=1",
                                 k ? "eval_chunk=2" : "eval_chunk=64", NULL };
      Flow f;
      flow_init (&f, 1, 8, 8, 3, settings);
      flow_train_pass (&f, x, 1);
      g_autoptr (FgTape) tape = fg_tape_new ();
      g_autoptr (GError) error = NULL;
      FgRng rng;
      FgFlowRun run = { .train = FALSE, .rng = &rng }; /* noise drawn at evaluation (authors) */
      FgVar *ld = NULL;
      fg_rng_init (&rng, 5, 5);
      fg_tape_set_grad_enabled (tape, FALSE);
      FgVar *z = f.vt->forward (f.self, tape, fg_tape_constant (tape, x), &run, &ld, &error);
      g_assert_no_error (error);
      fg_tensor_copy_into (k ? z2 : z1, &z->value);
      for (gsize i = 0; i < N; i++)
        (k ? ld2 : ld1)[i] = ld->value.data[i];
      FgVar *xr = f.vt->inverse (f.self, tape, z, &error);
      g_assert_no_error (error);
      if (k)
        r2 = fg_tensor_copy (&xr->value);
      else
        r1 = fg_tensor_copy (&xr->value);
      flow_clear (&f);
    }
  g_assert_cmpint (memcmp (z1->data, z2->data, fg_tensor_numel (z1) * sizeof (float)), ==, 0);
  g_assert_cmpint (memcmp (ld1, ld2, sizeof ld1), ==, 0);
  g_assert_cmpint (memcmp (r1->data, r2->data, fg_tensor_numel (r1) * sizeof (float)), ==, 0);
  /* with noise, the decoded images are within half a level of the inputs */
  g_assert_cmpfloat (fg_tensor_max_abs_diff (r1, x), <=, 0.5 / 255 + 1e-4);
}

/* ---------------------------------------------------------------------- init through the method */

/* The flowgmm method calls the flow's init with the first training batch: an ActNorm-only flow
 * then maps that batch to per-channel mean 0 and standard deviation 1. */
static void
test_method_calls_init (void)
{
  const gsize N = 20, C = 2, H = 4, W = 4, P = H * W;
  g_autoptr (FgTensor) x = random_images (N, C, H, W, 21, FALSE);
  g_autofree gint32 *y = g_new (gint32, N);
  for (gsize i = 0; i < fg_tensor_numel (x); i++)
    x->data[i] = 3.0f * x->data[i] - 1.0f;
  FgSplit split;
  labeled_split (&split, x, y, "init");
  g_autoptr (GError) error = NULL;
  const char *settings[] = { "labeled_only=true", "iterations=1", "lr=1e-12", "schedule=constant",
                             "flow.structure=actnorm", NULL };
  const FgBaselineVTable *vt;
  gpointer model = fit_method (&split, settings, &vt);
  g_autofree float *z = g_new (float, N * C * P);
  g_assert_true (vt->embed (model, x, z, &error));
  for (gsize c = 0; c < C; c++)
    {
      double s = 0.0, q = 0.0;
      for (gsize n = 0; n < N; n++)
        for (gsize p = 0; p < P; p++)
          s += z[(n * C + c) * P + p];
      const double mu = s / (N * P);
      for (gsize n = 0; n < N; n++)
        for (gsize p = 0; p < P; p++)
          q += pow (z[(n * C + c) * P + p] - mu, 2);
      g_assert_cmpfloat_with_epsilon (mu, 0.0, 1e-3);
      g_assert_cmpfloat_with_epsilon (sqrt (q / (N * P)), 1.0, 1e-3);
    }
  vt->destroy (model);
}

/* ---------------------------------------------------------------------- partial passes */

/* forward_to / inverse_from (feature visualisation): layer 0 is the input, layer L forward's z,
 * the layers between are image-shaped (the activation's channels first, then the factored
 * pieces squeezed down to its size: here two splits at two scales), and
 * inverse_from (forward_to (x, ℓ), ℓ) = x for every ℓ; a layer beyond L is an error. */
static void
test_partial_passes (void)
{
  /* layers 0..9: logit, checker, squeeze, channel, split, squeeze, channel, split, checker */
  const char *settings[] = { "structure=logit,checker,squeeze,channel,split,squeeze,channel,"
                             "split,checker",
                             "mid_channels=4", "blocks=1", "dequant_eval=mid", NULL };
  const gsize N = 3;
  const gsize shapes[10][3] = { { 1, 8, 8 }, { 1, 8, 8 }, { 1, 8, 8 }, { 4, 4, 4 },
                                { 4, 4, 4 }, { 4, 4, 4 }, { 16, 2, 2 }, { 16, 2, 2 },
                                { 16, 2, 2 }, { 1, 8, 8 } };
  g_autoptr (FgTensor) x = random_images (N, 1, 8, 8, 5, TRUE);
  g_autoptr (FgTensor) z = fg_tensor_new (4, x->shape);
  g_autoptr (GError) error = NULL;
  Flow f;
  flow_init (&f, 1, 8, 8, 4, settings);
  perturb (&f, 6);
  flow_train_pass (&f, x, 2);
  g_assert_true (FG_VTABLE_HAS (f.vt, FgFlowVTable, n_layers));
  g_assert_true (FG_VTABLE_HAS (f.vt, FgFlowVTable, forward_to));
  g_assert_true (FG_VTABLE_HAS (f.vt, FgFlowVTable, inverse_from));
  const guint L = f.vt->n_layers (f.self);
  g_assert_cmpuint (L, ==, 9);
  flow_run (&f, x, FALSE, z, NULL);
  for (guint l = 0; l <= L; l++)
    {
      g_autoptr (FgTape) tape = fg_tape_new ();
      fg_tape_set_grad_enabled (tape, FALSE);
      FgVar *h = f.vt->forward_to (f.self, tape, fg_tape_constant (tape, x), l, NULL, &error);
      g_assert_no_error (error);
      g_assert_cmpuint (h->value.ndim, ==, 4);
      g_assert_cmpuint (h->value.shape[0], ==, N);
      for (guint d = 0; d < 3; d++)
        g_assert_cmpuint (h->value.shape[d + 1], ==, shapes[l][d]);
      if (l == 0)
        g_assert_cmpfloat (fg_tensor_max_abs_diff (&h->value, x), ==, 0.0);
      if (l == L)
        g_assert_cmpfloat (fg_tensor_max_abs_diff (&h->value, z), <, 1e-6);
      if (l == 8)
        {
          /* channels 4..11: the piece factored at layer 4 (2×4×4), squeezed once; 12..15 the
           * one factored at layer 7 — both where z keeps them (offsets 0 and 32) */
          for (gsize n = 0; n < N; n++)
            {
              const float *hr = fg_tensor_row (&h->value, n), *zr = fg_tensor_row (z, n);
              for (gsize c = 0; c < 2; c++)
                for (gsize i = 0; i < 4; i++)
                  for (gsize j = 0; j < 4; j++)
                    {
                      const gsize ch = 4 + 4 * c + 2 * (i % 2) + j % 2;
                      g_assert_cmpfloat (hr[ch * 4 + (i / 2) * 2 + j / 2], ==,
                                         zr[c * 16 + i * 4 + j]);
                    }
              for (gsize k = 0; k < 16; k++)
                g_assert_cmpfloat (hr[48 + k], ==, zr[32 + k]);
            }
        }
      FgVar *xr = f.vt->inverse_from (f.self, tape, h, l, &error);
      g_assert_no_error (error);
      g_assert_true (fg_tensor_same_shape (&xr->value, x));
      const double err = fg_tensor_max_abs_diff (&xr->value, x);
      if (!(err < 1e-4))
        g_error ("layer %u: ‖inverse_from (forward_to (x)) − x‖∞ = %g", l, err);
    }
  th_assert_partial_passes_reject_layer (f.vt, f.self, x, L);
  flow_clear (&f);
}

/* Eq. 8 through the method on the multi-scale flow: α = 0 reproduces the input (with the
 * default, noisy dequant_eval), α ≠ 0 changes it, at a layer before and one after the split. */
static void
test_feature_inversion (void)
{
  const gsize N = 12, C = 1, H = 4, W = 4, D = C * H * W;
  g_autoptr (FgTensor) x = random_images (N, C, H, W, 31, TRUE);
  g_autofree gint32 *y = g_new (gint32, N);
  FgSplit split;
  labeled_split (&split, x, y, "features");
  const char *settings[] = { "labeled_only=true", "iterations=2", "flow.scales=2",
                             "flow.mid_channels=4", "flow.blocks=1", NULL };
  const FgBaselineVTable *vt;
  gpointer model = fit_method (&split, settings, &vt);
  g_assert_true (FG_VTABLE_HAS (vt, FgBaselineVTable, feature_inversion));
  const double alphas[3] = { -1.0, 0.0, 1.0 };
  const guint layers[2] = { 5, 9 }; /* squeezed 4×2×2; after the split 2 + 2 channels */
  g_autofree float *out = g_new (float, 3 * N * D);
  for (guint k = 0; k < 2; k++)
    {
      g_autoptr (GError) error = NULL;
      double sigma = 0.0;
      const gboolean ok = vt->feature_inversion (model, x, x, layers[k], 1, alphas, 3, out,
                                                 &sigma, &error);
      g_assert_no_error (error);
      g_assert_true (ok);
      g_assert_cmpfloat (sigma, >, 0.0);
      double e0 = 0.0, e1 = 0.0;
      for (gsize i = 0; i < N * D; i++)
        {
          e0 = MAX (e0, fabs (out[N * D + i] - x->data[i]));
          e1 = MAX (e1, fabs (out[2 * N * D + i] - x->data[i]));
        }
      g_test_message ("layer %u: α = 0 error %g, α = 1 change %g", layers[k], e0, e1);
      g_assert_cmpfloat (e0, <, 1e-4);
      g_assert_cmpfloat (e1, >, 1e-3);
    }
  vt->destroy (model);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/realnvp-conv/roundtrip", test_roundtrip);
  g_test_add_func ("/realnvp-conv/logdet-jacobian", test_logdet_jacobian);
  g_test_add_func ("/realnvp-conv/gradients", test_gradients);
  g_test_add_func ("/realnvp-conv/batchnorm-modes", test_batchnorm_modes);
  g_test_add_func ("/realnvp-conv/permutations", test_permutations);
  g_test_add_func ("/realnvp-conv/conv1x1", test_conv1x1);
  g_test_add_func ("/realnvp-conv/actnorm-init", test_actnorm_init);
  g_test_add_func ("/realnvp-conv/parameter-counts", test_parameter_counts);
  g_test_add_func ("/realnvp-conv/errors", test_errors);
  g_test_add_func ("/realnvp-conv/eval-chunks", test_eval_chunks);
  g_test_add_func ("/realnvp-conv/method-calls-init", test_method_calls_init);
  g_test_add_func ("/realnvp-conv/mnist-learns", test_mnist_learns);
  g_test_add_func ("/realnvp-conv/partial-passes", test_partial_passes);
  g_test_add_func ("/realnvp-conv/feature-inversion", test_feature_inversion);
  return g_test_run ();
}
