/* SPDX-License-Identifier: MIT */
/* flowgmm tests — the core's worker pool and the kernels it splits.
 *
 * - the pool runs every task exactly once, nested jobs run inline, two application threads
 *   sharing the pool both get their work done;
 * - products (matmul in all four transpositions, linear, linear_act, linear_act_dropout and
 *   linear_cols forward and backward, over shapes from skinny 256×21 to ragged 37×53) at 2, 3
 *   and 4 threads equal the 1-thread values within float rounding (|a − b| <= 1e-5·(1 + |b|):
 *   a split changes OpenBLAS's blocking, hence the order of some sums; dropout masks are the
 *   same) and are bit-identical from run to run at a fixed count;
 * - dropout masks are the same for every thread count and drop the right fraction;
 * - a training run of the flowgmm method is bit-reproducible at 2 threads and close to 1;
 * - the optimizer's fused, threaded step equals the plain one bit for bit (clip, Adam/AdamW,
 *   zeroing, blocks that never get a gradient).
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include <flowgmm/flowgmm.h>

#include "registry-helpers.h"

static const guint thread_counts[] = { 1, 2, 3, 4 };

/* ------------------------------------------------------------------ the pool itself */

typedef struct {
  gint hits[64];
  guint n;
} Hits;

static void
count_task (gpointer data, guint t, guint n)
{
  Hits *h = data;
  g_assert_cmpuint (n, ==, h->n);
  g_atomic_int_inc (&h->hits[t]);
  /* a kernel started inside a task runs inline, unsplit */
  g_assert_cmpuint (fg_tape_parallel_tasks (1e9), ==, 1);
}

static void
test_pool_run (void)
{
  const guint saved = fg_get_num_threads ();
  for (guint k = 0; k < G_N_ELEMENTS (thread_counts); k++)
    {
      fg_set_num_threads (thread_counts[k]);
      const guint n = fg_tape_parallel_tasks (1e9);
      g_assert_cmpuint (n, ==, thread_counts[k]);
      g_assert_cmpuint (fg_tape_parallel_tasks (10.0), ==, 1); /* too small to split */
      for (guint rep = 0; rep < 2000; rep++)
        {
          Hits h;
          memset (&h, 0, sizeof h);
          h.n = n;
          fg_tape_parallel_run (n, count_task, &h);
          for (guint t = 0; t < n; t++)
            g_assert_cmpint (h.hits[t], ==, 1);
        }
      /* more tasks than threads run too (serially) */
      Hits h;
      memset (&h, 0, sizeof h);
      h.n = 7;
      fg_tape_parallel_run (7, count_task, &h);
      for (guint t = 0; t < 7; t++)
        g_assert_cmpint (h.hits[t], ==, 1);
    }
  fg_set_num_threads (saved);
}

static gpointer
pool_client (gpointer data)
{
  for (guint rep = 0; rep < 3000; rep++)
    {
      Hits h;
      memset (&h, 0, sizeof h);
      h.n = 2;
      fg_tape_parallel_run (2, count_task, &h);
      g_assert_cmpint (h.hits[0], ==, 1);
      g_assert_cmpint (h.hits[1], ==, 1);
    }
  return data;
}

/* Two application threads share the pool: whoever does not get it runs its tasks inline. */
static void
test_pool_concurrent (void)
{
  const guint saved = fg_get_num_threads ();
  fg_set_num_threads (2);
  GThread *a = g_thread_new ("client-a", pool_client, NULL);
  GThread *b = g_thread_new ("client-b", pool_client, NULL);
  g_thread_join (a);
  g_thread_join (b);
  fg_set_num_threads (saved);
}

/* ------------------------------------------------------------------ threaded kernels */

static float
max_rel_diff (const float *a, const float *b, gsize n)
{
  double worst = 0.0;
  for (gsize i = 0; i < n; i++)
    {
      const double d = fabs ((double) a[i] - b[i]) / (1.0 + fabs ((double) b[i]));
      worst = MAX (worst, d);
    }
  return (float) worst;
}

