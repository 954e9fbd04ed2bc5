/* SPDX-License-Identifier: MIT */
/* flowgmm — the batch a loss plugin sees (see loss.h). */
#include "config.h"

#include <math.h>
#include <string.h>

#include <flowgmm/loss.h>

struct _FgLossBatch {
  FgGmm *gmm;
  const FgFlowVTable *flow_vt;
  gpointer flow;
  FgRng *rng;
  double input_noise;

  /* The current step (valid until the tape is reset). */
  FgTape *tape;
  FgTensor x;          /* all rows: labeled, then unlabeled */
  gsize n_labeled;
  const gint32 *y;
  FgVar *x_var[3];     /* per FgLossSet, made on first use */
  FgTensor x2;         /* a second augmentation of the same rows (ndim 0: none) */
  FgVar *x2_var[3];    /* per FgLossSet, made on first use */
  const float *targets; /* n_unlabeled × K soft targets of the unlabeled rows, or NULL */
  double nll_sum;      /* Σ −log p(x) of the first training forward of all rows */
  gsize nll_n;         /* its rows (0: none yet) */

  guint64 step;
  double epoch, total_epochs;

  /* Data-parallel training: the group and the rows of each set over all its members. */
  const FgGroup *group;
  gsize n_total[2];
  gboolean have_totals;
};

/**
 * fg_loss_batch_new:
 * @gmm: the latent mixture
 * @flow_vtable: the flow's vtable
 * @flow: the flow instance
 * @rng: the generator for dropout masks and noise
 *
 * All arguments are borrowed and must outlive the batch.
 *
 * Returns: (transfer full): a batch with no data yet; see fg_loss_batch_begin ().
 */
FgLossBatch *
fg_loss_batch_new (FgGmm *gmm, const FgFlowVTable *flow_vtable, gpointer flow, FgRng *rng)
{
  FgLossBatch *b;
  g_return_val_if_fail (gmm != NULL && flow_vtable != NULL && rng != NULL, NULL);
  b = g_new0 (FgLossBatch, 1);
  b->gmm = gmm;
  b->flow_vt = flow_vtable;
  b->flow = flow;
  b->rng = rng;
  return b;
}

/**
 * fg_loss_batch_free:
 * @batch: (nullable): a batch
 */
void
fg_loss_batch_free (FgLossBatch *batch)
{
  g_free (batch);
}

/**
 * fg_loss_batch_begin:
 * @batch: a batch
 * @tape: the step's tape, fresh or just reset
 * @x: the step's rows: @n_labeled labeled rows, then the unlabeled ones ([n, D] or n×C×H×W)
 * @n_labeled: how many of the first rows are labeled
 * @y: (nullable): their labels (may be %NULL when @n_labeled is 0)
 *
 * Starts a step.  @x and @y are borrowed, not copied: they must stay unchanged until @tape is
 * reset.
 */
void
fg_loss_batch_begin (FgLossBatch *batch, FgTape *tape, const FgTensor *x, gsize n_labeled,
                     const gint32 *y)
{
  g_return_if_fail (batch != NULL && tape != NULL && x != NULL);
  g_return_if_fail (n_labeled <= fg_tensor_rows (x));
  g_return_if_fail (n_labeled == 0 || y != NULL);
  batch->tape = tape;
  batch->x = *x;
  batch->n_labeled = n_labeled;
  batch->y = y;
  memset (batch->x_var, 0, sizeof batch->x_var);
  memset (&batch->x2, 0, sizeof batch->x2);
  memset (batch->x2_var, 0, sizeof batch->x2_var);
  batch->targets = NULL;
  batch->nll_sum = 0.0;
  batch->nll_n = 0;
}

/**
 * fg_loss_batch_set_second_view:
 * @batch: a batch, after fg_loss_batch_begin ()
 * @x2: the same rows as the step's x under a second, independent augmentation (shape of x)
 *
 * Gives the loss a second view of the step's rows (the authors' TransformTwice: x′ is trained
 * on, x″ gives the pseudo-label).  Borrowed until the tape is reset; without it
 * fg_loss_batch_get_x_second () returns the rows of fg_loss_batch_get_x ().
 */
