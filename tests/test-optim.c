/* SPDX-License-Identifier: MIT */
/* Tests for Adam / AdamW and the schedules (core/numeric/optim.c).
 *
 * - single steps against values computed by hand from the PyTorch formulas;
 * - long runs against a naive double-precision reimplementation fed the same gradients;
 * - convergence to the known optimum of a convex quadratic, for Adam (with and without L2) and
 *   for AdamW, whose decoupled decay moves the optimum to the root of a scalar equation;
 * - the schedules at chosen times.
 */
#include "config.h"

/* The exact float reference below must not fuse multiplies and adds (the library does not). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize ("fp-contract=off")
#endif

#include <flowgmm/optim.h>
#include <flowgmm/flowgmm.h>

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------ allocation counting */

/* To check that a step allocates nothing, this program interposes the C allocator (glibc only,
 * and not under AddressSanitizer, which owns malloc itself).  GLib's g_malloc family and
 * posix_memalign all end up here; the counter is read around the calls under test. */
#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__)
#define COUNT_ALLOCATIONS 1
#include <errno.h>
#include <stdlib.h>

extern void *__libc_malloc (size_t n);
extern void *__libc_calloc (size_t n, size_t size);
extern void *__libc_realloc (void *p, size_t n);
extern void *__libc_memalign (size_t alignment, size_t n);

static volatile gsize n_allocations;

#define EXPORTED __attribute__ ((visibility ("default")))

EXPORTED void *
malloc (size_t n)
{
  n_allocations++;
  return __libc_malloc (n);
}

EXPORTED void *
calloc (size_t n, size_t size)
{
  n_allocations++;
  return __libc_calloc (n, size);
}

EXPORTED void *
realloc (void *p, size_t n)
{
  n_allocations++;
  return __libc_realloc (p, n);
}

EXPORTED int
posix_memalign (void **out, size_t alignment, size_t n)
{
  void *p;
  n_allocations++;
  p = __libc_memalign (alignment, n);
  if (p == NULL)
    return ENOMEM;
  *out = p;
  return 0;
}
#endif

/* -------------------------------------------------------------------- reference optimizer */

/* torch.optim.Adam / AdamW for one scalar, in double. */
typedef struct
{
  double w, m, v;
} RefParam;

static void
ref_step (RefParam *p, double g, double lr, guint64 t, const FgOptimConfig *c, gboolean decay)
{
  double mhat, vhat;

  if (decay && c->kind == FG_OPTIM_ADAMW)
    p->w *= 1.0 - lr * c->weight_decay;
  if (decay && c->kind == FG_OPTIM_ADAM)
    g += c->weight_decay * p->w;
  p->m = c->beta1 * p->m + (1.0 - c->beta1) * g;
  p->v = c->beta2 * p->v + (1.0 - c->beta2) * g * g;
  mhat = p->m / (1.0 - pow (c->beta1, (double) t));
  vhat = p->v / (1.0 - pow (c->beta2, (double) t));
  p->w -= lr * mhat / (sqrt (vhat) + c->eps);
}

/* ---------------------------------------------------------------------------- basics */

static void
test_config_defaults (void)
{
  FgOptimConfig c;

  memset (&c, 0xab, sizeof c);
  fg_optim_config_init (&c, FG_OPTIM_ADAMW);
  g_assert_cmpint (c.kind, ==, FG_OPTIM_ADAMW);
  g_assert_cmpfloat (c.beta1, ==, 0.9);
  g_assert_cmpfloat (c.beta2, ==, 0.999);
  g_assert_cmpfloat (c.eps, ==, 1e-8);
  g_assert_cmpfloat (c.weight_decay, ==, 0.0);
  fg_optim_config_init (&c, FG_OPTIM_ADAM);
  g_assert_cmpint (c.kind, ==, FG_OPTIM_ADAM);
}

/* The problem of the single-step tests: weight "a" = (1, −2) with decay, "b" = (0.5) without;
 * lr 0.1, weight decay 0.1, eps 0.1 (large, so that bias correction and eps both show), default
 * betas.  Gradients: step 1 a (0.5, −0.25), b (1); step 2 a (−0.3, 0.2), b (0.4). */
typedef struct
{
  FgWeightSet *set;
  FgWeight *a, *b;
} TwoWeights;

static void
two_weights_init (TwoWeights *tw)
{
  tw->set = fg_weight_set_new ();
  tw->a = fg_weight_set_add_2d (tw->set, "a", 1, 2, TRUE);
  tw->b = fg_weight_set_add (tw->set, "b", 1, (const gsize[]){ 1 }, FALSE);
  tw->a->value.data[0] = 1.0f;
  tw->a->value.data[1] = -2.0f;
  tw->b->value.data[0] = 0.5f;
}

