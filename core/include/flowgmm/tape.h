/* SPDX-License-Identifier: MIT */
/* flowgmm — reverse-mode automatic differentiation on a per-step tape.
 *
 * Ops execute eagerly: each fg_op_* computes its value at once into memory from the tape's arena
 * and, when gradients are enabled and an input needs one, records how to propagate the gradient
 * back.  fg_tape_backward () walks the records in reverse.  fg_tape_reset () forgets every node
 * but keeps the arena's blocks, so a training step allocates nothing from the heap once warm.
 * A backward pass gives each recorded node's gradient back to the tape as soon as that node's
 * own backward has run (its grad.data is NULL afterwards): only the gradients of weights (and
 * of nodes that are not records) outlive the pass, and memory for the rest is that of the
 * gradients alive at one time.  Scratch taken with fg_tape_alloc () inside a backward function
 * is reused after it returns.
 *
 * Shapes: binary ops take a full operand `a` and an operand `b` that is either the same shape,
 * a row vector [1, cols] (broadcast over rows), a column [rows, 1] (broadcast over columns) or a
 * scalar [1, 1]; the result has a's shape.  A 4-D tensor N×C×H×W is, for these rules, a matrix
 * of N rows and C·H·W columns, so concatenating or slicing channels is the same as columns.
 *
 * Reductions (sum, mean, logsumexp, log-densities) accumulate in double.
 *
 * Shape mismatches are programmer errors: the op logs a critical warning and returns NULL, and
 * every op returns NULL when given a NULL input, so fg_tape_backward () reports the failure.
 */
#pragma once

#include <glib.h>
#include <flowgmm/tensor.h>
#include <flowgmm/rng.h>
#include <flowgmm/weights.h>
#include <flowgmm/parallel.h>
#include <flowgmm/group.h>

G_BEGIN_DECLS

typedef struct _FgTape FgTape;

/* A node on the tape.  Read-only for callers; the tape owns the memory. */
typedef struct _FgVar {
  FgTensor value;         /* contiguous unless made by a view op */
  FgTensor grad;          /* .data is NULL until the backward pass reaches the node */
  gboolean requires_grad; /* some weight upstream wants a gradient */
} FgVar;

typedef enum {
  FG_AXIS_ROWS = 0, /* reduce over rows: [N, C] -> [1, C] */
  FG_AXIS_COLS = 1, /* reduce over columns: [N, C] -> [N, 1] */
  FG_AXIS_ALL = 2,  /* reduce everything: -> [1, 1] */
} FgAxis;

FG_API FgTape  *fg_tape_new (void);
FG_API void     fg_tape_free (FgTape *tape);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (FgTape, fg_tape_free)
/* Forget all nodes; keep the memory for the next step. */
FG_API void     fg_tape_reset (FgTape *tape);
/* With gradients disabled no backward record is kept (evaluation, inverse passes). */
FG_API void     fg_tape_set_grad_enabled (FgTape *tape, gboolean enabled);
FG_API gboolean fg_tape_get_grad_enabled (const FgTape *tape);

/* Arena scratch memory valid until the next reset; 64-byte aligned, not zeroed. */
FG_API gpointer fg_tape_alloc (FgTape *tape, gsize bytes);
FG_API float   *fg_tape_alloc_floats (FgTape *tape, gsize n);

typedef struct {
  gsize n_nodes;       /* nodes recorded since the last reset */
  gsize arena_bytes;   /* bytes reserved by the arena (all blocks) */
  gsize heap_allocs;   /* heap allocations made by the tape since it was created */
} FgTapeStats;
FG_API void fg_tape_get_stats (const FgTape *tape, FgTapeStats *stats);
/* Of the weights whose Σ g² the last backward pass tracked (fg_tape_set_track_grad_norms), how
 * many were taken inside the kernel that finished their gradient rather than by the tape.
 * (A function, not an FgTapeStats field: callers allocate that struct, so it cannot grow.) */
FG_API gsize fg_tape_get_fused_norms (const FgTape *tape);

/* Leaves. */
/* Wrap caller memory (no copy): it must stay valid until reset.  No gradient. */
FG_API FgVar *fg_tape_constant (FgTape *tape, const FgTensor *t);
/* Copy caller memory into the arena.  No gradient. */
FG_API FgVar *fg_tape_constant_copy (FgTape *tape, const FgTensor *t);
/* A weight: the value is read in place; gradients accumulate into w->grad (if trainable). */
FG_API FgVar *fg_tape_weight (FgTape *tape, FgWeight *w);
/* A fresh uninitialised arena tensor without gradient (fill it yourself). */
FG_API FgVar *fg_tape_empty (FgTape *tape, guint ndim, const gsize *shape);
FG_API FgVar *fg_tape_empty_2d (FgTape *tape, gsize rows, gsize cols);

