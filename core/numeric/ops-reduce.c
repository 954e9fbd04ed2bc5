/* SPDX-License-Identifier: MIT */
/* flowgmm — reductions (sum, mean, logsumexp), (log-)softmax and gather.
 *
 * Sums accumulate in double: a loss or a log-determinant summed over a 256 × 784 batch in
 * float would lose about three digits.
 */
#include "config.h"

#include <flowgmm/vecmath.h>

#include "numeric/numeric-private.h"

/* ---- sum / mean -------------------------------------------------------------------------- */

typedef struct {
  FgAxis axis;
  float scale; /* 1 for sum, 1/count for mean */
} ReduceSaved;

static void
reduce_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  const ReduceSaved *rs = saved;
  gboolean fresh;
  FgTensor *da = _fg_tape_grad_fresh (tape, in[0], &fresh);
  if (da == NULL)
    return;
  const gsize rows = fg_tensor_rows (da), cols = fg_tensor_cols (da);
  const float *g = out->grad.data;
  const float scale = rs->scale;
  for (gsize i = 0; i < rows; i++)
    {
      float *restrict d = fg_tensor_row (da, i);
      if (rs->axis == FG_AXIS_ROWS)
        {
          const float *restrict gr = g;
          if (fresh)
            FG_SIMD_FOR (j, cols, d[j] = scale * gr[j]);
          else
            FG_SIMD_FOR (j, cols, d[j] += scale * gr[j]);
        }
      else
        {
          const float v = scale * (rs->axis == FG_AXIS_COLS ? g[i * out->grad.ld] : g[0]);
          if (fresh)
            FG_SIMD_FOR (j, cols, d[j] = v);
          else
            FG_SIMD_FOR (j, cols, d[j] += v);
        }
    }
}

static FgVar *
reduce_op (FgTape *tape, const char *name, FgVar *a, FgAxis axis, gboolean mean)
{
  g_return_val_if_fail (tape != NULL, NULL);
  if (a == NULL)
    return NULL;
  if (axis != FG_AXIS_ROWS && axis != FG_AXIS_COLS && axis != FG_AXIS_ALL)
    {
      g_critical ("%s: unknown axis %d", name, (int) axis);
      return NULL;
    }
  const FgTensor *x = &a->value;
  const gsize rows = fg_tensor_rows (x), cols = fg_tensor_cols (x);
  gsize shape[FG_TENSOR_MAX_DIMS];
  guint ndim = 2;
  double count;
  switch (axis)
    {
    case FG_AXIS_ROWS: /* [N, ...] -> [1, ...]: keeps the trailing shape */
      ndim = x->ndim;
      memcpy (shape, x->shape, sizeof shape);
      shape[0] = 1;
      count = (double) rows;
      break;
    case FG_AXIS_COLS:
      shape[0] = rows;
      shape[1] = 1;
      count = (double) cols;
      break;
    case FG_AXIS_ALL:
    default:
      shape[0] = shape[1] = 1;
      count = (double) rows * (double) cols;
      break;
    }
  ReduceSaved *rs;
  FgVar *out = fg_tape_op_new (tape, ndim, shape, &a, 1, reduce_backward, sizeof *rs,
                               (gpointer *) &rs);
  const double scale = mean ? 1.0 / MAX (count, 1.0) : 1.0;
  rs->axis = axis;
  rs->scale = (float) scale;
  float *y = out->value.data;

  if (axis == FG_AXIS_ROWS)
    {
      double *acc = fg_tape_alloc (tape, cols * sizeof (double));
      _fg_colsum (y, FALSE, x, acc);
      if (mean)
        for (gsize j = 0; j < cols; j++)
          y[j] = (float) (acc[j] * scale);
    }
  else if (axis == FG_AXIS_COLS)
    {
      for (gsize i = 0; i < rows; i++)
        y[i] = (float) (fg_sum_f64 (fg_tensor_row (x, i), cols) * scale);
    }
  else
    {
      double total = 0.0;
      if (fg_tensor_is_contiguous (x))
        total = fg_sum_f64 (x->data, rows * cols);
      else
        for (gsize i = 0; i < rows; i++)
          total += fg_sum_f64 (fg_tensor_row (x, i), cols);
      y[0] = (float) (total * scale);
    }
  return out;
}

/**
 * fg_op_sum:
 * @tape: a tape
 * @a: (nullable): the operand
 * @axis: %FG_AXIS_ROWS ([N, ...] -> [1, ...]), %FG_AXIS_COLS (-> [N, 1]) or %FG_AXIS_ALL
 *   (-> [1, 1])
 *
 * Returns: (transfer none) (nullable): the sum, accumulated in double.
 */
FgVar *
fg_op_sum (FgTape *tape, FgVar *a, FgAxis axis)
{
  return reduce_op (tape, "fg_op_sum", a, axis, FALSE);
}