static void
two_weights_grads (TwoWeights *tw, guint step)
{
  if (step == 1)
    {
      tw->a->grad.data[0] = 0.5f;
      tw->a->grad.data[1] = -0.25f;
      tw->b->grad.data[0] = 1.0f;
    }
  else
    {
      tw->a->grad.data[0] = -0.3f;
      tw->a->grad.data[1] = 0.2f;
      tw->b->grad.data[0] = 0.4f;
    }
}

static void
run_two_steps (FgOptimKind kind, const double expected[2][3])
{
  TwoWeights tw;
  FgOptimConfig c;
  g_autoptr (FgOptimizer) opt = NULL;

  two_weights_init (&tw);
  fg_optim_config_init (&c, kind);
  c.weight_decay = 0.1;
  c.eps = 0.1;
  opt = fg_optimizer_new (&c, tw.set);
  g_assert_cmpuint (fg_optimizer_get_steps (opt), ==, 0);

  for (guint step = 1; step <= 2; step++)
    {
      two_weights_grads (&tw, step);
      fg_optimizer_step (opt, 0.1);
      g_assert_cmpuint (fg_optimizer_get_steps (opt), ==, step);
      g_assert_cmpfloat_with_epsilon (tw.a->value.data[0], expected[step - 1][0], 2e-7);
      g_assert_cmpfloat_with_epsilon (tw.a->value.data[1], expected[step - 1][1], 2e-7);
      g_assert_cmpfloat_with_epsilon (tw.b->value.data[0], expected[step - 1][2], 2e-7);
    }
  /* Gradients are read, not cleared. */
  g_assert_cmpfloat (tw.a->grad.data[0], ==, -0.3f);

  g_clear_pointer (&opt, fg_optimizer_free);
  fg_weight_set_free (tw.set);
}

/* Adam with L2 decay.  Step 1 (t = 1: m̂ = g, v̂ = g², whatever the betas):
 *   a0: g = 0.5 + 0.1·1 = 0.6;      w = 1 − 0.1·0.6/(0.6 + 0.1)      = 0.914285714…
 *   a1: g = −0.25 + 0.1·(−2) = −0.45; w = −2 + 0.1·0.45/(0.45 + 0.1)  = −1.918181818…
 *   b:  g = 1 (no decay);            w = 0.5 − 0.1·1/(1 + 0.1)        = 0.409090909…
 * Step 2 (t = 2), e.g. b: g = 0.4, m = 0.9·0.1 + 0.1·0.4 = 0.13, v = 0.999·0.001 + 0.001·0.16
 *   = 0.001159; m̂ = 0.13/0.19, v̂ = 0.001159/0.001999; w = 0.409090909 − 0.1·m̂/(√v̂ + 0.1)
 *   = 0.329664479…; a0 and a1 likewise with g + 0.1·w. */
static void
test_adam_single_step (void)
{
  static const double expected[2][3] = {
    { 0.9142857142857143, -1.9181818181818182, 0.40909090909090906 },
    { 0.8825168572117268, -1.8682377441952345, 0.32966447930633536 },
  };
  run_two_steps (FG_OPTIM_ADAM, expected);
}

/* AdamW, decoupled decay first: w ← w·(1 − lr·wd) = w·0.99, then the Adam step on the raw g.
 *   a0: w = 0.99 − 0.1·0.5/(0.5 + 0.1)    = 0.906666666…
 *   a1: w = −1.98 + 0.1·0.25/(0.25 + 0.1) = −1.908571428…
 *   b:  no decay: as with Adam           = 0.409090909…
 * Step 2 as above, from these values. */
static void
test_adamw_single_step (void)
{
  static const double expected[2][3] = {
    { 0.9066666666666666, -1.9085714285714286, 0.40909090909090906 },
    { 0.8821884793216449, -1.885454153140697, 0.32966447930633536 },
  };
  run_two_steps (FG_OPTIM_ADAMW, expected);
}

/* Many steps with random gradients and a changing learning rate, against the double reference
 * fed the same gradients; sizes exercise the 16-wide blocks and the scalar remainder. */
