/* SPDX-License-Identifier: MIT */
/* flowgmm tests — the loss plugin "flowgmm" (plugins/losses/flowgmm.c) and the FgLossBatch
 * accessors (core/method/loss-batch.c), with the realnvp-mlp flow, both loaded through the registry.
 *
 * - values: eq. 4 (labeled NLL without log π_y, unlabeled NLL with log(1/K), per-example means
 *   not divided by D) against the mixture's plain helpers applied to the flow's own output;
 *   eq. 7 with its ramp-up; labeled-only and unlabeled-only batches;
 * - gradients of each loss through the flow (weights, and the means when trainable) against
 *   finite differences;
 * - EM (App. A): with soft responsibilities held fixed, the M-step gradient equals the gradient
 *   of the marginal likelihood (Fisher's identity), so flowgmm-em and flowgmm-nll have the same
 *   gradient at every point;
 * - the batch: perturbed passes draw fresh noise, NO_GRAD records nothing.
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include <flowgmm/flowgmm.h>

#include "gradcheck.h"
#include "registry-helpers.h"

/* Everything one loss evaluation needs. */
typedef struct {
  const FgFlowVTable *flow_vt;
  gpointer flow;
  FgWeightSet *weights, *gmm_weights;
  FgGmm *gmm;
  const FgLossVTable *loss_vt;
  gpointer loss;
  FgRng rng;
  FgLossBatch *batch;
  FgTensor *x;  /* labeled rows first */
  gint32 *y;
  gsize n_l, n_u, D;
  guint K;
  double epoch;
  const float *targets; /* n_u × K soft targets handed to the batch, or NULL */
} Fixture;

static void
fixture_init (Fixture *f, const char *loss_name, const char *const *loss_settings,
              const char *const *flow_settings, gsize n_l, gsize n_u, gsize D, guint K,
              guint64 seed)
{
  g_autoptr (GError) error = NULL;
  const FgComponent *fc = fg_registry_find (th_registry (), FG_KIND_FLOW, "realnvp-mlp", &error);
  const FgComponent *lc = fg_registry_find (th_registry (), FG_KIND_LOSS, loss_name, &error);
  g_autoptr (FgParams) fp = NULL;
  g_autoptr (FgParams) lp = NULL;
  FgSampleShape shape = { 1, { D, 1, 1 } };
  FgRng init;
  g_assert_no_error (error);
  memset (f, 0, sizeof *f);
  fp = th_params_new (fc, flow_settings);
  lp = th_params_new (lc, loss_settings);
  f->flow_vt = fc->vtable;
  f->loss_vt = lc->vtable;
  f->weights = fg_weight_set_new ();
  f->gmm_weights = fg_weight_set_new ();
  fg_rng_init (&init, seed, 1);
  f->flow = f->flow_vt->create (fp, &shape, f->weights, &init, &error);
  g_assert_no_error (error);
  f->loss = f->loss_vt->create (lp, &error);
  g_assert_no_error (error);
  f->gmm = fg_gmm_new (K, D, 1.0, f->gmm_weights);
  fg_gmm_init_means (f->gmm, FG_GMM_MEANS_RANDOM, 1.0, 0.0, &init);
  f->n_l = n_l;
  f->n_u = n_u;
  f->D = D;
  f->K = K;
  f->x = fg_tensor_new_2d (MAX (n_l + n_u, 1), D);
  f->x->shape[0] = n_l + n_u;
  f->y = g_new (gint32, MAX (n_l, 1));
  fg_rng_fill_normal (&init, f->x->data, (n_l + n_u) * D, 0.0f, 1.0f);
  for (gsize i = 0; i < n_l; i++)
    f->y[i] = (gint32) (i % K);
  fg_rng_init (&f->rng, seed, 2);
  f->batch = fg_loss_batch_new (f->gmm, f->flow_vt, f->flow, &f->rng);
}

static void
fixture_clear (Fixture *f)
{
  fg_loss_batch_free (f->batch);
  f->loss_vt->destroy (f->loss);
  f->flow_vt->destroy (f->flow);
  fg_gmm_free (f->gmm);
  fg_weight_set_free (f->weights);
  fg_weight_set_free (f->gmm_weights);
  f->x->shape[0] = MAX (f->n_l + f->n_u, 1);
  fg_tensor_free (f->x);
  g_free (f->y);
}