void
fg_loss_batch_set_second_view (FgLossBatch *batch, const FgTensor *x2)
{
  g_return_if_fail (batch != NULL && batch->tape != NULL && x2 != NULL);
  g_return_if_fail (fg_tensor_same_shape (x2, &batch->x));
  batch->x2 = *x2;
}

/**
 * fg_loss_batch_set_targets:
 * @batch: a batch, after fg_loss_batch_begin ()
 * @targets: (array) (nullable): n_unlabeled × K class distributions of the step's unlabeled
 *   rows (each row sums to 1), or %NULL for none
 *
 * Gives the loss soft targets for the unlabeled rows (e.g. the model's responsibilities
 * smoothed over a neighbour graph), which the flowgmm losses use in place of their own
 * E-step.  Borrowed until the tape is reset.
 */
void
fg_loss_batch_set_targets (FgLossBatch *batch, const float *targets)
{
  g_return_if_fail (batch != NULL && batch->tape != NULL);
  batch->targets = targets;
}

/**
 * fg_loss_batch_get_targets:
 * @batch: a batch
 *
 * Returns: (nullable): the soft targets of the unlabeled rows (n_unlabeled × K), or %NULL
 *   when the trainer gave none this step.
 */
const float *
fg_loss_batch_get_targets (FgLossBatch *batch)
{
  g_return_val_if_fail (batch != NULL, NULL);
  return batch->targets;
}

/**
 * fg_loss_batch_set_progress:
 * @batch: a batch
 * @step: optimizer steps done before this one
 * @epoch: fractional epochs done before this step
 * @total_epochs: the planned number of epochs
 */
void
fg_loss_batch_set_progress (FgLossBatch *batch, guint64 step, double epoch, double total_epochs)
{
  g_return_if_fail (batch != NULL);
  batch->step = step;
  batch->epoch = epoch;
  batch->total_epochs = total_epochs;
}

/**
 * fg_loss_batch_set_group:
 * @batch: a batch
 * @group: (nullable): the group of processes that each hold a slice of the step's batch
 *   (borrowed), or %NULL
 * @n_labeled_total: labeled rows of the step over the whole group
 * @n_unlabeled_total: unlabeled rows of the step over the whole group
 *
 * Makes the batch one slice of a data-parallel step: fg_loss_batch_get_n_total () returns the
 * totals, and flows see @group in FgFlowRun.group.  Set it after fg_loss_batch_begin ().
 */
void
fg_loss_batch_set_group (FgLossBatch *batch, const FgGroup *group, gsize n_labeled_total,
                         gsize n_unlabeled_total)
{
  g_return_if_fail (batch != NULL);
  batch->group = group;
  batch->n_total[FG_LOSS_SET_LABELED] = n_labeled_total;
  batch->n_total[FG_LOSS_SET_UNLABELED] = n_unlabeled_total;
  batch->have_totals = TRUE;
}

/**
 * fg_loss_batch_get_group:
 * @batch: a batch
 *
 * Returns: (nullable) (transfer none): the group whose slices make the step's batch, or %NULL
 *   when this process holds the whole batch.
 */
const FgGroup *
fg_loss_batch_get_group (FgLossBatch *batch)
{
  g_return_val_if_fail (batch != NULL, NULL);
  return batch->group;
}

/**
 * fg_loss_batch_get_n_total:
 * @batch: a batch
 * @set: which rows
 *
 * The rows of @set in the whole step: over every process of a data-parallel group, or
 * fg_loss_batch_get_n () when this process holds the whole batch.  A loss that averages a term
 * over a set divides by this, so that the group's summed gradient is the gradient of the whole
 * batch's mean.
 *
 * Returns: the number of rows.
 */