static void
compare_with_reference (FgOptimKind kind, double weight_decay, double eps)
{
  static const gsize sizes[] = { 37, 16, 1, 5 };
  static const gboolean decays[] = { TRUE, FALSE, TRUE, TRUE };
  g_autoptr (FgWeightSet) set = fg_weight_set_new ();
  g_autoptr (FgOptimizer) opt = NULL;
  FgWeight *w[G_N_ELEMENTS (sizes)], *frozen, *later_frozen;
  RefParam *ref[G_N_ELEMENTS (sizes)];
  FgOptimConfig c;
  FgSchedule sched;
  FgRng rng;
  const guint steps = 300;
  double max_err = 0.0;

  fg_rng_init (&rng, 4242, (guint64) kind);
  for (guint k = 0; k < G_N_ELEMENTS (sizes); k++)
    {
      char name[16];
      g_snprintf (name, sizeof name, "w%u", k);
      w[k] = fg_weight_set_add (set, name, 1, &sizes[k], decays[k]);
      fg_weight_init_normal (w[k], &rng, 1.0f);
      ref[k] = g_new0 (RefParam, sizes[k]);
      for (gsize i = 0; i < sizes[k]; i++)
        ref[k][i].w = w[k]->value.data[i];
    }
  frozen = fg_weight_set_add_2d (set, "frozen", 3, 3, TRUE);
  frozen->trainable = FALSE;
  fg_weight_init_const (frozen, 2.0f);
  later_frozen = fg_weight_set_add_2d (set, "later", 1, 3, TRUE);
  fg_weight_init_const (later_frozen, -1.0f);

  fg_optim_config_init (&c, kind);
  c.weight_decay = weight_decay;
  c.eps = eps;
  opt = fg_optimizer_new (&c, set);
  /* A weight frozen after creation is skipped from then on. */
  later_frozen->trainable = FALSE;
  fg_schedule_init (&sched, FG_SCHEDULE_COSINE, steps);

  for (guint t = 1; t <= steps; t++)
    {
      double lr = 0.05 * fg_schedule_factor (&sched, t - 1);
      for (guint k = 0; k < G_N_ELEMENTS (sizes); k++)
        fg_rng_fill_normal (&rng, w[k]->grad.data, sizes[k], 0.1f, 1.0f);
      fg_rng_fill_normal (&rng, frozen->grad.data, 9, 0.0f, 1.0f);
      fg_rng_fill_normal (&rng, later_frozen->grad.data, 3, 0.0f, 1.0f);
      fg_optimizer_step (opt, lr);
      for (guint k = 0; k < G_N_ELEMENTS (sizes); k++)
        for (gsize i = 0; i < sizes[k]; i++)
          {
            double err;
            ref_step (&ref[k][i], w[k]->grad.data[i], lr, t, &c, decays[k]);
            err = fabs (w[k]->value.data[i] - ref[k][i].w) / (1.0 + fabs (ref[k][i].w));
            max_err = MAX (max_err, err);
          }
    }
  g_test_message ("max relative deviation from the double reference: %.3g", max_err);
  g_assert_cmpfloat (max_err, <, 5e-6);
  g_assert_cmpuint (fg_optimizer_get_steps (opt), ==, steps);
  for (gsize i = 0; i < 9; i++)
    g_assert_cmpfloat (frozen->value.data[i], ==, 2.0f);
  for (gsize i = 0; i < 3; i++)
    g_assert_cmpfloat (later_frozen->value.data[i], ==, -1.0f);

  for (guint k = 0; k < G_N_ELEMENTS (sizes); k++)
    g_free (ref[k]);
}

static void
test_adam_matches_reference (void)
{
  compare_with_reference (FG_OPTIM_ADAM, 0.0, 1e-8);
  compare_with_reference (FG_OPTIM_ADAM, 0.3, 1e-8);
  compare_with_reference (FG_OPTIM_ADAM, 0.3, 0.1);
}

static void
test_adamw_matches_reference (void)
{
  compare_with_reference (FG_OPTIM_ADAMW, 0.3, 1e-8);
  compare_with_reference (FG_OPTIM_ADAMW, 0.3, 0.1);
}

/* ------------------------------------------------------------------------- convergence */

/* f(w) = ½ Σ a_i (w_i − c_i)² */
#define N_QUAD 4
static const double quad_a[N_QUAD] = { 2.0, 1.0, 10.0, 0.5 };
static const double quad_c[N_QUAD] = { 3.0, -2.0, 0.5, 0.0 };

/* Runs an optimizer on f from w = 1 and returns the final weights.  With use_schedule the
 * learning rate follows the cosine schedule (floor 1e-3), as the FlowGMM authors train. */
static void
run_quadratic (const FgOptimConfig *c, double lr, guint steps, gboolean use_schedule,
               double out[N_QUAD])
{
  g_autoptr (FgWeightSet) set = fg_weight_set_new ();
  g_autoptr (FgOptimizer) opt = NULL;
  FgWeight *w = fg_weight_set_add (set, "w", 1, (const gsize[]){ N_QUAD }, TRUE);
  FgSchedule sched;

  fg_weight_init_const (w, 1.0f);
  opt = fg_optimizer_new (c, set);
  fg_schedule_init (&sched, use_schedule ? FG_SCHEDULE_COSINE : FG_SCHEDULE_CONSTANT, steps);
  for (guint t = 0; t < steps; t++)
    {
      fg_weight_set_zero_grad (set);
      for (guint i = 0; i < N_QUAD; i++)
        w->grad.data[i] = (float) (quad_a[i] * ((double) w->value.data[i] - quad_c[i]));
      fg_optimizer_step (opt, lr * fg_schedule_factor (&sched, t));
    }
  for (guint i = 0; i < N_QUAD; i++)
    out[i] = w->value.data[i];
}