/* The loss on `tape` (reset first); deterministic: the batch RNG restarts every time. */
static FgVar *
fixture_loss (Fixture *f, FgTape *tape)
{
  g_autoptr (GError) error = NULL;
  FgVar *loss;
  fg_tape_reset (tape);
  fg_rng_init (&f->rng, 77, 7);
  fg_loss_batch_begin (f->batch, tape, f->x, f->n_l, f->y);
  fg_loss_batch_set_targets (f->batch, f->targets);
  fg_loss_batch_set_progress (f->batch, 0, f->epoch, 100.0);
  loss = f->loss_vt->compute (f->loss, f->batch, &error);
  g_assert_no_error (error);
  g_assert_nonnull (loss);
  g_assert_cmpuint (fg_tensor_numel (&loss->value), ==, 1);
  return loss;
}

/* The flow's evaluation-mode output for all rows (no dropout in these fixtures). */
static void
flow_outputs (Fixture *f, FgTensor *z, double *logdet)
{
  g_autoptr (FgTape) tape = fg_tape_new ();
  g_autoptr (GError) error = NULL;
  FgFlowRun run = { FALSE, NULL, { 0 } };
  FgVar *ld = NULL;
  FgVar *zv = f->flow_vt->forward (f->flow, tape, fg_tape_constant (tape, f->x), &run, &ld, &error);
  g_assert_no_error (error);
  fg_tensor_copy_into (z, &zv->value);
  for (gsize i = 0; i < f->n_l + f->n_u; i++)
    logdet[i] = fg_tensor_row (&ld->value, i)[0];
}

/* eq. 4 by hand: λ·mean_l[−log N(z; μ_y) − ld] + a·mean_u[−log p(z) − ld]; also the
 * consistency term's mean with ŷ = argmax of the same z (x′ = x″ without noise/dropout). */
static void
reference_terms (Fixture *f, double *lab, double *unlab, double *cons)
{
  const gsize N = f->n_l + f->n_u;
  g_autoptr (FgTensor) z = fg_tensor_new_2d (MAX (N, 1), f->D);
  g_autofree double *ld = g_new (double, MAX (N, 1));
  g_autofree double *comp = g_new (double, MAX (N, 1) * f->K);
  g_autofree double *mix = g_new (double, MAX (N, 1));
  g_autofree gint32 *yhat = g_new (gint32, MAX (N, 1));
  z->shape[0] = N;
  flow_outputs (f, z, ld);
  fg_gmm_log_prob_components (f->gmm, z, comp);
  fg_gmm_log_prob (f->gmm, z, mix);
  fg_gmm_predict (f->gmm, z, yhat, NULL);
  *lab = *unlab = *cons = 0.0;
  for (gsize i = 0; i < f->n_l; i++)
    *lab += -(comp[i * f->K + f->y[i]] + ld[i]) / (double) f->n_l;
  for (gsize i = f->n_l; i < N; i++)
    {
      /* the mixture term includes log π = −log K */
      double lse = -INFINITY, s = 0.0;
      for (guint k = 0; k < f->K; k++)
        lse = MAX (lse, comp[i * f->K + k]);
      for (guint k = 0; k < f->K; k++)
        s += exp (comp[i * f->K + k] - lse);
      g_assert_cmpfloat_with_epsilon (mix[i], lse + log (s) - log (f->K), 1e-9);
      *unlab += -(mix[i] + ld[i]) / (double) f->n_u;
      *cons += -(comp[i * f->K + yhat[i]] + ld[i]) / (double) f->n_u;
    }
  z->shape[0] = MAX (N, 1);
}

static const char *const small_flow[] = { "layers=3", "hidden=8", "dropout=0",
                                          "activation=tanh", NULL };