/**
 * fg_op_mean:
 * @tape: a tape
 * @a: (nullable): the operand
 * @axis: as for fg_op_sum()
 *
 * Returns: (transfer none) (nullable): the mean, accumulated in double.
 */
FgVar *
fg_op_mean (FgTape *tape, FgVar *a, FgAxis axis)
{
  return reduce_op (tape, "fg_op_mean", a, axis, TRUE);
}

/* ---- logsumexp, log_softmax, softmax ------------------------------------------------------ */

/* log Σ_j e^{x_j} = m + ls for one row: m the row's max, ls = log Σ e^{x_j − m} with the sum in
 * double.  Kept apart so that log_softmax can form (x − m) − ls, which is exact to a few ulp of
 * the result, where x − (m + ls) would carry the rounding of a large m + ls.  An all −inf row
 * gives m = −inf (an empty mixture), a +inf entry m = +inf; ls is 0 then. */
static float
row_lse_parts (const float *x, gsize n, float *ls)
{
  float m = -INFINITY;
  for (gsize j = 0; j < n; j++)
    m = x[j] > m ? x[j] : m;
  *ls = 0.0f;
  if (!isfinite (m))
    return m;
  double s = 0.0;
  for (gsize j = 0; j < n; j++)
    s += expf (x[j] - m);
  *ls = (float) log (s);
  return m;
}

static float
row_logsumexp (const float *x, gsize n)
{
  float ls;
  const float m = row_lse_parts (x, n, &ls);
  return m + ls;
}

static void
logsumexp_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  gboolean fresh;
  FgTensor *da = _fg_tape_grad_fresh (tape, in[0], &fresh);
  if (da == NULL)
    return;
  const FgTensor *x = &in[0]->value;
  const gsize rows = fg_tensor_rows (x), cols = fg_tensor_cols (x);
  for (gsize i = 0; i < rows; i++)
    {
      const float *restrict xr = fg_tensor_row (x, i);
      float *restrict d = fg_tensor_row (da, i);
      const float lse = out->value.data[i];
      /* A non-finite lse has no usable softmax weights: no gradient (PyTorch gives NaN). */
      const float g = isfinite (lse) ? out->grad.data[i] : 0.0f;
      const float l = isfinite (lse) ? lse : 0.0f;
      if (fresh)
        for (gsize j = 0; j < cols; j++)
          d[j] = g * expf (xr[j] - l);
      else
        for (gsize j = 0; j < cols; j++)
          d[j] += g * expf (xr[j] - l);
    }
}

/**
 * fg_op_logsumexp:
 * @tape: a tape
 * @a: (nullable): [N, C]
 *
 * Returns: (transfer none) (nullable): [N, 1], log Σ_j e^{a_ij}, stable for any magnitude; a
 * row of −inf gives −inf.
 */
FgVar *
fg_op_logsumexp (FgTape *tape, FgVar *a)
{
  g_return_val_if_fail (tape != NULL, NULL);
  if (a == NULL)
    return NULL;
  const FgTensor *x = &a->value;
  const gsize rows = fg_tensor_rows (x), cols = fg_tensor_cols (x);
  gsize shape[2] = { rows, 1 };
  FgVar *out = fg_tape_op_new (tape, 2, shape, &a, 1, logsumexp_backward, 0, NULL);
  for (gsize i = 0; i < rows; i++)
    out->value.data[i] = row_logsumexp (fg_tensor_row (x, i), cols);
  return out;
}

static void
log_softmax_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  gboolean fresh;
  FgTensor *da = _fg_tape_grad_fresh (tape, in[0], &fresh);
  if (da == NULL)
    return;
  const gsize rows = fg_tensor_rows (da), cols = fg_tensor_cols (da);
  for (gsize i = 0; i < rows; i++)
    {
      const float *restrict g = fg_tensor_row (&out->grad, i);
      const float *restrict y = fg_tensor_row (&out->value, i);
      float *restrict d = fg_tensor_row (da, i);
      const float gs = (float) fg_sum_f64 (g, cols);
      /* d/dx_j Σ_k g_k (x_k − lse) = g_j − softmax_j · Σ_k g_k */
      if (fresh)
        for (gsize j = 0; j < cols; j++)
          d[j] = g[j] - expf (y[j]) * gs;
      else
        for (gsize j = 0; j < cols; j++)
          d[j] += g[j] - expf (y[j]) * gs;
    }
}

/**
 * fg_op_log_softmax:
 * @tape: a tape
 * @a: (nullable): [N, C] logits
 *
 * Returns: (transfer none) (nullable): a_ij − logsumexp_j a_ij, a's shape.
 */