/* Plain Adam (default eps) reaches the minimiser c. */
static void
test_adam_quadratic (void)
{
  FgOptimConfig c;
  double w[N_QUAD];

  fg_optim_config_init (&c, FG_OPTIM_ADAM);
  run_quadratic (&c, 0.05, 4000, TRUE, w);
  for (guint i = 0; i < N_QUAD; i++)
    g_assert_cmpfloat_with_epsilon (w[i], quad_c[i], 1e-3);
}

/* Adam with L2 decay minimises f + ½·wd·‖w‖²: w* = a·c / (a + wd), for any eps. */
static void
test_adam_l2_quadratic (void)
{
  FgOptimConfig c;
  double w[N_QUAD];

  fg_optim_config_init (&c, FG_OPTIM_ADAM);
  c.weight_decay = 0.1;
  run_quadratic (&c, 0.05, 4000, TRUE, w);
  for (guint i = 0; i < N_QUAD; i++)
    g_assert_cmpfloat_with_epsilon (w[i], quad_a[i] * quad_c[i] / (quad_a[i] + 0.1), 1e-3);

  c.eps = 0.1;
  run_quadratic (&c, 0.01, 20000, FALSE, w);
  for (guint i = 0; i < N_QUAD; i++)
    g_assert_cmpfloat_with_epsilon (w[i], quad_a[i] * quad_c[i] / (quad_a[i] + 0.1), 1e-5);
}

/* AdamW's fixed point: once m̂ → g and v̂ → g², the update vanishes where
 *   wd·w + g / (|g| + eps) = 0,   g = a·(w − c),
 * which is not Adam-L2's a·c/(a + wd).  The left side increases in w, so bisection finds the
 * unique root.  (With eps = 1e-8 the shift from c would be ~1e-9, below float resolution; eps
 * = 0.1 makes it visible.) */
static double
adamw_fixed_point (double a, double cc, double wd, double eps)
{
  double lo = -1.0 / wd - fabs (cc) - 1.0, hi = 1.0 / wd + fabs (cc) + 1.0;

  for (guint it = 0; it < 200; it++)
    {
      double mid = 0.5 * (lo + hi);
      double g = a * (mid - cc);
      double h = wd * mid + g / (fabs (g) + eps);
      if (h > 0.0)
        hi = mid;
      else
        lo = mid;
    }
  return 0.5 * (lo + hi);
}

static void
test_adamw_quadratic (void)
{
  FgOptimConfig c;
  double w[N_QUAD];

  fg_optim_config_init (&c, FG_OPTIM_ADAMW);
  c.weight_decay = 0.1;
  c.eps = 0.1;
  run_quadratic (&c, 0.01, 20000, FALSE, w);
  for (guint i = 0; i < N_QUAD; i++)
    {
      double expected = adamw_fixed_point (quad_a[i], quad_c[i], 0.1, 0.1);
      g_test_message ("w%u: %.7f, fixed point %.7f, Adam-L2 optimum %.7f", i, w[i], expected,
                      quad_a[i] * quad_c[i] / (quad_a[i] + 0.1));
      g_assert_cmpfloat_with_epsilon (w[i], expected, 1e-5);
    }
  /* The shift is real: far from both c and the L2 optimum for the first coordinate. */
  g_assert_cmpfloat (fabs (w[0] - quad_c[0]), >, 0.01);
  g_assert_cmpfloat (fabs (w[0] - quad_a[0] * quad_c[0] / (quad_a[0] + 0.1)), >, 0.05);

  /* With the authors' settings (wd 1e-5, eps 1e-8) AdamW reaches c to the schedule's floor. */
  fg_optim_config_init (&c, FG_OPTIM_ADAMW);
  c.weight_decay = 1e-5;
  run_quadratic (&c, 0.05, 4000, TRUE, w);
  for (guint i = 0; i < N_QUAD; i++)
    g_assert_cmpfloat_with_epsilon (w[i], quad_c[i], 1e-3);
}