gsize
fg_loss_batch_get_n_total (FgLossBatch *batch, FgLossSet set)
{
  g_return_val_if_fail (batch != NULL, 0);
  if (!batch->have_totals)
    return fg_loss_batch_get_n (batch, set);
  if (set == FG_LOSS_SET_ALL)
    return batch->n_total[FG_LOSS_SET_LABELED] + batch->n_total[FG_LOSS_SET_UNLABELED];
  return batch->n_total[set];
}

/**
 * fg_loss_batch_set_input_noise:
 * @batch: a batch
 * @std: standard deviation (≥ 0) of the Gaussian noise that %FG_LOSS_FORWARD_PERTURB adds
 */
void
fg_loss_batch_set_input_noise (FgLossBatch *batch, double std)
{
  g_return_if_fail (batch != NULL && std >= 0.0);
  batch->input_noise = std;
}

/**
 * fg_loss_batch_get_tape:
 * @batch: a batch
 *
 * Returns: (transfer none): the step's tape.
 */
FgTape *
fg_loss_batch_get_tape (FgLossBatch *batch)
{
  g_return_val_if_fail (batch != NULL, NULL);
  return batch->tape;
}

/**
 * fg_loss_batch_get_gmm:
 * @batch: a batch
 *
 * Returns: (transfer none): the latent mixture.
 */
FgGmm *
fg_loss_batch_get_gmm (FgLossBatch *batch)
{
  g_return_val_if_fail (batch != NULL, NULL);
  return batch->gmm;
}

/**
 * fg_loss_batch_get_n_classes:
 * @batch: a batch
 *
 * Returns: the number of classes (mixture components).
 */
guint
fg_loss_batch_get_n_classes (FgLossBatch *batch)
{
  g_return_val_if_fail (batch != NULL, 0);
  return fg_gmm_get_n_classes (batch->gmm);
}

/**
 * fg_loss_batch_get_n:
 * @batch: a batch
 * @set: which rows
 *
 * Returns: the number of rows in @set this step.
 */
gsize
fg_loss_batch_get_n (FgLossBatch *batch, FgLossSet set)
{
  g_return_val_if_fail (batch != NULL, 0);
  if (batch->tape == NULL)
    return 0;
  switch (set)
    {
    case FG_LOSS_SET_LABELED:
      return batch->n_labeled;
    case FG_LOSS_SET_UNLABELED:
      return fg_tensor_rows (&batch->x) - batch->n_labeled;
    case FG_LOSS_SET_ALL:
      return fg_tensor_rows (&batch->x);
    }
  g_return_val_if_reached (0);
}

/**
 * fg_loss_batch_get_x:
 * @batch: a batch
 * @set: which rows
 *
 * Returns: (transfer none) (nullable): the rows of @set as a constant leaf on the step's tape
 * (row views of one leaf, so a forward of %FG_LOSS_SET_ALL covers both others), or %NULL when
 * the set is empty.
 */
FgVar *
fg_loss_batch_get_x (FgLossBatch *batch, FgLossSet set)
{
  gsize n;
  g_return_val_if_fail (batch != NULL, NULL);
  g_return_val_if_fail ((guint) set <= FG_LOSS_SET_ALL, NULL);
  n = fg_loss_batch_get_n (batch, set);
  if (n == 0)
    return NULL;
  if (batch->x_var[set] != NULL)
    return batch->x_var[set];
  if (batch->x_var[FG_LOSS_SET_ALL] == NULL)
    batch->x_var[FG_LOSS_SET_ALL] = fg_tape_constant (batch->tape, &batch->x);
  if (set == FG_LOSS_SET_LABELED)
    batch->x_var[set] = fg_op_slice_rows (batch->tape, batch->x_var[FG_LOSS_SET_ALL], 0, n);
  else if (set == FG_LOSS_SET_UNLABELED)
    batch->x_var[set] = fg_op_slice_rows (batch->tape, batch->x_var[FG_LOSS_SET_ALL],
                                          batch->n_labeled, n);
  return batch->x_var[set];
}