typedef struct {
  gsize m, k, n;
} Shape;

static const Shape shapes[] = {
  { 256, 21, 256 }, { 256, 256, 256 }, { 256, 256, 42 }, { 10, 256, 256 },
  { 37, 53, 29 }, { 600, 64, 48 }, { 1, 300, 70 }, { 300, 1, 70 }, { 256, 384, 512 },
};

/* All outputs of one configuration: the forward value then every gradient, concatenated. */
typedef struct {
  float *v;
  gsize n;
} Outputs;

static void
outputs_add (Outputs *o, const float *x, gsize n)
{
  o->v = g_renew (float, o->v, o->n + n);
  memcpy (o->v + o->n, x, n * sizeof (float));
  o->n += n;
}

/* Convolutions split their images over the pool: 2 threads give 1 thread's values (up to the
 * order of the weight-gradient sums) and the same bits every time.  The 3×3 case runs Winograd,
 * whose weight gradient sums transformed products that cancel afterwards (Gᵀ dU G), so a
 * different order of those sums moves it more: 2e-4 there. */
static void
conv_run (guint threads, gsize kh, guint pad, Outputs *o)
{
  const gsize N = 5, C = 8, H = 24, W = 22, Co = 32; /* large enough to split */
  g_autoptr (FgWeightSet) set = fg_weight_set_new ();
  FgWeight *x = fg_weight_set_add (set, "x", 4, (gsize[]){ N, C, H, W }, FALSE);
  FgWeight *w = fg_weight_set_add (set, "w", 4, (gsize[]){ Co, C, kh, kh }, FALSE);
  FgWeight *b = fg_weight_set_add_2d (set, "b", 1, Co, FALSE);
  FgRng rng;
  fg_rng_init (&rng, 3, 3);
  fg_weight_init_uniform (x, &rng, 1.0f);
  fg_weight_init_uniform (w, &rng, 1.0f);
  fg_weight_init_uniform (b, &rng, 1.0f);
  const guint saved = fg_get_num_threads ();
  fg_set_num_threads (threads);
  g_autoptr (FgTape) tape = fg_tape_new ();
  FgVar *y = fg_op_conv2d (tape, fg_tape_weight (tape, x), fg_tape_weight (tape, w),
                           fg_tape_weight (tape, b), pad);
  FgVar *loss = fg_op_sum (tape, fg_op_square (tape, y), FG_AXIS_ALL);
  g_assert_true (fg_tape_backward (tape, loss, NULL));
  fg_set_num_threads (saved);
  memset (o, 0, sizeof *o);
  outputs_add (o, y->value.data, fg_tensor_numel (&y->value));
  outputs_add (o, x->grad.data, fg_tensor_numel (&x->grad));
  outputs_add (o, w->grad.data, fg_tensor_numel (&w->grad));
  outputs_add (o, b->grad.data, fg_tensor_numel (&b->grad));
}

static void
test_conv (void)
{
  for (guint k = 0; k < 2; k++)
    {
      Outputs one, two, again;
      conv_run (1, k ? 3 : 1, k, &one);
      conv_run (2, k ? 3 : 1, k, &two);
      conv_run (2, k ? 3 : 1, k, &again);
      g_assert_cmpuint (one.n, ==, two.n);
      g_assert_cmpfloat (max_rel_diff (two.v, one.v, one.n), <, k ? 2e-4 : 1e-5);
      g_assert_cmpint (memcmp (two.v, again.v, two.n * sizeof (float)), ==, 0);
      g_free (one.v);
      g_free (two.v);
      g_free (again.v);
    }
}

typedef enum {
  K_MATMUL, K_LINEAR, K_LINEAR_RELU, K_LINEAR_TANH, K_DROPOUT, K_LINEAR_COLS, K_LINEAR_DROPOUT
} Kernel;