/* Weights that are not trainable at creation get no moments and never move. */
static void
test_frozen (void)
{
  g_autoptr (FgWeightSet) set = fg_weight_set_new ();
  g_autoptr (FgOptimizer) opt = NULL;
  FgWeight *frozen = fg_weight_set_add_2d (set, "frozen", 2, 2, TRUE);
  FgWeight *live = fg_weight_set_add_2d (set, "live", 2, 2, TRUE);
  FgOptimConfig c;

  frozen->trainable = FALSE;
  fg_weight_init_const (frozen, 1.0f);
  fg_weight_init_const (live, 1.0f);
  fg_optim_config_init (&c, FG_OPTIM_ADAMW);
  c.weight_decay = 0.5;
  opt = fg_optimizer_new (&c, set);
  for (guint t = 0; t < 10; t++)
    {
      fg_tensor_fill (&frozen->grad, 1.0f);
      fg_tensor_fill (&live->grad, 1.0f);
      fg_optimizer_step (opt, 0.1);
    }
  for (gsize i = 0; i < 4; i++)
    {
      g_assert_cmpfloat (frozen->value.data[i], ==, 1.0f);
      g_assert_cmpfloat (live->value.data[i], <, 0.5f);
    }
}

/* The optimizer allocates its moments once; a step allocates nothing. */
static void
test_step_allocates_nothing (void)
{
#ifdef COUNT_ALLOCATIONS
  g_autoptr (FgWeightSet) set = fg_weight_set_new ();
  g_autoptr (FgOptimizer) opt = NULL;
  FgWeight *a = fg_weight_set_add_2d (set, "a", 64, 33, TRUE);
  FgWeight *b = fg_weight_set_add_2d (set, "b", 1, 7, FALSE);
  FgOptimConfig c;
  FgSchedule sched;
  gsize before, during;

  fg_tensor_fill (&a->grad, 0.5f);
  fg_tensor_fill (&b->grad, -0.5f);
  fg_optim_config_init (&c, FG_OPTIM_ADAMW);
  c.weight_decay = 1e-5;
  fg_schedule_init (&sched, FG_SCHEDULE_COSINE, 100);

  before = n_allocations;
  opt = fg_optimizer_new (&c, set);
  if (n_allocations == before)
    {
      /* Another tool (valgrind, a malloc debugger) replaced the allocator before us. */
      g_test_skip ("the allocator is not interposed in this run");
      return;
    }

  before = n_allocations;
  for (guint t = 0; t < 100; t++)
    {
      (void) fg_weight_set_clip_grad_norm (set, 100.0);
      fg_optimizer_step (opt, 1e-3 * fg_schedule_factor (&sched, t));
      fg_weight_set_zero_grad (set);
    }
  during = n_allocations - before;
  g_assert_cmpuint (during, ==, 0);
#else
  g_test_skip ("allocation counting needs glibc without AddressSanitizer");
#endif
}


/* --------------------------------------------- bit for bit against a float reference */

/* ADAM_ELEMENT of optim.c in float, the same operations in the same order, on plain arrays:
 * what the optimizer must compute bit for bit, whatever it skips. */
static void
ref_float_step (float *w, float *g, float *m, float *v, gsize n, const FgOptimConfig *c,
                double lr, guint64 t, gboolean decay, float gscale, gboolean zero)
{
  const double bc1 = 1.0 - pow (c->beta1, (double) t), bc2 = 1.0 - pow (c->beta2, (double) t);
  const float beta1 = (float) c->beta1, omb1 = (float) (1.0 - c->beta1);
  const float beta2 = (float) c->beta2, omb2 = (float) (1.0 - c->beta2);
  const float step_size = (float) (lr / bc1), inv_sqrt_bc2 = (float) (1.0 / sqrt (bc2));
  const float eps = (float) c->eps;
  float l2 = 0.0f, shrink = 1.0f;
  if (decay && c->weight_decay > 0.0)
    {
      if (c->kind == FG_OPTIM_ADAMW)
        shrink = (float) (1.0 - lr * c->weight_decay);
      else
        l2 = (float) c->weight_decay;
    }
  for (gsize k = 0; k < n; k++)
    {
      const float wk = w[k] * shrink;
      const float gk = g[k] * gscale + l2 * wk;
      const float mk = beta1 * m[k] + omb1 * gk;
      const float vk = beta2 * v[k] + omb2 * (gk * gk);
      const float denom = sqrtf (vk) * inv_sqrt_bc2 + eps;
      m[k] = mk;
      v[k] = vk;
      w[k] = wk - step_size * mk / denom;
      if (zero)
        g[k] = 0.0f;
    }
}

static gboolean
same_float (float a, float b)
{
  return (isnan (a) && isnan (b)) || memcmp (&a, &b, sizeof a) == 0;
}

/* The gradient of element e of weight 0 at step t (1-based), by region: always random; always
 * +0 (AdamW only decays the weight); +0 for two steps, then random; −0.0; +0 but for one
 * subnormal at step 4; +0 with an infinite weight (0·inf in the update: NaN, as PyTorch). */
