/* SPDX-License-Identifier: MIT */
/* flowgmm — Adam / AdamW and learning-rate schedules.
 *
 * The update follows torch.optim.Adam and torch.optim.AdamW (amsgrad = False, maximize = False)
 * up to float32 rounding, with the scalar factors (bias corrections, step size) computed in
 * double once per step:
 *
 *   AdamW only:  w ← w · (1 − lr·wd)                     (decoupled decay, decay == TRUE weights)
 *   Adam only:   g ← g + wd·w                            (L2 term, decay == TRUE weights)
 *   m ← β1·m + (1 − β1)·g
 *   v ← β2·v + (1 − β2)·g²
 *   w ← w − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε)
 *
 * A step allocates nothing: the moment buffers are made with the optimizer.
 */
#include "config.h"

/* Every clone of the update computes the baseline's values (see FG_CLONES). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize ("fp-contract=off")
#endif

#include <flowgmm/optim.h>

#include <math.h>
#include <string.h>

#include "numeric/numeric-private.h"

/**
 * fg_optim_config_init:
 * @config: (out caller-allocates): the configuration
 * @kind: %FG_OPTIM_ADAM or %FG_OPTIM_ADAMW
 *
 * Fills @config with PyTorch's defaults: betas (0.9, 0.999), eps 1e-8, no weight decay.
 */
void
fg_optim_config_init (FgOptimConfig *config, FgOptimKind kind)
{
  g_return_if_fail (config != NULL);

  memset (config, 0, sizeof *config);
  config->kind = kind;
  config->beta1 = 0.9;
  config->beta2 = 0.999;
  config->eps = 1e-8;
  config->weight_decay = 0.0;
}

typedef struct
{
  FgWeight *weight;
  float    *m;      /* first moment, 64-byte aligned */
  float    *v;      /* second moment, 64-byte aligned */
  gsize     n;
} Slot;

struct _FgOptimizer
{
  FgOptimConfig config;
  FgWeightSet  *weights;   /* borrowed */
  guint         n_weights; /* set size at creation: the set must not grow */
  Slot         *slots;     /* one per trainable weight */
  guint         n_slots;
  guint64       steps;
};

/**
 * fg_optimizer_new:
 * @config: the configuration (copied)
 * @weights: the weights to optimise (borrowed; must outlive the optimizer and not gain weights)
 *
 * Creates an optimizer with zeroed moment buffers for every weight of @weights that is trainable
 * now.  Weights that later become non-trainable are skipped by fg_optimizer_step ().
 *
 * Returns: (transfer full): the optimizer, freed with fg_optimizer_free ().
 */
FgOptimizer *
fg_optimizer_new (const FgOptimConfig *config, FgWeightSet *weights)
{
  FgOptimizer *opt;
  guint n;

  g_return_val_if_fail (config != NULL, NULL);
  g_return_val_if_fail (weights != NULL, NULL);
  g_return_val_if_fail (config->kind == FG_OPTIM_ADAM || config->kind == FG_OPTIM_ADAMW, NULL);
  g_return_val_if_fail (config->beta1 >= 0.0 && config->beta1 < 1.0, NULL);
  g_return_val_if_fail (config->beta2 >= 0.0 && config->beta2 < 1.0, NULL);
  g_return_val_if_fail (config->eps >= 0.0 && isfinite (config->eps), NULL);
  g_return_val_if_fail (config->weight_decay >= 0.0 && isfinite (config->weight_decay), NULL);

  opt = g_new0 (FgOptimizer, 1);
  opt->config = *config;
  opt->weights = weights;
  n = fg_weight_set_len (weights);
  opt->n_weights = n;
  opt->slots = g_new0 (Slot, MAX (n, 1));
  for (guint i = 0; i < n; i++)
    {
      FgWeight *w = fg_weight_set_get (weights, i);
      Slot *s;

      if (!w->trainable)
        continue;
      s = &opt->slots[opt->n_slots++];
      s->weight = w;
      s->n = fg_tensor_numel (&w->value);
      s->m = fg_alloc_floats (s->n);
      s->v = fg_alloc_floats (s->n);
    }
  return opt;
}

