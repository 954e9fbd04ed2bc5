/* SPDX-License-Identifier: MIT */
/* flowgmm tests — the realnvp-mlp flow plugin (plugins/flows/realnvp-mlp.c), loaded through the
 * registry ($FLOWGMM_PLUGIN_PATH) as a user would.
 *
 * - invertibility: ‖f⁻¹(f(x)) − x‖∞ < 1e-4 on random inputs for both masks and several depths
 *   and dimensions;
 * - the log-det against log|det J| of the Jacobian, computed two ways for D ≤ 8: column by
 *   column with reverse-mode autodiff (fg_tape_backward_seed), and by central differences;
 * - gradients of z and the log-det with respect to the weights and the input against finite
 *   differences;
 * - the masks (which coordinates a single layer leaves alone), zero_init = identity, dropout
 *   only in training and drawn from the run's RNG, image-shaped inputs, rescale = false, and
 *   the parameter counts of the authors' architectures (REFERENCE §1.1);
 * - the partial passes forward_to / inverse_from (round trip at every layer).
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include <flowgmm/flowgmm.h>

#include "gradcheck.h"
#include "registry-helpers.h"

typedef struct {
  const FgFlowVTable *vt;
  gpointer self;
  FgWeightSet *weights;
  gsize D;
} Flow;

/* Build realnvp-mlp for D features with "key=value" settings (NULL-terminated). */
static void
flow_init (Flow *f, gsize D, guint64 seed, const char *const *settings)
{
  g_autoptr (GError) error = NULL;
  const FgComponent *c = fg_registry_find (th_registry (), FG_KIND_FLOW, "realnvp-mlp", &error);
  g_autoptr (FgParams) params = NULL;
  FgSampleShape shape = { 1, { D, 1, 1 } };
  FgRng rng;
  g_assert_no_error (error);
  g_assert_nonnull (c);
  params = th_params_new (c, settings);
  fg_rng_init (&rng, seed, 0);
  f->vt = c->vtable;
  f->weights = fg_weight_set_new ();
  f->D = D;
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
random_input (gsize N, gsize D, guint64 seed)
{
  FgTensor *x = fg_tensor_new_2d (N, D);
  FgRng rng;
  fg_rng_init (&rng, seed, 3);
  fg_rng_fill_normal (&rng, x->data, N * D, 0.0f, 1.0f);
  return x;
}

/* Evaluation-mode forward; z and logdet copied out. */
static void
flow_eval (Flow *f, const FgTensor *x, FgTensor *z, float *logdet)
{
  g_autoptr (FgTape) tape = fg_tape_new ();
  g_autoptr (GError) error = NULL;
  FgFlowRun run = { FALSE, NULL, { 0 } };
  FgVar *ld = NULL;
  FgVar *zv;
  fg_tape_set_grad_enabled (tape, FALSE);
  zv = f->vt->forward (f->self, tape, fg_tape_constant (tape, x), &run, &ld, &error);
  g_assert_no_error (error);
  g_assert_nonnull (zv);
  g_assert_nonnull (ld);
  g_assert_cmpuint (fg_tensor_rows (&ld->value), ==, fg_tensor_rows (x));
  g_assert_cmpuint (fg_tensor_cols (&ld->value), ==, 1);
  g_assert_true (fg_tensor_same_shape (&zv->value, x));
  if (z != NULL)
    fg_tensor_copy_into (z, &zv->value);
  for (gsize i = 0; logdet && i < fg_tensor_rows (x); i++)
    logdet[i] = fg_tensor_row (&ld->value, i)[0];
}

static void
test_invertible (void)
{
  const gsize dims[] = { 1, 2, 3, 5, 8, 21 };
  const char *masks[] = { "mask=halves", "mask=checkerboard" };
  const char *depths[] = { "layers=1", "layers=2", "layers=5" };
  for (guint di = 0; di < G_N_ELEMENTS (dims); di++)
    for (guint mi = 0; mi < G_N_ELEMENTS (masks); mi++)
      for (guint li = 0; li < G_N_ELEMENTS (depths); li++)
        {
          const char *settings[] = { masks[mi], depths[li], "hidden=16", NULL };
          const gsize D = dims[di], N = 64;
          g_autoptr (FgTensor) x = random_input (N, D, 100 + di);
          g_autoptr (FgTensor) z = fg_tensor_new_2d (N, D);
          g_autoptr (FgTape) tape = fg_tape_new ();
          g_autoptr (GError) error = NULL;
          Flow f;
          FgVar *xr;
          double err;
          flow_init (&f, D, 7 + li, settings);
          /* Make the couplings far from the identity: large rescale. */
          for (guint i = 0; i < fg_weight_set_len (f.weights); i++)
            {
              FgWeight *w = fg_weight_set_get (f.weights, i);
              if (g_str_has_suffix (w->name, ".rescale"))
                fg_weight_init_const (w, 2.0f);
            }
          flow_eval (&f, x, z, NULL);
          fg_tape_set_grad_enabled (tape, FALSE);
          xr = f.vt->inverse (f.self, tape, fg_tape_constant (tape, z), &error);
          g_assert_no_error (error);
          g_assert_nonnull (xr);
          err = fg_tensor_max_abs_diff (&xr->value, x);
          if (!(err < 1e-4))
            g_error ("D=%" G_GSIZE_FORMAT " %s %s: ‖f⁻¹(f(x)) − x‖∞ = %g", D, masks[mi],
                     depths[li], err);
          /* the flow must not be the identity (else the test proves nothing), except where
           * nothing is transformed: D = 1 with one checkerboard layer */
          if (!(D == 1 && mi == 1 && li == 0))
            g_assert_cmpfloat (fg_tensor_max_abs_diff (z, x), >, 1e-2);
          flow_clear (&f);
        }
}

static void
test_logdet_jacobian (void)
{
  const gsize dims[] = { 1, 2, 3, 5, 8 };
  const char *masks[] = { "mask=halves", "mask=checkerboard" };
  for (guint di = 0; di < G_N_ELEMENTS (dims); di++)
    for (guint mi = 0; mi < 2; mi++)
      {
        const char *settings[] = { masks[mi], "layers=4", "hidden=12", "activation=tanh", NULL };
        const gsize D = dims[di], N = 5;
        g_autoptr (FgWeightSet) xset = fg_weight_set_new ();
        g_autoptr (FgTape) tape = fg_tape_new ();
        g_autoptr (GError) error = NULL;
        g_autofree double *jac = g_new (double, N * D * D);
        g_autofree double *fd = g_new (double, N * D * D);
        g_autofree float *seed = g_new0 (float, N * D);
        g_autofree float *logdet = g_new (float, N);
        FgWeight *xw = fg_weight_set_add_2d (xset, "x", N, D, FALSE);
        FgFlowRun run = { FALSE, NULL, { 0 } };
        FgVar *z, *ld = NULL;
        Flow f;
        FgRng rng;

        flow_init (&f, D, 11 + di, settings);
        fg_rng_init (&rng, 12, 0);
        /* far from the identity: larger scales and output layers than at initialisation */
        for (guint i = 0; i < fg_weight_set_len (f.weights); i++)
          {
            FgWeight *w = fg_weight_set_get (f.weights, i);
            if (g_str_has_suffix (w->name, ".rescale"))
              fg_weight_init_const (w, 1.5f);
            else if (strstr (w->name, ".out.") != NULL)
              fg_weight_init_uniform (w, &rng, 1.0f);
          }
        fg_weight_init_normal (xw, &rng, 1.0f);
        z = f.vt->forward (f.self, tape, fg_tape_weight (tape, xw), &run, &ld, &error);
        g_assert_no_error (error);
        for (gsize i = 0; i < N; i++)
          logdet[i] = ld->value.data[i * ld->value.ld];

        /* Reverse mode: seeding output column j gives row j of every row's Jacobian. */
        for (gsize j = 0; j < D; j++)
          {
            FgTensor s = fg_tensor_wrap_2d (seed, N, D);
            memset (seed, 0, N * D * sizeof (float));
            for (gsize i = 0; i < N; i++)
              seed[i * D + j] = 1.0f;
            fg_weight_set_zero_grad (xset);
            g_assert_true (fg_tape_backward_seed (tape, z, &s, &error));
            g_assert_no_error (error);
            for (gsize i = 0; i < N; i++)
              for (gsize k = 0; k < D; k++)
                jac[i * D * D + j * D + k] = xw->grad.data[i * D + k];
          }

        /* Central differences in the input, evaluated in float, h = 1e-2. */
        for (gsize k = 0; k < D; k++)
          {
            g_autoptr (FgTensor) xp = fg_tensor_copy (&xw->value);
            g_autoptr (FgTensor) xm = fg_tensor_copy (&xw->value);
            g_autoptr (FgTensor) zp = fg_tensor_new_2d (N, D);
            g_autoptr (FgTensor) zm = fg_tensor_new_2d (N, D);
            const float h = 1e-2f;
            for (gsize i = 0; i < N; i++)
              {
                xp->data[i * D + k] += h;
                xm->data[i * D + k] -= h;
              }
            flow_eval (&f, xp, zp, NULL);
            flow_eval (&f, xm, zm, NULL);
            for (gsize i = 0; i < N; i++)
              for (gsize j = 0; j < D; j++)
                fd[i * D * D + j * D + k] =
                  ((double) zp->data[i * D + j] - zm->data[i * D + j])
                  / ((double) xp->data[i * D + k] - xm->data[i * D + k]);
          }

        {
          /* non-trivial: the log-dets are far from 0 (at D = 1 one constant per flow) */
          double m = 0.0;
          for (gsize i = 0; i < N; i++)
            m = MAX (m, fabs (logdet[i]));
          if (m < (D > 1 ? 0.1 : 1e-3))
            g_error ("D=%" G_GSIZE_FORMAT " %s: max logdet %g", D, masks[mi], m);
        }
        for (gsize i = 0; i < N; i++)
          {
            double l1 = gc_log_abs_det (jac + i * D * D, D);
            double l2 = gc_log_abs_det (fd + i * D * D, D);
            if (!(fabs (l1 - logdet[i]) < 1e-4 * (1 + fabs (l1)) && fabs (l2 - logdet[i]) < 2e-2))
              g_error ("D=%" G_GSIZE_FORMAT " %s row %" G_GSIZE_FORMAT ": logdet %g, autodiff "
                       "Jacobian %g, finite differences %g",
                       D, masks[mi], i, logdet[i], l1, l2);
          }
        flow_clear (&f);
      }
}

typedef struct {
  Flow *f;
} FlowBuild;

/* [N, D + 1]: z next to the log-det, so one projection checks both. */
static FgVar *
build_flow (FgTape *tape, FgVar *const *inputs, gpointer user_data)
{
  FlowBuild *b = user_data;
  FgFlowRun run = { FALSE, NULL, { 0 } };
  FgVar *ld = NULL, *z;
  z = b->f->vt->forward (b->f->self, tape, inputs[0], &run, &ld, NULL);
  return fg_op_concat (tape, z, ld);
}

static void
test_gradcheck (void)
{
  const char *cases[][6] = {
    { "mask=halves", "layers=2", "hidden=6", "activation=tanh", "inner_layers=1", NULL },
    { "mask=checkerboard", "layers=2", "hidden=6", "activation=tanh", "inner_layers=1", NULL },
    { "mask=halves", "layers=3", "hidden=5", "activation=softplus", "inner_layers=0", NULL },
  };
  const gsize dims[] = { 5, 4, 3 };
  for (guint ci = 0; ci < G_N_ELEMENTS (cases); ci++)
    {
      const gsize D = dims[ci], N = 4;
      g_autoptr (FgWeightSet) xset = fg_weight_set_new ();
      FgWeight *inputs[16];
      guint n = 0;
      FgRng rng;
      Flow f;
      FlowBuild b = { &f };
      GcOptions opts;
      char what[64];
      flow_init (&f, D, 21 + ci, (const char *const *) cases[ci]);
      inputs[n++] = fg_weight_set_add_2d (xset, "x", N, D, FALSE);
      fg_rng_init (&rng, 3, 3);
      fg_weight_init_normal (inputs[0], &rng, 1.0f);
      for (guint i = 0; i < fg_weight_set_len (f.weights) && n < 16; i++)
        {
          FgWeight *w = fg_weight_set_get (f.weights, i);
          /* rescale away from 1 so its gradient is not trivially symmetric */
          if (g_str_has_suffix (w->name, ".rescale"))
            fg_weight_init_uniform (w, &rng, 1.5f);
          inputs[n++] = w;
        }
      gc_options_init (&opts);
      opts.eps = 3e-3;
      opts.atol = 2e-3;
      g_snprintf (what, sizeof what, "realnvp-mlp case %u (%u inputs)", ci, n);
      gc_assert (inputs, n, build_flow, &b, &opts, what);
      flow_clear (&f);
    }
}

/* One layer leaves its identity coordinates unchanged: the authors' halves mask conditions on
 * the first floor(D/2) coordinates in even layers; the checkerboard on even indices. */
static void
test_masks (void)
{
  const gsize D = 5, N = 8;
  g_autoptr (FgTensor) x = random_input (N, D, 1);
  for (int mi = 0; mi < 2; mi++)
    {
      const char *settings[] = { mi ? "mask=checkerboard" : "mask=halves", "layers=1",
                                 "hidden=8", NULL };
      g_autoptr (FgTensor) z = fg_tensor_new_2d (N, D);
      Flow f;
      flow_init (&f, D, 2, settings);
      flow_eval (&f, x, z, NULL);
      for (gsize i = 0; i < N; i++)
        for (gsize j = 0; j < D; j++)
          {
            gboolean identity = mi ? j % 2 == 0 : j < D / 2;
            float a = fg_tensor_row (x, i)[j], b = fg_tensor_row (z, i)[j];
            if (identity)
              g_assert_cmpfloat (a, ==, b);
            else
              g_assert_cmpfloat (a, !=, b);
          }
      flow_clear (&f);
    }
}

static void
test_zero_init_identity (void)
{
  const char *settings[] = { "zero_init=true", "layers=3", "hidden=8", NULL };
  const gsize D = 6, N = 10;
  g_autoptr (FgTensor) x = random_input (N, D, 2);
  g_autoptr (FgTensor) z = fg_tensor_new_2d (N, D);
  float logdet[10];
  Flow f;
  flow_init (&f, D, 1, settings);
  flow_eval (&f, x, z, logdet);
  g_assert_cmpfloat (fg_tensor_max_abs_diff (x, z), ==, 0.0);
  for (gsize i = 0; i < N; i++)
    g_assert_cmpfloat (logdet[i], ==, 0.0f);
  flow_clear (&f);
}

/* Dropout acts only in training, draws from the run's RNG, and changes the output. */
static void
test_dropout (void)
{
  const char *settings[] = { "dropout=0.5", "layers=2", "hidden=32", NULL };
  const gsize D = 4, N = 16;
  g_autoptr (FgTensor) x = random_input (N, D, 3);
  g_autoptr (FgTensor) ze1 = fg_tensor_new_2d (N, D);
  g_autoptr (FgTensor) ze2 = fg_tensor_new_2d (N, D);
  g_autoptr (FgTape) tape = fg_tape_new ();
  g_autoptr (GError) error = NULL;
  FgVar *ld, *za, *zb, *zc;
  FgRng r1, r2;
  FgFlowRun run = { TRUE, &r1, { 0 } };
  Flow f;
  flow_init (&f, D, 4, settings);
  flow_eval (&f, x, ze1, NULL);
  flow_eval (&f, x, ze2, NULL);
  g_assert_cmpfloat (fg_tensor_max_abs_diff (ze1, ze2), ==, 0.0);

  fg_rng_init (&r1, 9, 9);
  za = f.vt->forward (f.self, tape, fg_tape_constant (tape, x), &run, &ld, &error);
  zb = f.vt->forward (f.self, tape, fg_tape_constant (tape, x), &run, &ld, &error);
  fg_rng_init (&r2, 9, 9);
  run.rng = &r2;
  zc = f.vt->forward (f.self, tape, fg_tape_constant (tape, x), &run, &ld, &error);
  g_assert_no_error (error);
  g_assert_cmpfloat (fg_tensor_max_abs_diff (&za->value, &zb->value), >, 0.0); /* fresh masks */
  g_assert_cmpfloat (fg_tensor_max_abs_diff (&za->value, &zc->value), ==, 0.0); /* same seed */
  g_assert_cmpfloat (fg_tensor_max_abs_diff (&za->value, ze1), >, 0.0);
  /* training without an RNG is refused */
  run.rng = NULL;
  g_assert_null (f.vt->forward (f.self, tape, fg_tape_constant (tape, x), &run, &ld, &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_FAILED);
  flow_clear (&f);
}

/* Images: N×C×H×W in, same shape out; the same numbers as the flattened input. */
static void
test_image_shape (void)
{
  const char *settings[] = { "layers=2", "hidden=8", NULL };
  g_autoptr (FgTensor) x4 = fg_tensor_new ((guint) 4, (gsize[]){ 3, 2, 2, 2 });
  g_autoptr (FgTensor) x2 = fg_tensor_new_2d (3, 8);
  g_autoptr (FgTensor) z2 = fg_tensor_new_2d (3, 8);
  g_autoptr (FgTape) tape = fg_tape_new ();
  g_autoptr (GError) error = NULL;
  FgFlowRun run = { FALSE, NULL, { 0 } };
  FgVar *ld, *z4, *x4r;
  FgRng rng;
  Flow f;
  fg_rng_init (&rng, 1, 1);
  fg_rng_fill_normal (&rng, x4->data, 24, 0.0f, 1.0f);
  memcpy (x2->data, x4->data, 24 * sizeof (float));
  flow_init (&f, 8, 5, settings);
  z4 = f.vt->forward (f.self, tape, fg_tape_constant (tape, x4), &run, &ld, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (z4->value.ndim, ==, 4);
  g_assert_true (fg_tensor_same_shape (&z4->value, x4));
  flow_eval (&f, x2, z2, NULL);
  g_assert_cmpmem (z4->value.data, 24 * sizeof (float), z2->data, 24 * sizeof (float));
  x4r = f.vt->inverse (f.self, tape, z4, &error);
  g_assert_no_error (error);
  g_assert_true (fg_tensor_same_shape (&x4r->value, x4));
  g_assert_cmpfloat (fg_tensor_max_abs_diff (&x4r->value, x4), <, 1e-5);
  flow_clear (&f);
}

/* The authors' architectures: MINIBOONE (D=50, k=256, L=10) ≈ 1.05 M parameters and AG-News
 * (D=768, k=1024, L=7) ≈ 23.9 M (REFERENCE §1.1), of which the flow stores the live ones: the
 * first layer's rows at the n_id identity coordinates, the last layer's s and t columns at the
 * n_ch transformed ones, the rescale at those (halves: n_id = n_ch = D/2). */
static void
test_parameter_counts (void)
{
  const char *mb[] = { "layers=10", "hidden=256", NULL };
  const char *ag[] = { "layers=7", "hidden=1024", NULL };
  const char *norescale[] = { "layers=2", "hidden=4", "rescale=false", NULL };
  Flow f;
  flow_init (&f, 50, 1, mb);
  /* per layer: n_id·k + k + k² + k + k·2n_ch + 2n_ch + n_ch; the authors' dense layers have
   * D·k + k + k² + k + k·2D + 2D + D = 104598 (1045980 in all) */
  g_assert_cmpuint (fg_weight_set_numel (f.weights), ==, 10 * (25 * 256 + 256 + 256 * 256 + 256
                                                                + 256 * 50 + 50 + 25));
  g_assert_cmpuint (fg_weight_set_numel (f.weights), ==, 853230);
  flow_clear (&f);
  if (g_test_slow ())
    {
      flow_init (&f, 768, 1, ag);
      g_assert_cmpuint (fg_weight_set_numel (f.weights), ==, 15619968); /* authors: 23885568 */
      flow_clear (&f);
    }
  flow_init (&f, 3, 1, norescale);
  for (guint i = 0; i < fg_weight_set_len (f.weights); i++)
    {
      FgWeight *w = fg_weight_set_get (f.weights, i);
      g_assert_true (w->trainable == !g_str_has_suffix (w->name, ".rescale"));
    }
  flow_clear (&f);
}

/* The stored weights are the authors' dense initial values cut to the live rows and columns:
 * each linear layer drawn U(±1/√fan_in) at full shape, in order, from the flow's generator. */
static void
check_cut_init (const char *const *settings, gsize D, guint layers, guint k)
{
  Flow f;
  FgRng rng;
  flow_init (&f, D, 7, settings);
  fg_rng_init (&rng, 7, 0);
  g_autofree float *w_in = g_new (float, D * k), *b_in = g_new (float, k);
  g_autofree float *w_hid = g_new (float, k * k), *b_hid = g_new (float, k);
  g_autofree float *w_out = g_new (float, k * 2 * D), *b_out = g_new (float, 2 * D);
  const gboolean checker = g_strv_contains (settings, "mask=checkerboard");
  for (guint l = 0; l < layers; l++)
    {
      char name[64];
      const float bd = (float) (1.0 / sqrt ((double) D)), bk = (float) (1.0 / sqrt ((double) k));
      fg_rng_fill_uniform (&rng, w_in, D * k, -bd, bd);
      fg_rng_fill_uniform (&rng, b_in, k, -bd, bd);
      fg_rng_fill_uniform (&rng, w_hid, k * k, -bk, bk);
      fg_rng_fill_uniform (&rng, b_hid, k, -bk, bk);
      fg_rng_fill_uniform (&rng, w_out, k * 2 * D, -bk, bk);
      fg_rng_fill_uniform (&rng, b_out, 2 * D, -bk, bk);
      guint32 id[16], ch[16];
      gsize n_id = 0, n_ch = 0;
      for (gsize j = 0; j < D; j++)
        {
          const gboolean is_id = checker ? (j + l) % 2 == 0 : (l % 2 == 0 ? j < D / 2 : j >= D / 2);
          if (is_id)
            id[n_id++] = (guint32) j;
          else
            ch[n_ch++] = (guint32) j;
        }
      g_snprintf (name, sizeof name, "coupling%u.in.weight", l);
      FgWeight *w = fg_weight_set_lookup (f.weights, name);
      g_assert_nonnull (w);
      g_assert_cmpuint (fg_tensor_rows (&w->value), ==, n_id);
      for (gsize r = 0; r < n_id; r++)
        g_assert_cmpmem (fg_tensor_row (&w->value, r), k * sizeof (float), w_in + id[r] * k,
                         k * sizeof (float));
      g_snprintf (name, sizeof name, "coupling%u.hidden0.weight", l);
      w = fg_weight_set_lookup (f.weights, name);
      g_assert_cmpmem (w->value.data, k * k * sizeof (float), w_hid, k * k * sizeof (float));
      g_snprintf (name, sizeof name, "coupling%u.out.weight", l);
      w = fg_weight_set_lookup (f.weights, name);
      g_assert_cmpuint (fg_tensor_cols (&w->value), ==, 2 * n_ch);
      for (gsize r = 0; r < k; r++)
        for (gsize c = 0; c < n_ch; c++)
          {
            g_assert_cmpfloat (fg_tensor_row (&w->value, r)[c], ==, w_out[r * 2 * D + ch[c]]);
            g_assert_cmpfloat (fg_tensor_row (&w->value, r)[n_ch + c], ==,
                               w_out[r * 2 * D + D + ch[c]]);
          }
      g_snprintf (name, sizeof name, "coupling%u.out.bias", l);
      w = fg_weight_set_lookup (f.weights, name);
      for (gsize c = 0; c < n_ch; c++)
        g_assert_cmpfloat (w->value.data[n_ch + c], ==, b_out[D + ch[c]]);
      g_snprintf (name, sizeof name, "coupling%u.rescale", l);
      w = fg_weight_set_lookup (f.weights, name);
      g_assert_cmpuint (fg_tensor_numel (&w->value), ==, n_ch);
    }
  flow_clear (&f);
}

static void
test_cut_init (void)
{
  const char *halves[] = { "layers=3", "hidden=6", NULL };
  const char *checker[] = { "layers=3", "hidden=6", "mask=checkerboard", NULL };
  check_cut_init (halves, 7, 3, 6);
  check_cut_init (checker, 7, 3, 6);
}

static void
test_bad_input (void)
{
  const char *settings[] = { "layers=1", "hidden=4", NULL };
  g_autoptr (FgTensor) x = random_input (2, 3, 1);
  g_autoptr (FgTape) tape = fg_tape_new ();
  g_autoptr (GError) error = NULL;
  FgFlowRun run = { FALSE, NULL, { 0 } };
  FgVar *ld;
  Flow f;
  flow_init (&f, 4, 1, settings);
  g_assert_null (f.vt->forward (f.self, tape, fg_tape_constant (tape, x), &run, &ld, &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_DATA);
  flow_clear (&f);
}

/* The optional partial passes (feature visualisation): forward_to (L) is forward's z,
 * inverse_from (forward_to (x, ℓ), ℓ) = x for every ℓ, layer 0 is the input, the layers in
 * between differ from both ends, and a layer beyond L is an error. */
static void
test_partial_passes (void)
{
  const char *settings[] = { "layers=4", "hidden=16", NULL };
  const gsize D = 6, N = 32;
  g_autoptr (FgTensor) x = random_input (N, D, 11);
  g_autoptr (FgTensor) z = fg_tensor_new_2d (N, D);
  g_autoptr (GError) error = NULL;
  Flow f;
  guint L;
  flow_init (&f, D, 5, settings);
  for (guint i = 0; i < fg_weight_set_len (f.weights); i++)
    {
      FgWeight *w = fg_weight_set_get (f.weights, i);
      if (g_str_has_suffix (w->name, ".rescale"))
        fg_weight_init_const (w, 1.5f);
    }
  g_assert_true (FG_VTABLE_HAS (f.vt, FgFlowVTable, n_layers));
  g_assert_true (FG_VTABLE_HAS (f.vt, FgFlowVTable, forward_to));
  g_assert_true (FG_VTABLE_HAS (f.vt, FgFlowVTable, inverse_from));
  L = f.vt->n_layers (f.self);
  g_assert_cmpuint (L, ==, 4);
  flow_eval (&f, x, z, NULL);
  for (guint l = 0; l <= L; l++)
    {
      g_autoptr (FgTape) tape = fg_tape_new ();
      FgVar *h, *xr;
      fg_tape_set_grad_enabled (tape, FALSE);
      h = f.vt->forward_to (f.self, tape, fg_tape_constant (tape, x), l, NULL, &error);
      g_assert_no_error (error);
      g_assert_true (fg_tensor_same_shape (&h->value, x));
      if (l == 0)
        g_assert_cmpfloat (fg_tensor_max_abs_diff (&h->value, x), ==, 0.0);
      else
        g_assert_cmpfloat (fg_tensor_max_abs_diff (&h->value, x), >, 1e-2);
      if (l == L)
        g_assert_cmpfloat (fg_tensor_max_abs_diff (&h->value, z), <, 1e-6);
      else if (l > 0)
        g_assert_cmpfloat (fg_tensor_max_abs_diff (&h->value, z), >, 1e-2);
      xr = f.vt->inverse_from (f.self, tape, h, l, &error);
      g_assert_no_error (error);
      g_assert_cmpfloat (fg_tensor_max_abs_diff (&xr->value, x), <, 1e-4);
    }
  th_assert_partial_passes_reject_layer (f.vt, f.self, x, L);
  flow_clear (&f);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/realnvp/invertible", test_invertible);
  g_test_add_func ("/realnvp/logdet-jacobian", test_logdet_jacobian);
  g_test_add_func ("/realnvp/gradcheck", test_gradcheck);
  g_test_add_func ("/realnvp/masks", test_masks);
  g_test_add_func ("/realnvp/zero-init-identity", test_zero_init_identity);
  g_test_add_func ("/realnvp/dropout", test_dropout);
  g_test_add_func ("/realnvp/image-shape", test_image_shape);
  g_test_add_func ("/realnvp/parameter-counts", test_parameter_counts);
  g_test_add_func ("/realnvp/cut-init", test_cut_init);
  g_test_add_func ("/realnvp/bad-input", test_bad_input);
  g_test_add_func ("/realnvp/partial-passes", test_partial_passes);
  return g_test_run ();
}