static void
test_nll_value (void)
{
  const char *const settings[] = { "label_weight=2.0", "unlabeled_weight=0.5", NULL };
  const gsize sizes[][2] = { { 6, 10 }, { 6, 0 }, { 0, 9 } };
  for (guint si = 0; si < G_N_ELEMENTS (sizes); si++)
    {
      g_autoptr (FgTape) tape = fg_tape_new ();
      double lab, unlab, cons, want;
      Fixture f;
      FgVar *loss;
      fixture_init (&f, "flowgmm-nll", settings, small_flow, sizes[si][0], sizes[si][1], 5, 3, 1);
      reference_terms (&f, &lab, &unlab, &cons);
      want = 2.0 * lab + 0.5 * unlab;
      loss = fixture_loss (&f, tape);
      g_test_message ("n_l %" G_GSIZE_FORMAT " n_u %" G_GSIZE_FORMAT ": loss %.7g, by hand %.7g",
                      f.n_l, f.n_u, (double) loss->value.data[0], want);
      g_assert_cmpfloat_with_epsilon (loss->value.data[0], want, 1e-5 * (1 + fabs (want)));
      fixture_clear (&f);
    }
}

/* The per-example NLL is summed over dimensions: with an identity flow and means at 0 it is
 * exactly D/2·log 2π + ‖x‖²/2, not its D-th part. */
static void
test_nll_not_divided_by_d (void)
{
  const char *const flow[] = { "layers=1", "hidden=4", "zero_init=true", NULL };
  g_autoptr (FgTape) tape = fg_tape_new ();
  double want = 0.0;
  Fixture f;
  FgVar *loss;
  fixture_init (&f, "flowgmm-nll", NULL, flow, 4, 0, 9, 2, 2);
  memset (fg_gmm_get_means (f.gmm)->value.data, 0, 2 * 9 * sizeof (float));
  for (gsize i = 0; i < 4; i++)
    {
      double q = 0.0;
      for (gsize j = 0; j < 9; j++)
        q += pow (fg_tensor_row (f.x, i)[j], 2);
      want += (0.5 * 9 * log (2 * G_PI) + 0.5 * q) / 4.0;
    }
  loss = fixture_loss (&f, tape);
  g_assert_cmpfloat_with_epsilon (loss->value.data[0], want, 1e-5 * want);
  fixture_clear (&f);
}

static void
test_cons_value_and_ramp (void)
{
  const char *const settings[] = { "cons_weight=2.0", "cons_rampup=10", "unlabeled_weight=0.7",
                                   NULL };
  const double epochs[] = { 0.0, 0.99, 4.5, 9.0, 50.0 };
  const double ramp[] = { 0.1, 0.1, 0.5, 1.0, 1.0 };
  g_autoptr (FgTape) tape = fg_tape_new ();
  double lab, unlab, cons;
  Fixture f;
  fixture_init (&f, "flowgmm-cons", settings, small_flow, 5, 12, 4, 3, 3);
  reference_terms (&f, &lab, &unlab, &cons);
  for (guint e = 0; e < G_N_ELEMENTS (epochs); e++)
    {
      double want = lab + 0.7 * unlab + 2.0 * ramp[e] * cons;
      FgVar *loss;
      f.epoch = epochs[e];
      loss = fixture_loss (&f, tape);
      g_assert_cmpfloat_with_epsilon (loss->value.data[0], want, 1e-5 * (1 + fabs (want)));
    }
  fixture_clear (&f);
}

typedef struct {
  Fixture *f;
} LossBuild;

static FgVar *
build_loss (FgTape *tape, FgVar *const *inputs, gpointer user_data)
{
  LossBuild *b = user_data;
  Fixture *f = b->f;
  g_autoptr (GError) error = NULL;
  /* gc_check has reset the tape and made leaves; the flow takes its own weight leaves. */
  fg_rng_init (&f->rng, 77, 7);
  fg_loss_batch_begin (f->batch, tape, f->x, f->n_l, f->y);
  fg_loss_batch_set_targets (f->batch, f->targets);
  fg_loss_batch_set_progress (f->batch, 0, f->epoch, 100.0);
  return f->loss_vt->compute (f->loss, f->batch, &error);
}