/**
 * fg_loss_batch_get_x_second:
 * @batch: a batch
 * @set: which rows
 *
 * Returns: (transfer none) (nullable): the rows of @set under the step's second augmentation
 * (the authors' x″), as fg_loss_batch_get_x () returns them under the first; the very rows of
 * fg_loss_batch_get_x () when the method does not augment.
 */
FgVar *
fg_loss_batch_get_x_second (FgLossBatch *batch, FgLossSet set)
{
  gsize n;
  g_return_val_if_fail (batch != NULL, NULL);
  g_return_val_if_fail ((guint) set <= FG_LOSS_SET_ALL, NULL);
  if (batch->x2.ndim == 0)
    return fg_loss_batch_get_x (batch, set);
  n = fg_loss_batch_get_n (batch, set);
  if (n == 0)
    return NULL;
  if (batch->x2_var[set] != NULL)
    return batch->x2_var[set];
  if (batch->x2_var[FG_LOSS_SET_ALL] == NULL)
    batch->x2_var[FG_LOSS_SET_ALL] = fg_tape_constant (batch->tape, &batch->x2);
  if (set == FG_LOSS_SET_LABELED)
    batch->x2_var[set] = fg_op_slice_rows (batch->tape, batch->x2_var[FG_LOSS_SET_ALL], 0, n);
  else if (set == FG_LOSS_SET_UNLABELED)
    batch->x2_var[set] = fg_op_slice_rows (batch->tape, batch->x2_var[FG_LOSS_SET_ALL],
                                           batch->n_labeled, n);
  return batch->x2_var[set];
}

/**
 * fg_loss_batch_get_mean_nll:
 * @batch: a batch
 *
 * The mean over the step's rows of −log p(x) = −log p_Z(f(x)) − log|det ∂f/∂x| under the
 * mixture, taken from the step's first training-mode forward of all rows
 * (fg_loss_batch_forward () of fg_loss_batch_get_x (batch, %FG_LOSS_SET_ALL) without
 * %FG_LOSS_FORWARD_NO_GRAD), for progress reports (bits/dim).
 *
 * Returns: the mean, or NAN when the loss made no such forward this step.
 */
double
fg_loss_batch_get_mean_nll (FgLossBatch *batch)
{
  g_return_val_if_fail (batch != NULL, NAN);
  return batch->nll_n > 0 ? batch->nll_sum / (double) batch->nll_n : NAN;
}

/**
 * fg_loss_batch_get_labels:
 * @batch: a batch
 *
 * Returns: (transfer none) (nullable): the labels of the labeled rows.
 */
const gint32 *
fg_loss_batch_get_labels (FgLossBatch *batch)
{
  g_return_val_if_fail (batch != NULL, NULL);
  return batch->y;
}

/* Σ −log p(x_i) of a forward of all rows, for fg_loss_batch_get_mean_nll (). */
static void
record_nll (FgLossBatch *batch, FgVar *z, FgVar *logdet)
{
  const gsize n = fg_tensor_rows (&z->value);
  FgTensor z2;
  double *lp;
  if (!fg_tensor_is_contiguous (&z->value) || fg_tensor_rows (&logdet->value) != n || n == 0)
    return;
  z2 = fg_tensor_wrap_2d (z->value.data, n, fg_tensor_cols (&z->value));
  lp = fg_tape_alloc (batch->tape, n * sizeof (double)); /* the arena: no heap in a step */
  fg_gmm_log_prob (batch->gmm, &z2, lp);
  batch->nll_sum = 0.0;
  for (gsize i = 0; i < n; i++)
    batch->nll_sum -= lp[i] + (double) fg_tensor_row (&logdet->value, i)[0];
  batch->nll_n = n;
}