/**
 * fg_optimizer_free:
 * @opt: (nullable): an optimizer
 *
 * Frees the optimizer and its moment buffers (not the weights).  Accepts %NULL.
 */
void
fg_optimizer_free (FgOptimizer *opt)
{
  if (opt == NULL)
    return;
  for (guint i = 0; i < opt->n_slots; i++)
    {
      fg_free_aligned (opt->slots[i].m);
      fg_free_aligned (opt->slots[i].v);
    }
  g_free (opt->slots);
  g_free (opt);
}

/* Per-step constants, all in float for the vector loop. */
typedef struct
{
  float beta1, one_minus_beta1;
  float beta2, one_minus_beta2;
  float step_size;       /* lr / (1 − β1^t) */
  float inv_sqrt_bc2;    /* 1 / √(1 − β2^t) */
  float eps;
  float l2;              /* Adam: wd (gradient term); 0 otherwise */
  float shrink;          /* AdamW: 1 − lr·wd; 1 otherwise */
} StepConsts;

/* One element, the same operations on the vector and the scalar path.  The gradient is first
 * multiplied by the clipping factor (1 when not clipping: exact), as clip_grad_norm_ does to
 * the gradient before the step; with `zero` it is then cleared for the next backward pass.
 * (Where the compiler may contract a·b + c into an FMA, e.g. with -march=native, the two paths
 * can differ in the last bit; both stay within rounding of the reference formulas.) */
#define ADAM_ELEMENT(w, g, m, v, k, c, gscale, zero)                                          \
  do                                                                                          \
    {                                                                                         \
      const float wk = (w)[k] * (c)->shrink;                                                  \
      const float gk = (g)[k] * (gscale) + (c)->l2 * wk;                                      \
      const float mk = (c)->beta1 * (m)[k] + (c)->one_minus_beta1 * gk;                       \
      const float vk = (c)->beta2 * (v)[k] + (c)->one_minus_beta2 * (gk * gk);                \
      const float denom = sqrtf (vk) * (c)->inv_sqrt_bc2 + (c)->eps;                          \
      (m)[k] = mk;                                                                            \
      (v)[k] = vk;                                                                            \
      (w)[k] = wk - (c)->step_size * mk / denom;                                              \
      if (zero)                                                                               \
        (g)[k] = 0.0f;                                                                        \
    }                                                                                         \
  while (0)

/* The update of one buffer, in blocks of 16 with a constant inner trip count and restrict
 * pointers so that it vectorises without the compiler's epilogue or alias checks; the remainder
 * runs the same element scalar.  The sqrtf in it vectorises only with -fno-math-errno from the
 * build (doc/performance.md, "Compiler notes"); without it the loop is still correct, one
 * element at a time.  (Weights that never get a gradient are not worth detecting here: a model
 * should not carry them; realnvp-mlp stores only its live rows and columns.) */
FG_CLONES static void
adam_update (float *restrict w, float *restrict g, float *restrict m, float *restrict v,
             gsize n, const StepConsts *restrict consts, float gscale, gboolean zero)
{
  const StepConsts c = *consts; /* a local copy: provably not aliased by the stores */
  gsize i = 0;

  if (zero)
    for (; i + 16 <= n; i += 16)
      {
        float *restrict wb = w + i;
        float *restrict gb = g + i;
        float *restrict mb = m + i;
        float *restrict vb = v + i;
        for (gsize k = 0; k < 16; k++)
          ADAM_ELEMENT (wb, gb, mb, vb, k, &c, gscale, TRUE);
      }
  else
    for (; i + 16 <= n; i += 16)
      {
        float *restrict wb = w + i;
        float *restrict gb = g + i;
        float *restrict mb = m + i;
        float *restrict vb = v + i;
        for (gsize k = 0; k < 16; k++)
          ADAM_ELEMENT (wb, gb, mb, vb, k, &c, gscale, FALSE);
      }
  for (; i < n; i++)
    ADAM_ELEMENT (w, g, m, v, i, &c, gscale, zero);
}