static Outputs
run_kernel (Kernel kernel, const Shape *s, guint variant)
{
  const gboolean ta = variant & 1, tb = (variant >> 1) & 1;
  g_autoptr (FgWeightSet) set = fg_weight_set_new ();
  g_autoptr (FgTape) tape = fg_tape_new ();
  Outputs o = { NULL, 0 };
  FgRng rng;
  fg_rng_init (&rng, 5, (guint64) (s->m * 1000 + s->k * 10 + variant));
  FgWeight *a = kernel == K_MATMUL && ta ? fg_weight_set_add_2d (set, "a", s->k, s->m, TRUE)
                                         : fg_weight_set_add_2d (set, "a", s->m, s->k, TRUE);
  FgWeight *b = kernel == K_MATMUL && tb ? fg_weight_set_add_2d (set, "b", s->n, s->k, TRUE)
                                         : fg_weight_set_add_2d (set, "b", s->k, s->n, TRUE);
  FgWeight *bias = fg_weight_set_add_2d (set, "bias", 1, s->n, TRUE);
  fg_weight_init_uniform (a, &rng, 1.0f);
  fg_weight_init_uniform (b, &rng, 0.5f);
  fg_weight_init_uniform (bias, &rng, 0.5f);
  fg_weight_set_zero_grad (set);

  FgVar *va = fg_tape_weight (tape, a), *vb = fg_tape_weight (tape, b), *y;
  switch (kernel)
    {
    case K_MATMUL:
      y = fg_op_matmul (tape, va, vb, ta, tb);
      break;
    case K_LINEAR:
      y = fg_op_linear (tape, va, vb, fg_tape_weight (tape, bias));
      break;
    case K_LINEAR_RELU:
      y = fg_op_linear_act (tape, va, vb, fg_tape_weight (tape, bias), FG_ACT_RELU, 0.0f);
      break;
    case K_LINEAR_TANH:
      y = fg_op_linear_act (tape, va, vb, fg_tape_weight (tape, bias), FG_ACT_TANH, 0.0f);
      break;
    case K_LINEAR_DROPOUT:
      {
        FgRng drop;
        fg_rng_init (&drop, 19, variant);
        y = fg_op_linear_act_dropout (tape, va, vb, fg_tape_weight (tape, bias), FG_ACT_RELU, 0.0f,
                                      variant == 0 ? 0.5f : 0.3f, &drop, TRUE);
        break;
      }
    case K_LINEAR_COLS:
      {
        /* columns n/2 .. n−1, then 0 .. n/4 − 1: two runs (short ones for narrow layers) */
        guint32 *cols = fg_tape_alloc (tape, s->n * sizeof (guint32));
        gsize nc = 0;
        for (gsize c = s->n / 2; c < s->n; c++)
          cols[nc++] = (guint32) c;
        for (gsize c = 0; c < s->n / 4; c++)
          cols[nc++] = (guint32) c;
        y = fg_op_linear_cols (tape, va, vb, fg_tape_weight (tape, bias), cols, nc);
        break;
      }
    case K_DROPOUT:
    default:
      {
        FgRng drop;
        fg_rng_init (&drop, 17, variant);
        y = fg_op_dropout (tape, va, variant == 0 ? 0.5f : variant == 1 ? 0.25f : 0.1f, &drop,
                           TRUE);
        break;
      }
    }
  g_assert_nonnull (y);
  outputs_add (&o, y->value.data, fg_tensor_numel (&y->value));
  /* a non-uniform upstream gradient: Σ y ⊙ c for a fixed pseudo-random c */
  g_autoptr (FgTensor) seed = fg_tensor_new_2d (fg_tensor_rows (&y->value),
                                                fg_tensor_cols (&y->value));
  fg_rng_fill_uniform (&rng, seed->data, fg_tensor_numel (seed), -1.0f, 1.0f);
  g_assert_true (fg_tape_backward_seed (tape, y, seed, NULL));
  outputs_add (&o, a->grad.data, fg_tensor_numel (&a->grad));
  if (kernel != K_DROPOUT)
    outputs_add (&o, b->grad.data, fg_tensor_numel (&b->grad));
  if (kernel != K_MATMUL && kernel != K_DROPOUT)
    outputs_add (&o, bias->grad.data, fg_tensor_numel (&bias->grad));
  return o;
}

