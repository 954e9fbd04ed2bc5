/* SPDX-License-Identifier: MIT */
/* flowgmm — what a loss plugin sees of one training step: the FgLossBatch accessors.
 *
 * A batch holds the step's tape, the latent mixture, the labeled examples (with labels) and
 * the unlabeled ones, stored as one block of rows: the labeled rows first, then the unlabeled
 * rows (FG_LOSS_SET_ALL), so a loss may push everything through the flow in one pass and slice
 * the result (fg_op_slice_rows).  fg_loss_batch_forward () runs the flow in training mode;
 * every call draws fresh dropout masks (and input noise, when asked to perturb) from the
 * batch's generator, so two calls give two perturbations of the same points (eq. 7).
 *
 * The struct is opaque: plugins use only these functions, so it can grow without breaking
 * them.  Everything a batch hands out is valid until the tape is reset (the next step).
 * The trainer (core) builds batches; tests may build their own with fg_loss_batch_new ().
 */
#pragma once

#include <glib.h>
#include <flowgmm/plugin.h>
#include <flowgmm/gmm.h>

G_BEGIN_DECLS

typedef enum {
  FG_LOSS_SET_LABELED = 0,   /* the labeled rows, with labels */
  FG_LOSS_SET_UNLABELED = 1, /* the unlabeled rows */
  FG_LOSS_SET_ALL = 2,       /* both: labeled rows first, then unlabeled */
} FgLossSet;

typedef enum {
  FG_LOSS_FORWARD_DEFAULT = 0,      /* training mode: dropout on, fresh masks */
  FG_LOSS_FORWARD_PERTURB = 1 << 0, /* also perturb the inputs (the method's input noise) */
  FG_LOSS_FORWARD_NO_GRAD = 1 << 1, /* record nothing: a target, e.g. ŷ of eq. 7 */
  FG_LOSS_FORWARD_EVAL = 1 << 2,    /* evaluation mode: no dropout (a deterministic pass) */
} FgLossForwardFlags;

/* ---- For loss plugins ------------------------------------------------------------------- */
FG_API FgTape       *fg_loss_batch_get_tape (FgLossBatch *batch);
FG_API FgGmm        *fg_loss_batch_get_gmm (FgLossBatch *batch);
FG_API guint         fg_loss_batch_get_n_classes (FgLossBatch *batch);
/* Number of rows of a set (0 when empty: e.g. no unlabeled data in a labeled-only run). */
FG_API gsize         fg_loss_batch_get_n (FgLossBatch *batch, FgLossSet set);
/* The rows of a set as a constant leaf (no gradient): [n, D] or n×C×H×W; NULL when empty. */
FG_API FgVar        *fg_loss_batch_get_x (FgLossBatch *batch, FgLossSet set);
/* The rows of a set under the step's second augmentation (the authors' x″ of TransformTwice),
 * as fg_loss_batch_get_x gives them under the first; the same rows when the method does not
 * augment.  NULL when empty. */
FG_API FgVar        *fg_loss_batch_get_x_second (FgLossBatch *batch, FgLossSet set);
/* The labels of the labeled rows (fg_loss_batch_get_n (batch, FG_LOSS_SET_LABELED) of them). */
FG_API const gint32 *fg_loss_batch_get_labels (FgLossBatch *batch);
/* z = f(x) with x's shape and *logdet = log|det ∂f/∂x| as [n, 1] (flags: FgLossForwardFlags).
 * NULL with an error when the flow fails. */
FG_API FgVar        *fg_loss_batch_forward (FgLossBatch *batch, FgVar *x, guint flags,
                                            FgVar **logdet, GError **error);
/* Training progress at this step: steps done before it, fractional epochs done before it
 * (step / steps per epoch) and the planned total, for ramps and schedules. */
FG_API guint64       fg_loss_batch_get_step (FgLossBatch *batch);
FG_API double        fg_loss_batch_get_epoch (FgLossBatch *batch);
FG_API double        fg_loss_batch_get_total_epochs (FgLossBatch *batch);
/* The batch's generator (dropout masks, noise; a loss may draw from it too). */
FG_API FgRng        *fg_loss_batch_get_rng (FgLossBatch *batch);
/* Data-parallel training (flowgmm/group.h): this batch may be one slice of the step's batch,
 * the other slices held by the other processes of a group.  fg_loss_batch_get_n_total () is
 * the number of rows of a set over the whole step (= fg_loss_batch_get_n () without a group):
 * divide a mean over a set by it, so the gradients the group sums are those of the whole
 * batch.  fg_loss_batch_get_group () is the group (NULL: alone), for a loss that needs a
 * statistic of the whole batch (fg_group_sum_doubles). */
FG_API gsize          fg_loss_batch_get_n_total (FgLossBatch *batch, FgLossSet set);
FG_API const FgGroup *fg_loss_batch_get_group (FgLossBatch *batch);

/* Soft targets for the unlabeled rows (n_unlabeled × K, rows summing to 1), or NULL when the
 * trainer gives none this step (fg_loss_batch_set_targets). */
FG_API const float  *fg_loss_batch_get_targets (FgLossBatch *batch);

/* ---- For the trainer and tests ------------------------------------------------------------ */
/* A batch over `flow` (an instance of `flow_vtable`) and `gmm`, drawing from `rng`; all
 * borrowed and kept. */
FG_API FgLossBatch *fg_loss_batch_new (FgGmm *gmm, const FgFlowVTable *flow_vtable,
                                       gpointer flow, FgRng *rng);
FG_API void         fg_loss_batch_free (FgLossBatch *batch);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (FgLossBatch, fg_loss_batch_free)
/* Start a step on `tape` (fresh or just reset): x holds n_labeled labeled rows (labels y) then
 * the unlabeled rows; x and y are borrowed, not copied, until the tape is reset. */
FG_API void fg_loss_batch_begin (FgLossBatch *batch, FgTape *tape, const FgTensor *x,
                                 gsize n_labeled, const gint32 *y);
FG_API void fg_loss_batch_set_progress (FgLossBatch *batch, guint64 step, double epoch,
                                        double total_epochs);
/* Standard deviation of the Gaussian noise FG_LOSS_FORWARD_PERTURB adds to the inputs. */
FG_API void fg_loss_batch_set_input_noise (FgLossBatch *batch, double std);
/* After begin: the same rows under a second, independent augmentation (shape of x; borrowed
 * until the tape is reset). */
FG_API void fg_loss_batch_set_second_view (FgLossBatch *batch, const FgTensor *x2);
/* After begin: soft targets (n_unlabeled × K, borrowed until the tape is reset) that the loss
 * may use for the unlabeled rows in place of its own E-step; NULL: none. */
FG_API void fg_loss_batch_set_targets (FgLossBatch *batch, const float *targets);
/* Mean −log p(x) (mixture, with the flow's log-det) of the step's first training forward of
 * all rows; NAN when there was none.  For progress lines (bits/dim). */
FG_API double fg_loss_batch_get_mean_nll (FgLossBatch *batch);
/* Make the batch one slice of a data-parallel step over `group`, whose slices hold
 * n_labeled_total labeled and n_unlabeled_total unlabeled rows in all (after begin). */
FG_API void fg_loss_batch_set_group (FgLossBatch *batch, const FgGroup *group,
                                     gsize n_labeled_total, gsize n_unlabeled_total);

G_END_DECLS