typedef struct {
  FgOptimizer *opt;
  StepConsts decayed, plain;
  float gscale;
  gboolean zero;
  gsize total; /* elements of all trainable slots */
} StepJob;

/* Elements [e0, e1) of the slots laid end to end: each task updates its own range, so the
 * result does not depend on how many tasks there are. */
static void
step_task (gpointer data, guint t, guint n_tasks)
{
  const StepJob *j = data;
  gsize e0, e1, off = 0;
  _fg_pool_range (j->total, t, n_tasks, 16, &e0, &e1);
  for (guint i = 0; i < j->opt->n_slots && off < e1; i++)
    {
      Slot *s = &j->opt->slots[i];
      FgWeight *w = s->weight;
      if (!w->trainable)
        continue;
      const gsize a = MAX (off, e0), b = MIN (off + s->n, e1);
      if (a < b)
        adam_update (w->value.data + (a - off), w->grad.data + (a - off), s->m + (a - off),
                     s->v + (a - off), b - a, w->decay ? &j->decayed : &j->plain, j->gscale,
                     j->zero);
      off += s->n;
    }
}

static void
step_consts (const FgOptimizer *opt, double lr, StepConsts *decayed, StepConsts *plain)
{
  const FgOptimConfig *cfg = &opt->config;
  const double t = (double) opt->steps;
  const double bc1 = 1.0 - pow (cfg->beta1, t);
  const double bc2 = 1.0 - pow (cfg->beta2, t);

  plain->beta1 = (float) cfg->beta1;
  plain->one_minus_beta1 = (float) (1.0 - cfg->beta1);
  plain->beta2 = (float) cfg->beta2;
  plain->one_minus_beta2 = (float) (1.0 - cfg->beta2);
  plain->step_size = (float) (lr / bc1);
  plain->inv_sqrt_bc2 = (float) (1.0 / sqrt (bc2));
  plain->eps = (float) cfg->eps;
  plain->l2 = 0.0f;
  plain->shrink = 1.0f;

  *decayed = *plain;
  if (cfg->weight_decay > 0.0)
    {
      if (cfg->kind == FG_OPTIM_ADAMW)
        decayed->shrink = (float) (1.0 - lr * cfg->weight_decay);
      else
        decayed->l2 = (float) cfg->weight_decay;
    }
}

static void
run_step (FgOptimizer *opt, double lr, float gscale, gboolean zero)
{
  StepJob j;
  opt->steps++;
  step_consts (opt, lr, &j.decayed, &j.plain);
  j.opt = opt;
  j.gscale = gscale;
  j.zero = zero;
  j.total = 0;
  for (guint i = 0; i < opt->n_slots; i++)
    if (opt->slots[i].weight->trainable)
      j.total += opt->slots[i].n;
  /* About 28 bytes of memory traffic an element. */
  const double ns = (double) j.total * 4.0 * FG_POOL_NS_PER_ELEMENT;
  const guint tasks = (guint) MIN ((gsize) _fg_pool_tasks (ns), MAX (j.total / 4096, 1));
  _fg_pool_run (tasks, step_task, &j);
}

/**
 * fg_optimizer_step:
 * @opt: an optimizer
 * @lr: the learning rate for this step (the schedule already applied), >= 0
 *
 * Applies one Adam or AdamW update to every trainable weight from its accumulated gradient.
 * Gradients are read, not zeroed.  Allocates nothing.  Large sets are split over the core's
 * threads by element ranges (the values do not depend on the thread count).
 */