/* Backward from a [1,1] scalar (seed 1), or from any node with an explicit seed gradient. */
FG_API gboolean fg_tape_backward (FgTape *tape, FgVar *loss, GError **error);
FG_API gboolean fg_tape_backward_seed (FgTape *tape, FgVar *out, const FgTensor *seed,
                                       GError **error);
/* With tracking on (default off), each backward pass takes the sum of squares of every
 * weight's gradient as soon as it is final, while it is in cache; fg_tape_grad_norm () then
 * gives fg_weight_set_grad_norm (set), bit for bit, without another pass over the gradients.
 * It stays valid until the gradients are changed by anything but a backward pass of this tape;
 * with tracking off it is computed on the spot. */
FG_API void   fg_tape_set_track_grad_norms (FgTape *tape, gboolean track);
FG_API double fg_tape_grad_norm (FgTape *tape, const FgWeightSet *set);

/* ---- Custom ops (hand-fused kernels with their own backward) ---------------------------
 * fg_tape_op_new () allocates the output node (value uninitialised) and, when gradients are
 * on and an input requires one, records `backward` with `saved_size` bytes of private data
 * (returned in *saved, arena memory).  In `backward`, out->grad holds dL/d(out); add the
 * input gradients into fg_tape_grad (tape, input), which allocates and zeroes the buffer on
 * first use and returns NULL for an input that needs no gradient. */
typedef void (*FgBackwardFunc) (FgTape *tape, FgVar *out, FgVar *const *inputs, gpointer saved);
FG_API FgVar    *fg_tape_op_new (FgTape *tape, guint ndim, const gsize *shape,
                                 FgVar *const *inputs, guint n_inputs, FgBackwardFunc backward,
                                 gsize saved_size, gpointer *saved);
FG_API FgTensor *fg_tape_grad (FgTape *tape, FgVar *v);
/* The same without zeroing a new buffer: when *fresh comes back TRUE the backward function must
 * write (not add) every element of it. */
FG_API FgTensor *fg_tape_grad_fresh (FgTape *tape, FgVar *v, gboolean *fresh);

/* ---- Threads for op kernels ---------------------------------------------------------------
 * The pool is in <flowgmm/parallel.h>; these older names stay for plugins built against ABI 1. */
typedef FgParallelTaskFunc FgTapeTaskFunc;
FG_API guint fg_tape_parallel_tasks (double ns);
FG_API void  fg_tape_parallel_run (guint n_tasks, FgTapeTaskFunc func, gpointer data);

/* ---- Linear algebra ---------------------------------------------------------------------- */
/* op(a) · op(b) through cblas_sgemm; 2-D operands. */
FG_API FgVar *fg_op_matmul (FgTape *tape, FgVar *a, FgVar *b, gboolean trans_a, gboolean trans_b);
/* x · W + b with W [in, out] and b [1, out] (b may be NULL). */
FG_API FgVar *fg_op_linear (FgTape *tape, FgVar *x, FgVar *w, FgVar *b);
/* Activations fused into fg_op_linear_act.  Each one's derivative is a function of its output,
 * so the fused op keeps only the activated output. */
typedef enum {
  FG_ACT_NONE = 0,
  FG_ACT_RELU,
  FG_ACT_LEAKY_RELU, /* slope for inputs <= 0: the `slope` argument, >= 0 */
  FG_ACT_TANH,
  FG_ACT_SIGMOID,
  FG_ACT_SOFTPLUS,
} FgActivation;
/* act(x · W + b) as one node, in chunks of 256 rows so that each block of the product is still
 * in cache when the activation runs; values as the unfused ops (up to sgemm rounding). */
FG_API FgVar *fg_op_linear_act (FgTape *tape, FgVar *x, FgVar *w, FgVar *b, FgActivation act,
                                float slope);
/* dropout (act (x · W + b), p): the same values, mask and RNG draw as fg_op_dropout () of
 * fg_op_linear_act (); one node for FG_ACT_RELU (two passes fewer each way), the two ops
 * otherwise; plain fg_op_linear_act () when !train or p == 0. */
FG_API FgVar *fg_op_linear_act_dropout (FgTape *tape, FgVar *x, FgVar *w, FgVar *b,
                                        FgActivation act, float slope, float p, FgRng *rng,
                                        gboolean train);
/* Columns `cols` of x · W + b without gathering W: one sgemm per run of consecutive indices on
 * W in place; W's and b's gradients accumulate straight into those columns.  cols must stay
 * valid until the tape is reset. */
