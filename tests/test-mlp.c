/* SPDX-License-Identifier: MIT */
/* flowgmm tests — the mlp and pi-model baselines: their training objectives gradient-checked
 * through the shared autodiff (tests/gradcheck.c), learning on blobs, reproducibility,
 * parameter validation.
 *
 * The plugin's source is included so that its loss can be built directly; the behavioural
 * tests load the built plugin through the registry. */
#include "../plugins/baselines/mlp.c"

#include "baseline-helpers.h"
#include "gradcheck.h"

typedef struct {
  Mlp *net;
  FgTensor *xl, *xu;
  gint32 *yl;
  const float *target; /* [nu, K] detached consistency target, or NULL */
  double cons_w;
  FgRng rng0;          /* the dropout masks: the same on every evaluation */
} LossCase;

static FgVar *
build_loss (FgTape *tape, FgVar *const *leaves, gpointer data)
{
  LossCase *c = data;
  FgRng rng = c->rng0;
  FgVar *xl = fg_tape_constant (tape, c->xl), *xu = NULL, *target = NULL;
  if (c->target != NULL)
    {
      FgTensor t = fg_tensor_wrap_2d ((float *) c->target, fg_tensor_rows (c->xu), c->net->K);
      xu = fg_tape_constant (tape, c->xu);
      target = fg_tape_constant (tape, &t);
    }
  return step_loss (c->net, tape, leaves, xl, c->yl, xu, target, c->cons_w, &rng);
}

static Mlp *
small_net (gboolean pi, gsize depth, double dropout, FgRng *rng)
{
  g_autoptr (FgParams) params = fg_params_new (pi ? pi_params : mlp_params);
  g_autofree char *d = g_strdup_printf ("%" G_GSIZE_FORMAT, depth);
  g_autofree char *p = g_strdup_printf ("%g", dropout);
  g_assert_true (fg_params_set (params, "hidden", "6", NULL));
  g_assert_true (fg_params_set (params, "depth", d, NULL));
  g_assert_true (fg_params_set (params, "dropout", p, NULL));
  return net_create (params, rng, pi);
}

static void
check_gradients (gboolean pi, gsize depth, double dropout)
{
  FgRng rng;
  LossCase c = { 0 };
  GcOptions opts;
  FgWeight *inputs[2 * (MAX_DEPTH + 1)];
  g_autofree float *target = NULL;
  g_autofree char *what = g_strdup_printf ("%s depth %" G_GSIZE_FORMAT " dropout %g",
                                           pi ? "pi-model" : "mlp", depth, dropout);

  fg_rng_init (&rng, 11, 0);
  c.net = small_net (pi, depth, dropout, &rng);
  net_build (c.net, 4, 3);
  bt_blobs (12, 7, 4, 3, 2.0, &c.xl, &c.yl);
  fg_rng_init (&c.rng0, 13, 0);
  if (pi)
    {
      g_autofree gint32 *yu = NULL;
      FgTape *tape = c.net->tape;
      FgVar *leaves[2 * (MAX_DEPTH + 1)], *p2;
      FgRng r = c.rng0;
      bt_blobs (14, 9, 4, 3, 2.0, &c.xu, &yu);
      /* the target from its own dropout pass, fixed during the check */
      fg_tape_reset (tape);
      net_leaves (c.net, tape, leaves);
      fg_rng_init (&r, 15, 0);
      p2 = consistency_target (c.net, tape, leaves, fg_tape_constant (tape, c.xu), &r);
      g_assert_false (p2->requires_grad);
      target = g_memdup (p2->value.data, 9 * 3 * sizeof (float));
      c.target = target;
      c.cons_w = 30.0;
    }
  for (guint l = 0; l < c.net->n_layers; l++)
    {
      inputs[2 * l] = c.net->w[l];
      inputs[2 * l + 1] = c.net->b[l];
    }
  gc_options_init (&opts);
  opts.eps = 1e-3;
  opts.atol = 2e-3;
  gc_assert (inputs, 2 * c.net->n_layers, build_loss, &c, &opts, what);

  fg_tensor_free (c.xl);
  fg_tensor_free (c.xu);
  g_free (c.yl);
  net_destroy (c.net);
}