void
fg_optimizer_step (FgOptimizer *opt, double lr)
{
  g_return_if_fail (opt != NULL);
  g_return_if_fail (lr >= 0.0 && isfinite (lr));
  g_return_if_fail (fg_weight_set_len (opt->weights) == opt->n_weights);

  run_step (opt, lr, 1.0f, FALSE);
}

/**
 * fg_optimizer_step_clipped:
 * @opt: an optimizer
 * @lr: the learning rate for this step, >= 0
 * @max_norm: clip the global gradient norm of the optimizer's weights to this (as
 *   fg_weight_set_clip_grad_norm ()); 0 = no clipping
 * @zero_grad: clear every trainable gradient after use, ready for the next backward pass
 *
 * fg_weight_set_clip_grad_norm () (or fg_weight_set_grad_norm ()), fg_optimizer_step () and
 * fg_weight_set_zero_grad () in two passes over the weights instead of four: the norm, then
 * one pass that scales each gradient element, updates its weight and moments and clears it.
 * Same values as the separate calls.  When the norm is not finite nothing is updated or
 * cleared (the step does not count) and the norm is returned for the caller to report.
 *
 * Returns: the global gradient norm before clipping.
 */
double
fg_optimizer_step_clipped (FgOptimizer *opt, double lr, double max_norm, gboolean zero_grad)
{
  g_return_val_if_fail (opt != NULL, NAN);

  return fg_optimizer_step_clip_norm (opt, lr, fg_weight_set_grad_norm (opt->weights), max_norm,
                                      zero_grad);
}

/**
 * fg_optimizer_step_clip_norm:
 * @opt: an optimizer
 * @lr: the learning rate for this step, >= 0
 * @norm: the global gradient norm of the optimizer's weights, fg_weight_set_grad_norm () of its
 *   set, e.g. from fg_tape_grad_norm () (which took it during the backward pass)
 * @max_norm: clip to this (as fg_weight_set_clip_grad_norm ()); 0 = no clipping
 * @zero_grad: clear every trainable gradient after use
 *
 * fg_optimizer_step_clipped () with the norm already known: one pass over the weights.  When
 * @norm is not finite nothing is updated or cleared (the step does not count).
 *
 * Returns: @norm.
 */
double
fg_optimizer_step_clip_norm (FgOptimizer *opt, double lr, double norm, double max_norm,
                             gboolean zero_grad)
{
  float gscale = 1.0f;

  g_return_val_if_fail (opt != NULL, NAN);
  g_return_val_if_fail (lr >= 0.0 && isfinite (lr), NAN);
  g_return_val_if_fail (max_norm >= 0.0, NAN);
  g_return_val_if_fail (fg_weight_set_len (opt->weights) == opt->n_weights, NAN);

  if (!isfinite (norm))
    return norm;
  if (max_norm > 0.0)
    {
      const double coef = max_norm / (norm + 1e-6);
      if (coef < 1.0)
        gscale = (float) coef;
    }
  run_step (opt, lr, gscale, zero_grad);
  return norm;
}

/**
 * fg_optimizer_get_steps:
 * @opt: an optimizer
 *
 * Returns: the number of fg_optimizer_step () calls so far.
 */
guint64
fg_optimizer_get_steps (const FgOptimizer *opt)
{
  g_return_val_if_fail (opt != NULL, 0);

  return opt->steps;
}

/**
 * fg_optimizer_save_state:
 * @opt: an optimizer
 * @into: the set to add the state to
 * @prefix: prefix of the names (e.g. "adam/")
 *
 * Adds the step count ("<prefix>steps") and the first and second moments of every trainable
 * weight ("<prefix>m/<name>", "<prefix>v/<name>") to @into, bit for bit.
 */