FG_API FgVar *fg_op_linear_cols (FgTape *tape, FgVar *x, FgVar *w, FgVar *b,
                                 const guint32 *cols, gsize n_cols);
/* Squared Euclidean distances between rows: a [N, D], b [K, D] -> [N, K]. */
FG_API FgVar *fg_op_sq_dist (FgTape *tape, FgVar *a, FgVar *b);

/* ---- Elementwise, with broadcasting of b (see top) ---------------------------------------- */
FG_API FgVar *fg_op_add (FgTape *tape, FgVar *a, FgVar *b);
FG_API FgVar *fg_op_sub (FgTape *tape, FgVar *a, FgVar *b);
FG_API FgVar *fg_op_mul (FgTape *tape, FgVar *a, FgVar *b);
FG_API FgVar *fg_op_div (FgTape *tape, FgVar *a, FgVar *b);
FG_API FgVar *fg_op_add_bias (FgTape *tape, FgVar *a, FgVar *bias); /* bias [1, cols] */
/* a ⊙ mask for a constant 0/1 (or any constant) mask: no gradient flows into the mask. */
FG_API FgVar *fg_op_mask (FgTape *tape, FgVar *a, const FgTensor *mask);

FG_API FgVar *fg_op_scale (FgTape *tape, FgVar *a, float s);        /* s·a */
FG_API FgVar *fg_op_add_scalar (FgTape *tape, FgVar *a, float s);   /* a + s */
FG_API FgVar *fg_op_neg (FgTape *tape, FgVar *a);
FG_API FgVar *fg_op_square (FgTape *tape, FgVar *a);
FG_API FgVar *fg_op_exp (FgTape *tape, FgVar *a);
FG_API FgVar *fg_op_log (FgTape *tape, FgVar *a);
FG_API FgVar *fg_op_tanh (FgTape *tape, FgVar *a);
FG_API FgVar *fg_op_sigmoid (FgTape *tape, FgVar *a);
FG_API FgVar *fg_op_softplus (FgTape *tape, FgVar *a);              /* log(1 + e^a), stable */
FG_API FgVar *fg_op_relu (FgTape *tape, FgVar *a);
FG_API FgVar *fg_op_leaky_relu (FgTape *tape, FgVar *a, float slope);
/* Inverted dropout: at train time zero each element with probability p and scale the rest by
 * 1/(1-p); returns `a` itself when !train or p == 0. */
FG_API FgVar *fg_op_dropout (FgTape *tape, FgVar *a, float p, FgRng *rng, gboolean train);

/* ---- Reductions (double accumulation) ----------------------------------------------------- */
FG_API FgVar *fg_op_sum (FgTape *tape, FgVar *a, FgAxis axis);
FG_API FgVar *fg_op_mean (FgTape *tape, FgVar *a, FgAxis axis);
FG_API FgVar *fg_op_logsumexp (FgTape *tape, FgVar *a);             /* over columns -> [N, 1] */
FG_API FgVar *fg_op_log_softmax (FgTape *tape, FgVar *a);           /* over columns */
FG_API FgVar *fg_op_softmax (FgTape *tape, FgVar *a);               /* over columns */
/* out[i] = a[i, idx[i]] -> [N, 1]; idx is copied; idx[i] < 0 gives 0 with no gradient. */
FG_API FgVar *fg_op_gather (FgTape *tape, FgVar *a, const gint32 *idx);

/* ---- Shape ----------------------------------------------------------------------------------- */
/* Concatenate columns (2-D) or channels (4-D, same H×W); rows must agree. */
FG_API FgVar *fg_op_concat (FgTape *tape, FgVar *a, FgVar *b);
/* Columns [start, start+n) of a 2-D tensor, or channels of a 4-D one: a view, no copy. */
FG_API FgVar *fg_op_slice (FgTape *tape, FgVar *a, gsize start, gsize n);
/* Rows [start, start+n): a view, no copy. */
FG_API FgVar *fg_op_slice_rows (FgTape *tape, FgVar *a, gsize start, gsize n);
/* Same rows, new trailing shape with the same number of columns (view of contiguous data). */
FG_API FgVar *fg_op_reshape (FgTape *tape, FgVar *a, guint ndim, const gsize *shape);
/* Space-to-depth by 2: N×C×H×W -> N×4C×(H/2)×(W/2), out channel = 4c + 2·dy + dx. */
FG_API FgVar *fg_op_squeeze2d (FgTape *tape, FgVar *a);
FG_API FgVar *fg_op_unsqueeze2d (FgTape *tape, FgVar *a);