static void
gradcheck_loss_targets (const char *name, const char *const *settings, gboolean means_trainable,
                        guint64 seed, const float *targets)
{
  Fixture f;
  LossBuild b = { &f };
  FgWeight *inputs[16];
  guint n = 0;
  GcOptions opts;
  char what[96];
  fixture_init (&f, name, settings, small_flow, 4, 6, 3, 2, seed);
  f.targets = targets;
  /* means well apart, so that ŷ (cons) and the hard E-step do not flip under ±h */
  fg_gmm_init_means (f.gmm, FG_GMM_MEANS_CIRCLE, 4.0, 0.3, NULL);
  f.epoch = 3.0;
  if (means_trainable)
    {
      fg_gmm_set_trainable (f.gmm, TRUE, TRUE);
      inputs[n++] = fg_gmm_get_means (f.gmm);
      inputs[n++] = fg_gmm_get_sigma_raw (f.gmm);
    }
  for (guint i = 0; i < fg_weight_set_len (f.weights) && n < 16; i++)
    inputs[n++] = fg_weight_set_get (f.weights, i);
  gc_options_init (&opts);
  opts.eps = 3e-3;
  opts.atol = 3e-3;
  g_snprintf (what, sizeof what, "%s%s", name, means_trainable ? " with trainable mixture" : "");
  gc_assert (inputs, n, build_loss, &b, &opts, what);
  fixture_clear (&f);
}

static void
gradcheck_loss (const char *name, const char *const *settings, gboolean means_trainable,
                guint64 seed)
{
  gradcheck_loss_targets (name, settings, means_trainable, seed, NULL);
}

/* Soft targets from the trainer replace the unlabeled term: a·mean_u[−Σ_k q_ik log N(z_i; μ_k)
 * + log K − ld_i], by hand; the labeled term is unchanged; and the gradient. */
static void
test_targets (void)
{
  const char *const w[] = { "label_weight=1.5", "unlabeled_weight=0.7", NULL };
  const char *const loss_names[] = { "flowgmm-nll", "flowgmm-em" };
  const float q[6 * 2] = { 0.9f, 0.1f, 0.2f, 0.8f, 0.5f, 0.5f, 1.0f, 0.0f, 0.3f, 0.7f, 0.0f, 1.0f };
  for (guint l = 0; l < G_N_ELEMENTS (loss_names); l++)
    {
      Fixture f;
      g_autoptr (FgTape) tape = fg_tape_new ();
      g_autoptr (FgTensor) z = NULL;
      g_autofree double *ld = NULL, *comp = NULL;
      double lab, unlab, cons, want = 0.0;
      const gsize N = 10;
      FgVar *loss;
      fixture_init (&f, loss_names[l], w, small_flow, 4, 6, 3, 2, 21 + l);
      f.targets = q;
      reference_terms (&f, &lab, &unlab, &cons);
      z = fg_tensor_new_2d (N, f.D);
      ld = g_new (double, N);
      comp = g_new (double, N * f.K);
      flow_outputs (&f, z, ld);
      fg_gmm_log_prob_components (f.gmm, z, comp);
      for (gsize i = f.n_l; i < N; i++)
        {
          double e = 0.0;
          for (guint k = 0; k < f.K; k++)
            e += q[(i - f.n_l) * f.K + k] * comp[i * f.K + k];
          want += (-e + log ((double) f.K) - ld[i]) / (double) f.n_u;
        }
      want = 1.5 * lab + 0.7 * want;
      loss = fixture_loss (&f, tape);
      g_assert_cmpfloat_with_epsilon (loss->value.data[0], want, 1e-4 * MAX (1.0, fabs (want)));
      /* without targets, the loss's own unlabeled term again */
      f.targets = NULL;
      loss = fixture_loss (&f, tape);
      g_assert_cmpfloat (fabs (loss->value.data[0] - want), >, 1e-3);
      fixture_clear (&f);
    }
  gradcheck_loss_targets ("flowgmm-nll", w, FALSE, 31, q);
  gradcheck_loss_targets ("flowgmm-nll", w, TRUE, 32, q);
  gradcheck_loss_targets ("flowgmm-cons", w, FALSE, 33, q);
}