void
fg_optimizer_save_state (const FgOptimizer *opt, FgWeightSet *into, const char *prefix)
{
  g_return_if_fail (opt != NULL && into != NULL && prefix != NULL);
  {
    g_autofree char *name = g_strconcat (prefix, "steps", NULL);
    fg_weight_set_add_bytes (into, name, &opt->steps, sizeof opt->steps);
  }
  for (guint i = 0; i < opt->n_slots; i++)
    {
      const Slot *s = &opt->slots[i];
      for (int which = 0; which < 2; which++)
        {
          g_autofree char *name = g_strconcat (prefix, which == 0 ? "m/" : "v/",
                                               s->weight->name, NULL);
          FgWeight *w = fg_weight_set_add (into, name, 1, &s->n, FALSE);
          w->trainable = FALSE;
          memcpy (w->value.data, which == 0 ? s->m : s->v, s->n * sizeof (float));
        }
    }
}

/**
 * fg_optimizer_load_state:
 * @opt: an optimizer
 * @from: a set holding what fg_optimizer_save_state () wrote
 * @prefix: the prefix given to fg_optimizer_save_state ()
 * @error: return location for a #GError
 *
 * Restores the step count and the moments.  Nothing changes on error.
 *
 * Returns: %TRUE on success; %FALSE with %FG_ERROR_DATA when an entry is missing or has another
 * size.
 */
gboolean
fg_optimizer_load_state (FgOptimizer *opt, FgWeightSet *from, const char *prefix,
                         GError **error)
{
  g_autofree char *steps_name = NULL;
  FgWeight *steps;

  g_return_val_if_fail (opt != NULL && from != NULL && prefix != NULL, FALSE);
  steps_name = g_strconcat (prefix, "steps", NULL);
  steps = fg_weight_set_lookup (from, steps_name);
  if (steps == NULL || fg_tensor_numel (&steps->value) * 4 < sizeof opt->steps)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA, "optimizer state: no entry '%s'",
                   steps_name);
      return FALSE;
    }
  /* Check everything before copying anything. */
  for (guint pass = 0; pass < 2; pass++)
    for (guint i = 0; i < opt->n_slots; i++)
      {
        Slot *s = &opt->slots[i];
        for (int which = 0; which < 2; which++)
          {
            g_autofree char *name = g_strconcat (prefix, which == 0 ? "m/" : "v/",
                                                 s->weight->name, NULL);
            FgWeight *w = fg_weight_set_lookup (from, name);
            if (pass == 0 && (w == NULL || fg_tensor_numel (&w->value) != s->n))
              {
                g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                             "optimizer state: entry '%s' is %s", name,
                             w == NULL ? "missing" : "of another size");
                return FALSE;
              }
            if (pass == 1)
              memcpy (which == 0 ? s->m : s->v, w->value.data, s->n * sizeof (float));
          }
      }
  fg_weight_get_bytes (steps, &opt->steps, sizeof opt->steps);
  return TRUE;
}

/* ---------------------------------------------------------------------------- schedules */

static const char *const schedule_names[] = {
  [FG_SCHEDULE_CONSTANT] = "constant",
  [FG_SCHEDULE_COSINE] = "cosine",
  [FG_SCHEDULE_STEP] = "step",
  [FG_SCHEDULE_LINEAR_RAMP] = "linear-ramp",
  [FG_SCHEDULE_WILSON] = "wilson",
};

/**
 * fg_schedule_init:
 * @s: (out caller-allocates): the schedule
 * @kind: the kind
 * @total: the horizon, in the caller's unit (steps or epochs)
 *
 * Fills @s with the authors' defaults: floor 1e-3 for cosine (oil's cosLr), 0.01 for wilson;
 * gamma 0.1 with milestones at 50 % and 80 % (set for every kind, used by step).
 */