static void
check_kernel (Kernel kernel, guint n_variants, float tol)
{
  const guint saved = fg_get_num_threads ();
  for (guint si = 0; si < G_N_ELEMENTS (shapes); si++)
    for (guint v = 0; v < n_variants; v++)
      {
        Outputs ref = { NULL, 0 };
        for (guint k = 0; k < G_N_ELEMENTS (thread_counts); k++)
          {
            fg_set_num_threads (thread_counts[k]);
            Outputs o1 = run_kernel (kernel, &shapes[si], v);
            Outputs o2 = run_kernel (kernel, &shapes[si], v);
            g_assert_cmpuint (o1.n, ==, o2.n);
            /* run to run at a fixed thread count: bit for bit */
            g_assert_cmpint (memcmp (o1.v, o2.v, o1.n * sizeof (float)), ==, 0);
            if (k == 0)
              ref = o1;
            else
              {
                const float d = max_rel_diff (o1.v, ref.v, ref.n);
                if (d > tol)
                  g_error ("kernel %d shape %zux%zux%zu variant %u at %u threads: rel. diff %g",
                           (int) kernel, shapes[si].m, shapes[si].k, shapes[si].n, v,
                           thread_counts[k], (double) d);
                g_free (o1.v);
              }
            g_free (o2.v);
          }
        g_free (ref.v);
      }
  fg_set_num_threads (saved);
}

static void
test_matmul (void)
{
  check_kernel (K_MATMUL, 4, 1e-5f);
}

static void
test_linear (void)
{
  check_kernel (K_LINEAR, 1, 1e-5f);
  check_kernel (K_LINEAR_RELU, 1, 1e-5f);
  check_kernel (K_LINEAR_TANH, 1, 1e-5f);
  check_kernel (K_LINEAR_COLS, 1, 1e-5f);
  check_kernel (K_LINEAR_DROPOUT, 2, 1e-5f);
}

/* Masks: identical for every thread count (checked by check_kernel with tolerance 0), the
 * right fraction dropped, and the same mask in the gradient. */
static void
test_dropout (void)
{
  check_kernel (K_DROPOUT, 3, 0.0f);
  const float ps[] = { 0.5f, 0.25f, 0.1f, 0.3f, 0.9f };
  for (guint i = 0; i < G_N_ELEMENTS (ps); i++)
    {
      g_autoptr (FgTape) tape = fg_tape_new ();
      g_autoptr (FgTensor) x = fg_tensor_new_2d (512, 333);
      FgRng rng;
      gsize zeros = 0;
      for (gsize e = 0; e < fg_tensor_numel (x); e++)
        x->data[e] = 1.0f;
      fg_rng_init (&rng, 3, i);
      FgVar *y = fg_op_dropout (tape, fg_tape_constant (tape, x), ps[i], &rng, TRUE);
      for (gsize e = 0; e < fg_tensor_numel (x); e++)
        {
          zeros += y->value.data[e] == 0.0f;
          if (y->value.data[e] != 0.0f)
            g_assert_cmpfloat (y->value.data[e], ==, 1.0f / (1.0f - ps[i]));
        }
      const double n = (double) fg_tensor_numel (x), frac = zeros / n;
      const double sd = sqrt (ps[i] * (1 - ps[i]) / n);
      g_test_message ("p = %g: dropped %.5f (sd %.5f)", (double) ps[i], frac, sd);
      g_assert_cmpfloat (fabs (frac - ps[i]), <, 5 * sd);
    }
}

/* ------------------------------------------------------------------ the optimizer */