/**
 * fg_loss_batch_forward:
 * @batch: a batch
 * @x: rows to transform, usually from fg_loss_batch_get_x ()
 * @flags: #FgLossForwardFlags
 * @logdet: (out): log|det ∂f/∂x| per row, [n, 1]
 * @error: return location for a #GError
 *
 * Runs the flow on @x in training mode (dropout on, unless %FG_LOSS_FORWARD_EVAL), drawing
 * fresh masks from the batch's generator at every call.  %FG_LOSS_FORWARD_PERTURB first adds
 * N(0, noise²) to every input (when the method sets input noise); %FG_LOSS_FORWARD_NO_GRAD
 * records nothing on the tape.
 *
 * Returns: (transfer none) (nullable): z = f(@x), with @x's shape; %NULL with @error set when
 * the flow fails.
 */
FgVar *
fg_loss_batch_forward (FgLossBatch *batch, FgVar *x, guint flags, FgVar **logdet,
                       GError **error)
{
  FgFlowRun run;
  FgVar *z, *x_all;
  gboolean grad_was;
  g_return_val_if_fail (batch != NULL && batch->tape != NULL, NULL);
  g_return_val_if_fail (logdet != NULL, NULL);
  *logdet = NULL;
  if (x == NULL)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "forward: no input rows");
      return NULL;
    }
  x_all = x;
  grad_was = fg_tape_get_grad_enabled (batch->tape);
  if (flags & FG_LOSS_FORWARD_NO_GRAD)
    fg_tape_set_grad_enabled (batch->tape, FALSE);

  if ((flags & FG_LOSS_FORWARD_PERTURB) && batch->input_noise > 0.0)
    {
      FgVar *noise = fg_tape_empty (batch->tape, x->value.ndim, x->value.shape);
      fg_rng_fill_normal (batch->rng, noise->value.data, fg_tensor_numel (&noise->value), 0.0f,
                          (float) batch->input_noise);
      x = fg_op_add (batch->tape, x, noise);
    }
  memset (&run, 0, sizeof run);
  run.train = !(flags & FG_LOSS_FORWARD_EVAL);
  run.rng = batch->rng;
  run.group = batch->group;
  z = batch->flow_vt->forward (batch->flow, batch->tape, x, &run, logdet, error);

  fg_tape_set_grad_enabled (batch->tape, grad_was);
  if (z == NULL || *logdet == NULL)
    {
      if (error != NULL && *error == NULL)
        g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "the flow's forward gave no result");
      *logdet = NULL;
      return NULL;
    }
  if (batch->nll_n == 0 && !(flags & FG_LOSS_FORWARD_NO_GRAD)
      && x_all != NULL && x_all == batch->x_var[FG_LOSS_SET_ALL])
    record_nll (batch, z, *logdet);
  return z;
}

/**
 * fg_loss_batch_get_step:
 * @batch: a batch
 *
 * Returns: optimizer steps done before this one.
 */
guint64
fg_loss_batch_get_step (FgLossBatch *batch)
{
  g_return_val_if_fail (batch != NULL, 0);
  return batch->step;
}

/**
 * fg_loss_batch_get_epoch:
 * @batch: a batch
 *
 * Returns: fractional epochs done before this step.
 */
double
fg_loss_batch_get_epoch (FgLossBatch *batch)
{
  g_return_val_if_fail (batch != NULL, 0.0);
  return batch->epoch;
}

/**
 * fg_loss_batch_get_total_epochs:
 * @batch: a batch
 *
 * Returns: the planned number of epochs (fractional when training is set in iterations).
 */
double
fg_loss_batch_get_total_epochs (FgLossBatch *batch)
{
  g_return_val_if_fail (batch != NULL, 0.0);
  return batch->total_epochs;
}

/**
 * fg_loss_batch_get_rng:
 * @batch: a batch
 *
 * Returns: (transfer none): the batch's generator.
 */
FgRng *
fg_loss_batch_get_rng (FgLossBatch *batch)
{
  g_return_val_if_fail (batch != NULL, NULL);
  return batch->rng;
}