static void
test_gradients (void)
{
  check_gradients (FALSE, 1, 0.0);
  check_gradients (FALSE, 3, 0.0);
  check_gradients (FALSE, 3, 0.5); /* fixed dropout masks */
  check_gradients (TRUE, 2, 0.5);
  check_gradients (TRUE, 3, 0.3);
}

/* The consistency term is exactly cons_w · Σ (p1 − p2)² / (B·K·K): compare the loss with and
 * without it against the formula. */
static void
test_consistency_normalisation (void)
{
  FgRng rng;
  Mlp *net;
  g_autoptr (FgTensor) xl = NULL, xu = NULL;
  g_autofree gint32 *yl = NULL, *yu = NULL;
  FgVar *leaves[2 * (MAX_DEPTH + 1)], *p1, *p2, *with, *without;
  FgTape *tape;
  FgRng r1, r2;
  double want = 0.0;
  const gsize B = 8;
  const guint K = 3;

  fg_rng_init (&rng, 1, 0);
  net = small_net (TRUE, 2, 0.5, &rng);
  net_build (net, 4, K);
  tape = net->tape;
  bt_blobs (2, 5, 4, K, 2.0, &xl, &yl);
  bt_blobs (3, B, 4, K, 2.0, &xu, &yu);
  fg_tape_set_grad_enabled (tape, FALSE);
  net_leaves (net, tape, leaves);
  p2 = consistency_target (net, tape, leaves, fg_tape_constant (tape, xu), &rng);
  /* p1 as step_loss draws it: after the labeled pass's masks */
  fg_rng_init (&r1, 4, 0);
  r2 = r1;
  fg_op_softmax (tape, net_forward (net, tape, leaves, fg_tape_constant (tape, xl), &r1, TRUE));
  p1 = fg_op_softmax (tape,
                      net_forward (net, tape, leaves, fg_tape_constant (tape, xu), &r1, TRUE));
  for (gsize i = 0; i < B * K; i++)
    want += ((double) p1->value.data[i] - p2->value.data[i])
            * ((double) p1->value.data[i] - p2->value.data[i]);
  want *= 30.0 / (double) (B * K * K);
  r1 = r2;
  with = step_loss (net, tape, leaves, fg_tape_constant (tape, xl), yl,
                    fg_tape_constant (tape, xu), p2, 30.0, &r1);
  r1 = r2;
  without = step_loss (net, tape, leaves, fg_tape_constant (tape, xl), yl, NULL, NULL, 0.0, &r1);
  g_assert_cmpfloat (want, >, 1e-6);
  g_assert_cmpfloat_with_epsilon (with->value.data[0] - without->value.data[0], want,
                                  1e-5 * (1 + want));
  net_destroy (net);
}

static void
test_learns_blobs (void)
{
  const char *names[] = { "mlp", "pi-model" };
  g_autoptr (FgTensor) x = NULL, xu = NULL, xt = NULL;
  g_autofree gint32 *y = NULL, *yu = NULL, *yt = NULL;
  bt_blobs (8, 30, 8, 3, 4.0, &x, &y);
  bt_blobs (8, 600, 8, 3, 4.0, &xu, &yu);
  bt_blobs (8, 1500, 8, 3, 4.0, &xt, &yt); /* same seed: the same centres */
  for (int i = 0; i < 2; i++)
    {
      BtModel m;
      FgSplit split;
      g_autoptr (GError) error = NULL;
      double acc;
      g_assert_true (bt_model_init (&m, names[i],
                                    (const char *[]){ "unlabeled_batch=200", "hidden=64",
                                                      "epochs=60", "lr=3e-3", NULL } + (i == 0),
                                    0, &error));
      g_assert_no_error (error);
      bt_split_init (&split, 3, x, y, xu, NULL, NULL);
      bt_fit (&m, &split);
      acc = bt_accuracy (&m, xt, yt, 3);
      g_test_message ("%s on blobs: %.3f", names[i], acc);
      g_assert_cmpfloat (acc, >, 0.9);
      bt_model_clear (&m);
    }
}