void
fg_schedule_init (FgSchedule *s, FgScheduleKind kind, double total)
{
  g_return_if_fail (s != NULL);

  memset (s, 0, sizeof *s);
  s->kind = kind;
  s->total = total;
  switch (kind)
    {
    case FG_SCHEDULE_COSINE:
      s->floor = 1e-3;
      break;
    case FG_SCHEDULE_WILSON:
      s->floor = 0.01;
      break;
    case FG_SCHEDULE_CONSTANT:
    case FG_SCHEDULE_STEP:
    case FG_SCHEDULE_LINEAR_RAMP:
    default:
      s->floor = 0.0;
      break;
    }
  s->gamma = 0.1;
  s->n_milestones = 2;
  s->milestones[0] = 0.5;
  s->milestones[1] = 0.8;
}

/**
 * fg_schedule_factor:
 * @s: a schedule
 * @t: the time, in the unit of @s->total
 *
 * The multiplicative factor at @t.  Progress p = @t / @s->total is clamped to [0, 1], so times
 * before 0 act as 0 and times beyond the horizon keep the final value (a cosine does not rise
 * again); with total ≤ 0 the schedule is at its end (p = 1) for every @t.
 *
 * - constant: 1
 * - cosine: max (0.5·(1 + cos (π·p)), floor)
 * - step: gamma^(number of milestones ≤ p)
 * - linear-ramp: p
 * - wilson: 1 for p ≤ 0.5, then linear from 1 to floor at p = 0.9, then floor
 *
 * Returns: the factor.
 */
double
fg_schedule_factor (const FgSchedule *s, double t)
{
  double p;

  g_return_val_if_fail (s != NULL, 1.0);
  g_return_val_if_fail (!isnan (t), 1.0);

  if (s->total > 0.0)
    p = CLAMP (t / s->total, 0.0, 1.0);
  else
    p = 1.0;

  switch (s->kind)
    {
    case FG_SCHEDULE_CONSTANT:
      return 1.0;
    case FG_SCHEDULE_COSINE:
      return MAX (0.5 * (1.0 + cos (G_PI * p)), s->floor);
    case FG_SCHEDULE_STEP:
      {
        double f = 1.0;
        guint n = MIN (s->n_milestones, FG_SCHEDULE_MAX_MILESTONES);
        for (guint i = 0; i < n; i++)
          if (s->milestones[i] <= p)
            f *= s->gamma;
        return f;
      }
    case FG_SCHEDULE_LINEAR_RAMP:
      return p;
    case FG_SCHEDULE_WILSON:
      if (p <= 0.5)
        return 1.0;
      if (p <= 0.9)
        return 1.0 - (1.0 - s->floor) * (p - 0.5) / 0.4;
      return s->floor;
    default:
      g_return_val_if_reached (1.0);
    }
}

/**
 * fg_schedule_kind_from_string:
 * @name: "constant", "cosine", "step", "linear-ramp" or "wilson"
 * @kind: (out): the kind
 * @error: return location for a #GError
 *
 * Returns: %TRUE on success; %FALSE with %FG_ERROR_INVALID_PARAM (listing the valid names)
 * for an unknown name.
 */
gboolean
fg_schedule_kind_from_string (const char *name, FgScheduleKind *kind, GError **error)
{
  g_return_val_if_fail (name != NULL, FALSE);
  g_return_val_if_fail (kind != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  for (guint i = 0; i < G_N_ELEMENTS (schedule_names); i++)
    if (schedule_names[i] != NULL && strcmp (name, schedule_names[i]) == 0)
      {
        *kind = (FgScheduleKind) i;
        return TRUE;
      }
  g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
               "unknown schedule '%s' (valid: constant, cosine, step, linear-ramp, wilson)", name);
  return FALSE;
}

/**
 * fg_schedule_kind_to_string:
 * @kind: a kind
 *
 * Returns: (transfer none): the kind's name as accepted by fg_schedule_kind_from_string (), or
 * %NULL for an invalid kind.
 */
const char *
fg_schedule_kind_to_string (FgScheduleKind kind)
{
  if ((guint) kind >= G_N_ELEMENTS (schedule_names))
    return NULL;
  return schedule_names[kind];
}