static float
pattern_grad (gsize e, guint t, FgRng *rng)
{
  if (e < 700)
    return fg_rng_uniform (rng) - 0.5f;
  if (e < 1500)
    return 0.0f;
  if (e < 2000)
    return t >= 3 ? fg_rng_uniform (rng) - 0.5f : 0.0f;
  if (e < 2600)
    return -0.0f;
  if (e < 3000)
    return t == 4 && e == 2777 ? 1e-40f : 0.0f;
  return 0.0f;
}

static void
test_exact_reference (void)
{
  /* sizes: a multiple of the 16-wide vector blocks, one with a remainder, a tiny one */
  const gsize sizes[] = { 5000, 1000, 130, 3 };
  const guint threads[] = { 1, 2, 3 };
  const FgOptimKind kinds[] = { FG_OPTIM_ADAMW, FG_OPTIM_ADAM };
  const double decays[] = { 1e-2, 0.0 };
  const guint saved = fg_get_num_threads ();
  for (guint ti = 0; ti < G_N_ELEMENTS (threads); ti++)
    for (guint ki = 0; ki < G_N_ELEMENTS (kinds); ki++)
      for (guint di = 0; di < G_N_ELEMENTS (decays); di++)
        for (guint mode = 0; mode < 3; mode++) /* clipped + zero, clipped, plain step */
          {
            g_autoptr (FgWeightSet) set = fg_weight_set_new ();
            float *rw[G_N_ELEMENTS (sizes)], *rg[G_N_ELEMENTS (sizes)];
            float *rm[G_N_ELEMENTS (sizes)], *rv[G_N_ELEMENTS (sizes)];
            FgOptimConfig cfg;
            FgRng rng;
            fg_rng_init (&rng, 5, ti * 100 + ki * 10 + di);
            fg_set_num_threads (threads[ti]);
            for (guint i = 0; i < G_N_ELEMENTS (sizes); i++)
              {
                char name[8];
                g_snprintf (name, sizeof name, "w%u", i);
                FgWeight *w = fg_weight_set_add_2d (set, name, 1, sizes[i], i != 2);
                fg_weight_init_uniform (w, &rng, 1.0f);
                if (i == 0)
                  w->value.data[3100] = INFINITY;
                rw[i] = g_new (float, sizes[i]);
                memcpy (rw[i], w->value.data, sizes[i] * sizeof (float));
                rg[i] = g_new0 (float, sizes[i]);
                rm[i] = g_new0 (float, sizes[i]);
                rv[i] = g_new0 (float, sizes[i]);
              }
            fg_optim_config_init (&cfg, kinds[ki]);
            cfg.weight_decay = decays[di];
            g_autoptr (FgOptimizer) opt = fg_optimizer_new (&cfg, set);
            for (guint t = 1; t <= 7; t++)
              {
                const double lr = 1e-2 / t;
                for (guint i = 0; i < G_N_ELEMENTS (sizes); i++)
                  {
                    FgWeight *w = fg_weight_set_get (set, i);
                    if (mode == 0 || t == 1)
                      memset (rg[i], 0, sizes[i] * sizeof (float));
                    for (gsize e = 0; e < sizes[i]; e++)
                      {
                        /* weights 1..3: random, but +0 in weight 1's second half */
                        const float x = i == 0 ? pattern_grad (e, t, &rng)
                                        : i == 1 && e >= 500 ? 0.0f
                                                             : fg_rng_uniform (&rng) - 0.5f;
                        rg[i][e] += x;
                      }
                    memcpy (w->grad.data, rg[i], sizes[i] * sizeof (float));
                  }
                /* weight 3 sits out steps 3 and 4 */
                fg_weight_set_get (set, 3)->trainable = !(t == 3 || t == 4);
                /* the reference: the set's norm and clipping factor, then each weight */
                float gscale = 1.0f;
                if (mode < 2)
                  {
                    const double norm = fg_weight_set_grad_norm (set), coef = 1.0 / (norm + 1e-6);
                    if (coef < 1.0)
                      gscale = (float) coef;
                  }
                for (guint i = 0; i < G_N_ELEMENTS (sizes); i++)
                  if (fg_weight_set_get (set, i)->trainable)
                    ref_float_step (rw[i], rg[i], rm[i], rv[i], sizes[i], &cfg, lr, t, i != 2,
                                    gscale, mode == 0);
                if (mode < 2)
                  fg_optimizer_step_clipped (opt, lr, 1.0, mode == 0);
                else
                  fg_optimizer_step (opt, lr);
                for (guint i = 0; i < G_N_ELEMENTS (sizes); i++)
                  {
                    const FgWeight *w = fg_weight_set_get (set, i);
                    for (gsize e = 0; e < sizes[i]; e++)
                      {
                        if (!same_float (w->value.data[e], rw[i][e])
                            || !same_float (w->grad.data[e], rg[i][e]))
                          g_error ("threads %u kind %d wd %g mode %u step %u: weight %u element "
                                   "%" G_GSIZE_FORMAT ": w %.9g (reference %.9g), g %g (%g)",
                                   threads[ti], kinds[ki], decays[di], mode, t, i, e,
                                   (double) w->value.data[e], (double) rw[i][e],
                                   (double) w->grad.data[e], (double) rg[i][e]);
                      }
                  }
              }
            /* the region that never had a gradient was only decayed */
            if (kinds[ki] == FG_OPTIM_ADAMW && decays[di] > 0.0)
              for (gsize e = 700; e < 1500; e++)
                g_assert_cmpfloat (rm[0][e], ==, 0.0f);
            for (guint i = 0; i < G_N_ELEMENTS (sizes); i++)
              {
                g_free (rw[i]);
                g_free (rg[i]);
                g_free (rm[i]);
                g_free (rv[i]);
              }
          }
  fg_set_num_threads (saved);
}