/* fg_optimizer_step_clipped () (threaded, fused) against clip + fg_optimizer_step () + zero. */
static void
test_optimizer_fused (void)
{
  const guint saved = fg_get_num_threads ();
  const FgOptimKind kinds[] = { FG_OPTIM_ADAMW, FG_OPTIM_ADAM };
  for (guint ki = 0; ki < G_N_ELEMENTS (kinds); ki++)
    for (guint k = 0; k < G_N_ELEMENTS (thread_counts); k++)
      for (guint clip = 0; clip < 2; clip++)
        {
          g_autoptr (FgWeightSet) s1 = fg_weight_set_new (), s2 = fg_weight_set_new ();
          const gsize sizes[] = { 300000, 7, 1, 4096, 100001 };
          FgOptimConfig cfg;
          FgRng rng;
          fg_rng_init (&rng, 11, 0);
          for (guint i = 0; i < G_N_ELEMENTS (sizes); i++)
            {
              char name[16];
              g_snprintf (name, sizeof name, "w%u", i);
              FgWeight *a = fg_weight_set_add_2d (s1, name, 1, sizes[i], i != 1);
              FgWeight *b = fg_weight_set_add_2d (s2, name, 1, sizes[i], i != 1);
              fg_weight_init_uniform (a, &rng, 1.0f);
              memcpy (b->value.data, a->value.data, sizes[i] * sizeof (float));
              if (i == 3)
                a->trainable = b->trainable = FALSE;
            }
          fg_optim_config_init (&cfg, kinds[ki]);
          cfg.weight_decay = 1e-2;
          g_autoptr (FgOptimizer) o1 = fg_optimizer_new (&cfg, s1);
          g_autoptr (FgOptimizer) o2 = fg_optimizer_new (&cfg, s2);
          for (guint step = 0; step < 5; step++)
            {
              for (guint i = 0; i < G_N_ELEMENTS (sizes); i++)
                {
                  FgWeight *a = fg_weight_set_get (s1, i), *b = fg_weight_set_get (s2, i);
                  fg_rng_fill_uniform (&rng, a->grad.data, sizes[i], -3.0f, 3.0f);
                  /* a region that never gets a gradient (the optimizer skips its moments) */
                  if (i == 0)
                    memset (a->grad.data + 1000, 0, 50000 * sizeof (float));
                  memcpy (b->grad.data, a->grad.data, sizes[i] * sizeof (float));
                }
              /* the weights of the region without gradient, before the step */
              g_autofree float *before = g_new (float, 50000);
              memcpy (before, fg_weight_set_get (s2, 0)->value.data + 1000,
                      50000 * sizeof (float));
              const double max_norm = clip ? 10.0 : 0.0;
              fg_set_num_threads (1);
              double n1 = clip ? fg_weight_set_clip_grad_norm (s1, max_norm)
                               : fg_weight_set_grad_norm (s1);
              fg_optimizer_step (o1, 1e-2);
              fg_weight_set_zero_grad (s1);
              fg_set_num_threads (thread_counts[k]);
              double n2 = fg_optimizer_step_clipped (o2, 1e-2, max_norm, TRUE);
              g_assert_cmpfloat (fabs (n1 - n2), <=, 1e-9 * n1);
              /* AdamW without a gradient only decays: w·(1 − lr·wd), exactly */
              if (kinds[ki] == FG_OPTIM_ADAMW)
                {
                  const float shrink = (float) (1.0 - 1e-2 * cfg.weight_decay);
                  const float *after = fg_weight_set_get (s2, 0)->value.data + 1000;
                  for (gsize e = 0; e < 50000; e++)
                    g_assert_cmpfloat (after[e], ==, before[e] * shrink);
                }
              for (guint i = 0; i < G_N_ELEMENTS (sizes); i++)
                {
                  FgWeight *a = fg_weight_set_get (s1, i), *b = fg_weight_set_get (s2, i);
                  /* the same operations: bit for bit */
                  g_assert_cmpmem (b->value.data, sizes[i] * sizeof (float), a->value.data,
                                   sizes[i] * sizeof (float));
                  for (gsize e = 0; e < sizes[i]; e++)
                    if (b->trainable)
                      g_assert_cmpfloat (b->grad.data[e], ==, 0.0f);
                }
            }
        }
  fg_set_num_threads (saved);
}

/* ------------------------------------------------------------------ a whole training run */

/* The flowgmm method (realnvp-mlp with dropout, flowgmm-nll, AdamW, clipping) trained for a few
 * steps at `threads`; returns the class probabilities of the training rows. */