static void
test_gradcheck (void)
{
  const char *const nll[] = { "label_weight=1.5", "unlabeled_weight=0.8", NULL };
  const char *const cons[] = { "cons_weight=1.3", "cons_rampup=2", NULL };
  const char *const hard_em[] = { "hard=true", NULL };
  gradcheck_loss ("flowgmm-nll", nll, FALSE, 4);
  gradcheck_loss ("flowgmm-nll", nll, TRUE, 5);
  gradcheck_loss ("flowgmm-cons", cons, FALSE, 6);
  gradcheck_loss ("flowgmm-cons", cons, TRUE, 7);
  gradcheck_loss ("flowgmm-em", hard_em, FALSE, 8);
}

/* Soft EM's M-step gradient with the E-step held fixed is the marginal likelihood's gradient
 * (Fisher's identity), so it must equal flowgmm-nll's (gradient-checked above). */
static void
test_em_fisher_identity (void)
{
  const char *const w[] = { "label_weight=1.2", "unlabeled_weight=0.9", NULL };
  g_autoptr (FgTape) tape = fg_tape_new ();
  g_autoptr (GError) error = NULL;
  g_autofree float *g_nll = NULL;
  Fixture em, nll;
  gsize total = 0, off = 0;
  double max_diff = 0.0, max_g = 0.0, v_em, v_nll;
  fixture_init (&nll, "flowgmm-nll", w, small_flow, 5, 8, 4, 3, 9);
  fixture_init (&em, "flowgmm-em", w, small_flow, 5, 8, 4, 3, 9);
  fg_gmm_set_trainable (nll.gmm, TRUE, FALSE);
  fg_gmm_set_trainable (em.gmm, TRUE, FALSE);
  total = fg_weight_set_numel (nll.weights) + fg_weight_set_numel (nll.gmm_weights);
  g_nll = g_new (float, total);

  fg_weight_set_zero_grad (nll.weights);
  fg_weight_set_zero_grad (nll.gmm_weights);
  g_assert_true (fg_tape_backward (tape, fixture_loss (&nll, tape), &error));
  v_nll = 0;
  for (int s = 0; s < 2; s++)
    {
      FgWeightSet *set = s ? nll.gmm_weights : nll.weights;
      for (guint i = 0; i < fg_weight_set_len (set); i++)
        {
          FgWeight *wt = fg_weight_set_get (set, i);
          if (!wt->trainable)
            continue;
          memcpy (g_nll + off, wt->grad.data, fg_tensor_numel (&wt->grad) * sizeof (float));
          off += fg_tensor_numel (&wt->grad);
        }
    }
  fg_weight_set_zero_grad (em.weights);
  fg_weight_set_zero_grad (em.gmm_weights);
  {
    FgVar *loss = fixture_loss (&em, tape);
    v_em = loss->value.data[0];
    g_assert_true (fg_tape_backward (tape, loss, &error));
  }
  v_nll = fixture_loss (&nll, tape)->value.data[0];
  off = 0;
  for (int s = 0; s < 2; s++)
    {
      FgWeightSet *set = s ? em.gmm_weights : em.weights;
      for (guint i = 0; i < fg_weight_set_len (set); i++)
        {
          FgWeight *wt = fg_weight_set_get (set, i);
          if (!wt->trainable)
            continue;
          for (gsize k = 0; k < fg_tensor_numel (&wt->grad); k++, off++)
            {
              max_diff = MAX (max_diff, fabs ((double) wt->grad.data[k] - g_nll[off]));
              max_g = MAX (max_g, fabs ((double) g_nll[off]));
            }
        }
    }
  g_test_message ("EM loss %g (NLL %g: differs by the entropy term); max |d grad| %g of max "
                  "|grad| %g", v_em, v_nll, max_diff, max_g);
  g_assert_cmpuint (off, ==, total);
  g_assert_cmpfloat (max_g, >, 1e-2);
  g_assert_cmpfloat (max_diff, <, 1e-4 * (1 + max_g));
  g_assert_cmpfloat (v_em, >=, v_nll - 1e-4); /* E_q[−log p(x,t)] = −log p(x) + H(q) */
  fixture_clear (&em);
  fixture_clear (&nll);
}