/* -------------------------------------------------------------------------- schedules */

static void
check_factor (const FgSchedule *s, double t, double expected)
{
  g_test_message ("%s schedule at t = %g of %g", fg_schedule_kind_to_string (s->kind), t,
                  s->total);
  g_assert_cmpfloat_with_epsilon (fg_schedule_factor (s, t), expected, 1e-12);
}

static void
test_schedule_defaults (void)
{
  FgSchedule s;

  fg_schedule_init (&s, FG_SCHEDULE_COSINE, 100);
  g_assert_cmpint (s.kind, ==, FG_SCHEDULE_COSINE);
  g_assert_cmpfloat (s.total, ==, 100.0);
  g_assert_cmpfloat (s.floor, ==, 1e-3);
  fg_schedule_init (&s, FG_SCHEDULE_WILSON, 10);
  g_assert_cmpfloat (s.floor, ==, 0.01);
  fg_schedule_init (&s, FG_SCHEDULE_STEP, 10);
  g_assert_cmpfloat (s.gamma, ==, 0.1);
  g_assert_cmpuint (s.n_milestones, ==, 2);
  g_assert_cmpfloat (s.milestones[0], ==, 0.5);
  g_assert_cmpfloat (s.milestones[1], ==, 0.8);
}

static void
test_schedule_constant (void)
{
  FgSchedule s;

  fg_schedule_init (&s, FG_SCHEDULE_CONSTANT, 10);
  check_factor (&s, -1, 1.0);
  check_factor (&s, 0, 1.0);
  check_factor (&s, 5, 1.0);
  check_factor (&s, 10, 1.0);
  check_factor (&s, 1e9, 1.0);
}

static void
test_schedule_cosine (void)
{
  FgSchedule s;

  fg_schedule_init (&s, FG_SCHEDULE_COSINE, 200);
  check_factor (&s, 0, 1.0);
  check_factor (&s, 50, 0.5 * (1.0 + cos (G_PI / 4)));  /* 0.853553… */
  check_factor (&s, 100, 0.5);
  check_factor (&s, 150, 0.5 * (1.0 + cos (3 * G_PI / 4)));  /* 0.146446… */
  /* 0.5·(1 + cos (π·199/200)) = 6.2e-5 is below the floor. */
  check_factor (&s, 199, 1e-3);
  check_factor (&s, 200, 1e-3);
  /* Beyond the horizon it stays at the floor (no second rise), before 0 it is 1. */
  check_factor (&s, 300, 1e-3);
  check_factor (&s, 400, 1e-3);
  check_factor (&s, -5, 1.0);
  /* Fractional epochs, as the authors step it every iteration. */
  check_factor (&s, 33.3, 0.5 * (1.0 + cos (G_PI * 33.3 / 200)));

  s.floor = 0.0;
  check_factor (&s, 200, 0.0);
}

static void
test_schedule_step (void)
{
  FgSchedule s;

  fg_schedule_init (&s, FG_SCHEDULE_STEP, 100);
  check_factor (&s, 0, 1.0);
  check_factor (&s, 49.9, 1.0);
  check_factor (&s, 50, 0.1);    /* a milestone takes effect at its time */
  check_factor (&s, 79, 0.1);
  check_factor (&s, 80, 0.01);
  check_factor (&s, 100, 0.01);
  check_factor (&s, 1000, 0.01);

  s.gamma = 0.5;
  s.n_milestones = 3;
  s.milestones[0] = 0.25;
  s.milestones[1] = 0.5;
  s.milestones[2] = 0.75;
  check_factor (&s, 24, 1.0);
  check_factor (&s, 25, 0.5);
  check_factor (&s, 60, 0.25);
  check_factor (&s, 99, 0.125);
}

static void
test_schedule_linear_ramp (void)
{
  FgSchedule s;

  fg_schedule_init (&s, FG_SCHEDULE_LINEAR_RAMP, 40);
  check_factor (&s, -3, 0.0);
  check_factor (&s, 0, 0.0);
  check_factor (&s, 10, 0.25);
  check_factor (&s, 20, 0.5);
  check_factor (&s, 40, 1.0);
  check_factor (&s, 100, 1.0);
}