FgVar *
fg_op_log_softmax (FgTape *tape, FgVar *a)
{
  g_return_val_if_fail (tape != NULL, NULL);
  if (a == NULL)
    return NULL;
  const FgTensor *x = &a->value;
  const gsize rows = fg_tensor_rows (x), cols = fg_tensor_cols (x);
  FgVar *out = fg_tape_op_new (tape, x->ndim, x->shape, &a, 1, log_softmax_backward, 0, NULL);
  for (gsize i = 0; i < rows; i++)
    {
      const float *restrict xr = fg_tensor_row (x, i);
      float *restrict y = fg_tensor_row (&out->value, i);
      float ls;
      const float m = row_lse_parts (xr, cols, &ls);
      FG_SIMD_FOR (j, cols, y[j] = (xr[j] - m) - ls);
    }
  return out;
}

static void
softmax_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  gboolean fresh;
  FgTensor *da = _fg_tape_grad_fresh (tape, in[0], &fresh);
  if (da == NULL)
    return;
  const gsize rows = fg_tensor_rows (da), cols = fg_tensor_cols (da);
  for (gsize i = 0; i < rows; i++)
    {
      const float *restrict g = fg_tensor_row (&out->grad, i);
      const float *restrict y = fg_tensor_row (&out->value, i);
      float *restrict d = fg_tensor_row (da, i);
      const float gy = (float) _fg_dot_f64 (g, y, cols);
      if (fresh)
        FG_SIMD_FOR (j, cols, d[j] = y[j] * (g[j] - gy));
      else
        FG_SIMD_FOR (j, cols, d[j] += y[j] * (g[j] - gy));
    }
}

/**
 * fg_op_softmax:
 * @tape: a tape
 * @a: (nullable): [N, C] logits
 *
 * Returns: (transfer none) (nullable): e^{a_ij} / Σ_j e^{a_ij}, a's shape.
 */
FgVar *
fg_op_softmax (FgTape *tape, FgVar *a)
{
  g_return_val_if_fail (tape != NULL, NULL);
  if (a == NULL)
    return NULL;
  const FgTensor *x = &a->value;
  const gsize rows = fg_tensor_rows (x), cols = fg_tensor_cols (x);
  FgVar *out = fg_tape_op_new (tape, x->ndim, x->shape, &a, 1, softmax_backward, 0, NULL);
  for (gsize i = 0; i < rows; i++)
    {
      const float *restrict xr = fg_tensor_row (x, i);
      float *restrict y = fg_tensor_row (&out->value, i);
      float ls;
      const float m = row_lse_parts (xr, cols, &ls);
      for (gsize j = 0; j < cols; j++)
        y[j] = expf ((xr[j] - m) - ls);
    }
  return out;
}

/* ---- gather ------------------------------------------------------------------------------- */

static void
gather_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  const gint32 *idx = saved;
  /* Touches one element per row: needs the zeroed buffer. */
  FgTensor *da = fg_tape_grad (tape, in[0]);
  if (da == NULL)
    return;
  const gsize rows = fg_tensor_rows (da);
  for (gsize i = 0; i < rows; i++)
    if (idx[i] >= 0)
      fg_tensor_row (da, i)[idx[i]] += out->grad.data[i];
}

/**
 * fg_op_gather:
 * @tape: a tape
 * @a: (nullable): [N, C]
 * @idx: (array): N column indices, copied; a negative index selects nothing
 *
 * Picks one element per row, e.g. the log-probability of each example's label.
 *
 * Returns: (transfer none) (nullable): [N, 1] with out[i] = a[i, idx[i]], or 0 (and no
 * gradient) where idx[i] < 0; NULL with a critical warning when an index is >= C.
 */
FgVar *
fg_op_gather (FgTape *tape, FgVar *a, const gint32 *idx)
{
  g_return_val_if_fail (tape != NULL, NULL);
  g_return_val_if_fail (idx != NULL, NULL);
  if (a == NULL)
    return NULL;
  const FgTensor *x = &a->value;
  const gsize rows = fg_tensor_rows (x), cols = fg_tensor_cols (x);
  for (gsize i = 0; i < rows; i++)
    if (idx[i] >= 0 && (gsize) idx[i] >= cols)
      {
        g_critical ("fg_op_gather: index %d of row %" G_GSIZE_FORMAT " is outside [0, %"
                    G_GSIZE_FORMAT ")", (int) idx[i], i, cols);
        return NULL;
      }
  gsize shape[2] = { rows, 1 };
  gint32 *copy;
  FgVar *out = fg_tape_op_new (tape, 2, shape, &a, 1, gather_backward, rows * sizeof (gint32),
                               (gpointer *) &copy);
  if (rows > 0)
    memcpy (copy, idx, rows * sizeof (gint32));
  for (gsize i = 0; i < rows; i++)
    out->value.data[i] = idx[i] >= 0 ? fg_tensor_row (x, i)[idx[i]] : 0.0f;
  return out;
}