static float *
train_probabilities (guint threads, gsize *n_out)
{
  const gsize D = 6, nl = 16, nu = 240;
  const char *settings[][2] = {
    { "flow.layers", "3" }, { "flow.hidden", "256" }, { "flow.dropout", "0.5" },
    { "iterations", "6" }, { "unlabeled_batch", "240" }, { "means", "tabular" },
    { "lr", "1e-3" }, { "clip", "5" },
  };
  const FgComponent *c = fg_registry_find (th_registry (), FG_KIND_BASELINE, "flowgmm", NULL);
  g_assert_nonnull (c);
  const FgBaselineVTable *vt = c->vtable;
  g_autoptr (FgParams) params = fg_params_new (c->params);
  g_autoptr (GError) error = NULL;
  g_assert_true (fg_registry_resolve_params (th_registry (), params, &error));
  for (guint i = 0; i < G_N_ELEMENTS (settings); i++)
    g_assert_true (fg_params_set (params, settings[i][0], settings[i][1], &error));
  g_autoptr (FgTensor) lab = fg_tensor_new_2d (nl, D);
  g_autoptr (FgTensor) unlab = fg_tensor_new_2d (nu, D);
  g_autofree gint32 *y = g_new (gint32, nl);
  FgRng rng;
  fg_rng_init (&rng, 4, 4);
  fg_rng_fill_normal (&rng, lab->data, nl * D, 0.0f, 1.0f);
  fg_rng_fill_normal (&rng, unlab->data, nu * D, 0.0f, 1.0f);
  for (gsize i = 0; i < nl; i++)
    y[i] = (gint32) (i % 2);
  FgSplit split;
  memset (&split, 0, sizeof split);
  split.n_classes = 2;
  split.shape.ndim = 1;
  split.shape.dims[0] = D;
  split.dim = D;
  split.labeled.x = *lab;
  split.labeled.y = y;
  split.labeled.n = nl;
  split.unlabeled.x = *unlab;
  split.unlabeled.n = nu;
  split.fingerprint = "test-parallel";
  split.seed = 3;

  const guint saved = fg_get_num_threads ();
  fg_set_num_threads (threads);
  fg_rng_init (&rng, 9, 9);
  gpointer self = vt->create (params, &rng, &error);
  g_assert_no_error (error);
  g_assert_true (vt->fit (self, &split, &error));
  g_assert_no_error (error);
  float *proba = g_new (float, nu * 2);
  g_autofree gint32 *labels = g_new (gint32, nu);
  g_assert_true (vt->predict (self, unlab, labels, proba, &error));
  vt->destroy (self);
  fg_set_num_threads (saved);
  *n_out = nu * 2;
  return proba;
}

/* Bit for bit from run to run at 2 threads; within rounding of the 1-thread run (the same
 * dropout masks, the same split of every reduction but the products'). */
static void
test_training_reproducible (void)
{
  gsize n;
  g_autofree float *p1 = train_probabilities (1, &n);
  g_autofree float *p2a = train_probabilities (2, &n);
  g_autofree float *p2b = train_probabilities (2, &n);
  g_assert_cmpmem (p2a, n * sizeof (float), p2b, n * sizeof (float));
  g_test_message ("1 vs 2 threads: max |dp| / (1 + |p|) = %g", (double) max_rel_diff (p2a, p1, n));
  g_assert_cmpfloat (max_rel_diff (p2a, p1, n), <=, 1e-3f);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/parallel/pool-run", test_pool_run);
  g_test_add_func ("/parallel/pool-concurrent", test_pool_concurrent);
  g_test_add_func ("/parallel/matmul", test_matmul);
  g_test_add_func ("/parallel/linear", test_linear);
  g_test_add_func ("/parallel/dropout", test_dropout);
  g_test_add_func ("/parallel/conv2d", test_conv);
  g_test_add_func ("/parallel/optimizer-fused", test_optimizer_fused);
  g_test_add_func ("/parallel/training-reproducible", test_training_reproducible);
  return g_test_run ();
}