static void
test_schedule_wilson (void)
{
  FgSchedule s;

  fg_schedule_init (&s, FG_SCHEDULE_WILSON, 100);
  check_factor (&s, 0, 1.0);
  check_factor (&s, 30, 1.0);
  check_factor (&s, 50, 1.0);
  check_factor (&s, 60, 1.0 - 0.99 * 0.25);   /* 0.7525 */
  check_factor (&s, 70, 0.505);
  check_factor (&s, 90, 0.01);
  check_factor (&s, 95, 0.01);
  check_factor (&s, 100, 0.01);
  check_factor (&s, 150, 0.01);
  /* Continuous at both corners. */
  g_assert_cmpfloat_with_epsilon (fg_schedule_factor (&s, 50.0001), 1.0, 1e-5);
  g_assert_cmpfloat_with_epsilon (fg_schedule_factor (&s, 89.9999), 0.01, 1e-5);
}

static void
test_schedule_zero_total (void)
{
  FgSchedule s;

  /* A zero horizon is already over: the ramp is complete, the decays are at their end. */
  fg_schedule_init (&s, FG_SCHEDULE_LINEAR_RAMP, 0);
  check_factor (&s, 0, 1.0);
  fg_schedule_init (&s, FG_SCHEDULE_COSINE, 0);
  check_factor (&s, 0, 1e-3);
  fg_schedule_init (&s, FG_SCHEDULE_CONSTANT, 0);
  check_factor (&s, 3, 1.0);
}

static void
test_schedule_strings (void)
{
  static const FgScheduleKind kinds[] = { FG_SCHEDULE_CONSTANT, FG_SCHEDULE_COSINE,
                                          FG_SCHEDULE_STEP, FG_SCHEDULE_LINEAR_RAMP,
                                          FG_SCHEDULE_WILSON };
  static const char *const names[] = { "constant", "cosine", "step", "linear-ramp", "wilson" };
  GError *error = NULL;
  FgScheduleKind k;

  for (guint i = 0; i < G_N_ELEMENTS (kinds); i++)
    {
      g_assert_cmpstr (fg_schedule_kind_to_string (kinds[i]), ==, names[i]);
      k = (FgScheduleKind) 99;
      g_assert_true (fg_schedule_kind_from_string (names[i], &k, &error));
      g_assert_no_error (error);
      g_assert_cmpint (k, ==, kinds[i]);
    }

  k = FG_SCHEDULE_WILSON;
  g_assert_false (fg_schedule_kind_from_string ("Cosine", &k, &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM);
  g_assert_nonnull (strstr (error->message, "'Cosine'"));
  g_assert_nonnull (strstr (error->message, "linear-ramp"));
  g_assert_nonnull (strstr (error->message, "wilson"));
  g_assert_cmpint (k, ==, FG_SCHEDULE_WILSON);
  g_clear_error (&error);

  g_assert_false (fg_schedule_kind_from_string ("", &k, &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM);
  g_clear_error (&error);

  g_assert_null (fg_schedule_kind_to_string ((FgScheduleKind) 42));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/optim/config-defaults", test_config_defaults);
  g_test_add_func ("/optim/adam-single-step", test_adam_single_step);
  g_test_add_func ("/optim/adamw-single-step", test_adamw_single_step);
  g_test_add_func ("/optim/adam-matches-reference", test_adam_matches_reference);
  g_test_add_func ("/optim/adamw-matches-reference", test_adamw_matches_reference);
  g_test_add_func ("/optim/adam-quadratic", test_adam_quadratic);
  g_test_add_func ("/optim/adam-l2-quadratic", test_adam_l2_quadratic);
  g_test_add_func ("/optim/adamw-quadratic", test_adamw_quadratic);
  g_test_add_func ("/optim/frozen", test_frozen);
  g_test_add_func ("/optim/step-allocates-nothing", test_step_allocates_nothing);
  g_test_add_func ("/optim/exact-reference", test_exact_reference);
  g_test_add_func ("/schedule/defaults", test_schedule_defaults);
  g_test_add_func ("/schedule/constant", test_schedule_constant);
  g_test_add_func ("/schedule/cosine", test_schedule_cosine);
  g_test_add_func ("/schedule/step", test_schedule_step);
  g_test_add_func ("/schedule/linear-ramp", test_schedule_linear_ramp);
  g_test_add_func ("/schedule/wilson", test_schedule_wilson);
  g_test_add_func ("/schedule/zero-total", test_schedule_zero_total);
  g_test_add_func ("/schedule/strings", test_schedule_strings);

  return g_test_run ();
}