/* ---- Convolution ------------------------------------------------------------------------------ */
/* Stride 1, zero padding `pad`: x N×Cin×H×W, w [Cout, Cin, kh, kw], bias [1, Cout] or NULL
 * -> N×Cout×(H+2pad-kh+1)×(W+2pad-kw+1).  im2col + sgemm. */
FG_API FgVar *fg_op_conv2d (FgTape *tape, FgVar *x, FgVar *w, FgVar *bias, guint pad);

/* ---- Per-channel ops of convolutional nets (a 4-D N×C×H×W, or [N, C] with H·W = 1) --------- */
/* act (γ·(x − μ)/√(σ² + eps) + β) per channel, as torch.nn.BatchNorm2d: with `train`, μ and σ²
 * are the batch's (biased) statistics and running_mean/running_var (C values each, NULL to
 * skip) are updated in place with `momentum` (unbiased variance); otherwise the running ones
 * are used (and must be given).  gamma/beta: C values or NULL (1 and 0).  act: FG_ACT_NONE or
 * an activation fused into the same pass (leaky-relu with slope 0). */
FG_API FgVar *fg_op_batch_norm2d (FgTape *tape, FgVar *x, FgVar *gamma, FgVar *beta,
                                  FgTensor *running_mean, FgTensor *running_var, float momentum,
                                  float eps, gboolean train, FgActivation act);
/* The same over a data-parallel group (flowgmm/group.h) whose members each hold a slice of the
 * batch: in training, μ and σ² are the whole batch's (per-channel sums over the group in the
 * forward pass, and Σdy, Σdy·x̂ in the backward pass), as one process would compute them on
 * the whole batch; γ and β get this slice's gradient (the trainer sums those).  Collective in
 * training: every member calls it in the same order.  A NULL group: fg_op_batch_norm2d. */
FG_API FgVar *fg_op_batch_norm2d_group (FgTape *tape, FgVar *x, FgVar *gamma, FgVar *beta,
                                        FgTensor *running_mean, FgTensor *running_var,
                                        float momentum, float eps, gboolean train,
                                        FgActivation act, const FgGroup *group);
/* Weight normalisation (torch.nn.utils.weight_norm, dim 0): w[o, :] = g[o]·v[o, :]/‖v[o, :]‖
 * for v [O, ...] and O magnitudes g. */
FG_API FgVar *fg_op_weight_norm (FgTape *tape, FgVar *v, FgVar *g);
/* y[n, c, ·] = x[n, c, ·]·scale[c] + shift[c]; scale/shift C values or NULL (1 and 0). */
FG_API FgVar *fg_op_channel_affine (FgTape *tape, FgVar *x, FgVar *scale, FgVar *shift);

/* ---- Constant nodes --------------------------------------------------------------------------- */
/* A leaf without gradient of the given shape, every element `value` (or 0). */
FG_API FgVar *fg_op_full (FgTape *tape, guint ndim, const gsize *shape, float value);
FG_API FgVar *fg_op_zeros (FgTape *tape, guint ndim, const gsize *shape);

/* ---- Small square matrices (invertible layers; exact, in double) ---------------------------- */
/* W = P·L·(U + diag(sign ⊙ exp(log_s))) [n, n]: row i of W is row perm[i] of L·U' (perm: n
 * indices stored as floats, or NULL for the identity); L is unit lower-triangular from the
 * strictly lower part of `lower` (NULL: L = I); U the strictly upper part of `upper`; sign n
 * constants ±1.  log|det W| = Σ log_s.  Gradients to lower, upper and log_s. */
FG_API FgVar *fg_op_lu_matrix (FgTape *tape, const FgTensor *perm, FgVar *lower, FgVar *upper,
                               const FgTensor *sign, FgVar *log_s);
/* X = A⁻¹ B for a triangular A [n, n] (its lower or upper triangle; unit_diag: ones on the
 * diagonal) and B [n, k]. */
FG_API FgVar *fg_op_solve_triangular (FgTape *tape, FgVar *a, FgVar *b, gboolean lower,
                                      gboolean unit_diag);
/* log |det A| of a square A as [1, 1] (LU with partial pivoting; gradient A⁻ᵀ). */
FG_API FgVar *fg_op_logabsdet (FgTape *tape, FgVar *a);
/* Not a tape op: LU with partial pivoting of the n × n doubles `lu` in place (L strictly below
 * the diagonal, U on and above; piv[k]: the row swapped with row k at step k); returns
 * log |det| (−inf when singular). */
FG_API double fg_lu_factor (double *lu, gsize n, gsize *piv);

G_END_DECLS