/* Perturbed passes draw fresh noise; NO_GRAD records nothing; EVAL ignores dropout. */
static void
test_batch_forward (void)
{
  const char *const flow[] = { "layers=2", "hidden=8", "dropout=0.5", NULL };
  g_autoptr (FgTape) tape = fg_tape_new ();
  g_autoptr (GError) error = NULL;
  FgVar *x, *z1, *z2, *z3, *z4, *ld;
  FgTapeStats before, after;
  Fixture f;
  fixture_init (&f, "flowgmm-nll", NULL, flow, 3, 5, 4, 2, 10);
  fg_loss_batch_set_input_noise (f.batch, 0.1);
  fg_loss_batch_begin (f.batch, tape, f.x, f.n_l, f.y);
  g_assert_cmpuint (fg_loss_batch_get_n (f.batch, FG_LOSS_SET_LABELED), ==, 3);
  g_assert_cmpuint (fg_loss_batch_get_n (f.batch, FG_LOSS_SET_UNLABELED), ==, 5);
  g_assert_cmpuint (fg_loss_batch_get_n (f.batch, FG_LOSS_SET_ALL), ==, 8);
  g_assert_cmpuint (fg_loss_batch_get_n_classes (f.batch), ==, 2);
  g_assert_true (fg_loss_batch_get_labels (f.batch) == f.y);
  g_assert_true (fg_loss_batch_get_gmm (f.batch) == f.gmm);
  g_assert_true (fg_loss_batch_get_tape (f.batch) == tape);
  g_assert_true (fg_loss_batch_get_rng (f.batch) == &f.rng);
  x = fg_loss_batch_get_x (f.batch, FG_LOSS_SET_UNLABELED);
  g_assert_cmpuint (fg_tensor_rows (&x->value), ==, 5);
  g_assert_cmpfloat (x->value.data[0], ==, fg_tensor_row (f.x, 3)[0]);

  z1 = fg_loss_batch_forward (f.batch, x, FG_LOSS_FORWARD_PERTURB, &ld, &error);
  z2 = fg_loss_batch_forward (f.batch, x, FG_LOSS_FORWARD_PERTURB, &ld, &error);
  g_assert_no_error (error);
  g_assert_cmpfloat (fg_tensor_max_abs_diff (&z1->value, &z2->value), >, 0.0);
  z3 = fg_loss_batch_forward (f.batch, x, FG_LOSS_FORWARD_EVAL, &ld, &error);
  z4 = fg_loss_batch_forward (f.batch, x, FG_LOSS_FORWARD_EVAL, &ld, &error);
  g_assert_cmpfloat (fg_tensor_max_abs_diff (&z3->value, &z4->value), ==, 0.0);

  /* a weight-dependent pass records ops, a NO_GRAD one none */
  fg_tape_get_stats (tape, &before);
  fg_loss_batch_forward (f.batch, x, FG_LOSS_FORWARD_PERTURB | FG_LOSS_FORWARD_NO_GRAD, &ld,
                         &error);
  fg_tape_get_stats (tape, &after);
  g_assert_cmpuint (after.n_nodes, ==, before.n_nodes);
  g_assert_true (fg_tape_get_grad_enabled (tape));
  fixture_clear (&f);
}

static void
test_empty_batch (void)
{
  g_autoptr (FgTape) tape = fg_tape_new ();
  g_autoptr (GError) error = NULL;
  Fixture f;
  fixture_init (&f, "flowgmm-em", NULL, small_flow, 0, 0, 2, 2, 11);
  fg_loss_batch_begin (f.batch, tape, f.x, 0, NULL);
  g_assert_null (f.loss_vt->compute (f.loss, f.batch, &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_DATA);
  fixture_clear (&f);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/flowgmm-losses/nll-value", test_nll_value);
  g_test_add_func ("/flowgmm-losses/nll-not-divided-by-d", test_nll_not_divided_by_d);
  g_test_add_func ("/flowgmm-losses/cons-value-and-ramp", test_cons_value_and_ramp);
  g_test_add_func ("/flowgmm-losses/gradcheck", test_gradcheck);
  g_test_add_func ("/flowgmm-losses/em-fisher-identity", test_em_fisher_identity);
  g_test_add_func ("/flowgmm-losses/targets", test_targets);
  g_test_add_func ("/flowgmm-losses/batch-forward", test_batch_forward);
  g_test_add_func ("/flowgmm-losses/empty-batch", test_empty_batch);
  return g_test_run ();
}