static void
test_reproducible (void)
{
  g_autoptr (FgTensor) x = NULL, xu = NULL;
  g_autofree gint32 *y = NULL, *yu = NULL;
  float *proba[2];
  bt_blobs (8, 30, 5, 2, 2.0, &x, &y);
  bt_blobs (9, 100, 5, 2, 2.0, &xu, &yu);
  for (int run = 0; run < 2; run++)
    {
      BtModel m;
      FgSplit split;
      g_autoptr (GError) error = NULL;
      g_autofree gint32 *labels = g_new (gint32, 100);
      proba[run] = g_new (float, 200);
      g_assert_true (bt_model_init (&m, "pi-model",
                                    (const char *[]){ "hidden=16", "epochs=5",
                                                      "unlabeled_batch=32", NULL },
                                    42, &error));
      bt_split_init (&split, 2, x, y, xu, NULL, NULL);
      bt_fit (&m, &split);
      g_assert_true (m.vt->predict (m.self, xu, labels, proba[run], &error));
      bt_model_clear (&m);
    }
  g_assert_cmpmem (proba[0], 200 * sizeof (float), proba[1], 200 * sizeof (float));
  g_free (proba[0]);
  g_free (proba[1]);
}

static void
test_param_validation (void)
{
  const char *bad[] = { "depth=0", "depth=17", "dropout=1", "hidden=0", "lr=-1",
                        "optimizer=sgd", "epochs=0", "schedule=step", NULL };
  const char *bad_pi[] = { "cons_weight=-1", "unlabeled_batch=0", "rampup=-1", NULL };
  for (guint i = 0; bad[i] != NULL; i++)
    for (int pi = 0; pi < 2; pi++)
      {
        BtModel m;
        g_autoptr (GError) error = NULL;
        g_assert_false (bt_model_init (&m, pi ? "pi-model" : "mlp",
                                       (const char *[]){ bad[i], NULL }, 0, &error));
        g_assert_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM);
      }
  for (guint i = 0; bad_pi[i] != NULL; i++)
    {
      BtModel m;
      g_autoptr (GError) error = NULL;
      g_assert_false (bt_model_init (&m, "pi-model", (const char *[]){ bad_pi[i], NULL }, 0,
                                     &error));
      g_assert_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM);
      g_clear_error (&error);
      /* the mlp does not know the Π-model's keys */
      g_assert_false (bt_model_init (&m, "mlp", (const char *[]){ bad_pi[i], NULL }, 0,
                                     &error));
      g_assert_nonnull (error);
    }
  {
    BtModel m;
    float x[2] = { 0, 1 };
    gint32 label;
    FgTensor tx = fg_tensor_wrap_2d (x, 1, 2);
    g_autoptr (GError) error = NULL;
    g_assert_true (bt_model_init (&m, "mlp", NULL, 0, &error));
    g_assert_false (m.vt->predict (m.self, &tx, &label, NULL, &error));
    g_assert_error (error, FG_ERROR, FG_ERROR_FAILED);
    bt_model_clear (&m);
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/mlp/gradients", test_gradients);
  g_test_add_func ("/mlp/consistency-normalisation", test_consistency_normalisation);
  g_test_add_func ("/mlp/learns-blobs", test_learns_blobs);
  g_test_add_func ("/mlp/reproducible", test_reproducible);
  g_test_add_func ("/mlp/param-validation", test_param_validation);
  return g_test_run ();
}
