/* SPDX-License-Identifier: MIT */
/* flowgmm — optimizers and learning-rate schedules. */
#pragma once

#include <glib.h>
#include <flowgmm/weights.h>

G_BEGIN_DECLS

typedef enum {
  FG_OPTIM_ADAM = 0,  /* weight decay, if any, is an L2 term added to the gradient */
  FG_OPTIM_ADAMW = 1, /* decoupled weight decay (Loshchilov & Hutter): w -= lr·wd·w */
} FgOptimKind;

typedef struct {
  FgOptimKind kind;
  double beta1;         /* 0.9 */
  double beta2;         /* 0.999 */
  double eps;           /* 1e-8 */
  double weight_decay;  /* applied to weights with decay == TRUE */
} FgOptimConfig;

/* Defaults: Adam, betas (0.9, 0.999), eps 1e-8, no weight decay. */
FG_API void fg_optim_config_init (FgOptimConfig *config, FgOptimKind kind);

typedef struct _FgOptimizer FgOptimizer;

/* The optimizer keeps its moment buffers for every trainable weight in the set (borrowed;
 * the set must outlive it and must not gain weights afterwards). */
FG_API FgOptimizer *fg_optimizer_new (const FgOptimConfig *config, FgWeightSet *weights);
FG_API void         fg_optimizer_free (FgOptimizer *opt);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (FgOptimizer, fg_optimizer_free)
/* One update with learning rate lr from the accumulated gradients (not zeroed here). */
FG_API void         fg_optimizer_step (FgOptimizer *opt, double lr);
/* Clip the global gradient norm to max_norm (0: no clipping), update, and (zero_grad) clear the
 * gradients, in two passes over the weights; returns the norm before clipping.  A non-finite
 * norm updates nothing.  Same values as fg_weight_set_clip_grad_norm + fg_optimizer_step +
 * fg_weight_set_zero_grad. */
FG_API double       fg_optimizer_step_clipped (FgOptimizer *opt, double lr, double max_norm,
                                               gboolean zero_grad);
/* The same with the norm already known (fg_weight_set_grad_norm of the set, e.g. from
 * fg_tape_grad_norm): one pass over the weights; returns norm. */
FG_API double       fg_optimizer_step_clip_norm (FgOptimizer *opt, double lr, double norm,
                                                 double max_norm, gboolean zero_grad);
FG_API guint64      fg_optimizer_get_steps (const FgOptimizer *opt);
/* The optimizer's state (step count and both moments of every trainable weight) as weights of
 * `into` named "<prefix>steps", "<prefix>m/<weight>", "<prefix>v/<weight>", bit for bit, so a
 * training run can be checkpointed (fg_weight_set_save) and resumed exactly. */
FG_API void         fg_optimizer_save_state (const FgOptimizer *opt, FgWeightSet *into,
                                             const char *prefix);
/* Restore what fg_optimizer_save_state wrote from `from` (a set of the same structure, e.g.
 * filled by fg_weight_set_load).  FG_ERROR_DATA naming the entry when one is missing or has
 * another size; the optimizer is unchanged on error. */
FG_API gboolean     fg_optimizer_load_state (FgOptimizer *opt, FgWeightSet *from,
                                             const char *prefix, GError **error);

/* Learning-rate (or any weight) schedules: a multiplicative factor of time t in [0, total]. */
typedef enum {
  FG_SCHEDULE_CONSTANT = 0, /* 1 */
  FG_SCHEDULE_COSINE,       /* max(0.5·(1 + cos(π·t/total)), floor)       (authors' cosLr) */
  FG_SCHEDULE_STEP,         /* gamma^(number of milestones ≤ t/total)     (milestones: fractions) */
  FG_SCHEDULE_LINEAR_RAMP,  /* min(1, t/total), 0 for t ≤ 0               (consistency ramp-up) */
  FG_SCHEDULE_WILSON,       /* 1 to 50 %, linear to floor at 90 %, then floor (authors' "wilson") */
} FgScheduleKind;

#define FG_SCHEDULE_MAX_MILESTONES 8

typedef struct {
  FgScheduleKind kind;
  double total;                                 /* horizon in the caller's unit (steps, epochs) */
  double floor;                                 /* cosine / wilson floor factor */
  double gamma;                                 /* step decay factor */
  guint  n_milestones;
  double milestones[FG_SCHEDULE_MAX_MILESTONES]; /* fractions of total, increasing */
} FgSchedule;

FG_API void   fg_schedule_init (FgSchedule *s, FgScheduleKind kind, double total);
FG_API double fg_schedule_factor (const FgSchedule *s, double t);
/* Parse "constant", "cosine", "step", "linear-ramp", "wilson". */
FG_API gboolean fg_schedule_kind_from_string (const char *name, FgScheduleKind *kind,
                                              GError **error);
FG_API const char *fg_schedule_kind_to_string (FgScheduleKind kind);

G_END_DECLS
