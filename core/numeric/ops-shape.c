/* SPDX-License-Identifier: MIT */
/* flowgmm — shape ops: concat, slices and reshape (views), space-to-depth.
 *
 * Dimension 1 (columns of a matrix, channels of an image batch) is the one that concat and
 * slice work on; since dimensions 1.. of a row are contiguous, both are row-wise block copies
 * or views with the parent's ld.
 */
#include "config.h"

#include "numeric/numeric-private.h"

/* Elements of one index of dimension 1: 1 for a matrix, H·W for N×C×H×W. */
static gsize
inner_size (const FgTensor *t)
{
  gsize n = 1;
  for (guint d = 2; d < t->ndim; d++)
    n *= t->shape[d];
  return n;
}

/* ---- concat ------------------------------------------------------------------------------- */

static void
concat_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  const FgTensor *g = &out->grad;
  gsize off = 0;
  for (guint k = 0; k < 2; k++)
    {
      gboolean fresh;
      FgTensor *d = _fg_tape_grad_fresh (tape, in[k], &fresh);
      const gsize cols = fg_tensor_cols (&in[k]->value);
      if (d != NULL)
        {
          FgTensor part = *d;
          part.data = g->data + off;
          part.ld = g->ld;
          _fg_accumulate (d, &part, 1.0f, fresh);
        }
      off += cols;
    }
}

/**
 * fg_op_concat:
 * @tape: a tape
 * @a: (nullable): [N, Ca] or N×Ca×H×W
 * @b: (nullable): [N, Cb] or N×Cb×H×W (same rank, rows and trailing sizes as @a)
 *
 * Returns: (transfer none) (nullable): [N, Ca+Cb] or N×(Ca+Cb)×H×W, contiguous.
 */
FgVar *
fg_op_concat (FgTape *tape, FgVar *a, FgVar *b)
{
  g_return_val_if_fail (tape != NULL, NULL);
  if (a == NULL || b == NULL)
    return NULL;
  const FgTensor *x = &a->value, *y = &b->value;
  gboolean ok = x->ndim >= 2 && x->ndim == y->ndim && x->shape[0] == y->shape[0];
  for (guint d = 2; ok && d < x->ndim; d++)
    ok = x->shape[d] == y->shape[d];
  if (!ok)
    {
      char b1[64], b2[64];
      g_critical ("fg_op_concat: cannot concatenate %s and %s along dimension 1",
                  _fg_tape_shape_str (x, b1, sizeof b1), _fg_tape_shape_str (y, b2, sizeof b2));
      return NULL;
    }
  gsize shape[FG_TENSOR_MAX_DIMS];
  memcpy (shape, x->shape, sizeof shape);
  shape[1] += y->shape[1];
  FgVar *inputs[2] = { a, b };
  FgVar *out = fg_tape_op_new (tape, x->ndim, shape, inputs, 2, concat_backward, 0, NULL);
  const gsize rows = fg_tensor_rows (x), ca = fg_tensor_cols (x), cb = fg_tensor_cols (y);
  for (gsize i = 0; i < rows; i++)
    {
      float *o = fg_tensor_row (&out->value, i);
      memcpy (o, fg_tensor_row (x, i), ca * sizeof (float));
      memcpy (o + ca, fg_tensor_row (y, i), cb * sizeof (float));
    }
  return out;
}

/* ---- slice (columns / channels): a strided view with its own gradient ---------------------- */

typedef struct {
  gsize offset; /* first column of the parent's row */
} SliceSaved;

static void
slice_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  const SliceSaved *ss = saved;
  /* Covers only part of the parent: needs the zeroed buffer. */
  FgTensor *pg = fg_tape_grad (tape, in[0]);
  if (pg == NULL)
    return;
  FgTensor dst = out->grad;
  dst.data = pg->data + ss->offset;
  dst.ld = pg->ld;
  _fg_accumulate (&dst, &out->grad, 1.0f, FALSE);
}

/**
 * fg_op_slice:
 * @tape: a tape
 * @a: (nullable): a matrix or an N×C×H×W batch
 * @start: first column (channel)
 * @n: number of columns (channels)
 *
 * A view of columns [@start, @start+@n) of a matrix, or of those channels of an image batch:
 * no copy; the result has @a's ld.  Its gradient is added back into @a's range.
 *
 * Returns: (transfer none) (nullable): the view.
 */
FgVar *
fg_op_slice (FgTape *tape, FgVar *a, gsize start, gsize n)
{
  g_return_val_if_fail (tape != NULL, NULL);
  if (a == NULL)
    return NULL;
  const FgTensor *x = &a->value;
  if (x->ndim < 2 || start > x->shape[1] || n > x->shape[1] - start)
    {
      char buf[64];
      g_critical ("fg_op_slice: [%" G_GSIZE_FORMAT ", %" G_GSIZE_FORMAT ") is not a range of "
                  "dimension 1 of %s",
                  start, start + n, _fg_tape_shape_str (x, buf, sizeof buf));
      return NULL;
    }
  FgTensor v = *x;
  const gsize offset = start * inner_size (x);
  v.data = x->data + offset;
  v.shape[1] = n;
  SliceSaved *ss;
  FgVar *out = _fg_tape_view_new (tape, a, &v, FG_NODE_ALIAS_NONE, 0, slice_backward,
                                  sizeof *ss, (gpointer *) &ss);
  ss->offset = offset;
  return out;
}

/**
 * fg_op_slice_rows:
 * @tape: a tape
 * @a: (nullable): any tensor
 * @start: first row
 * @n: number of rows
 *
 * A view of rows [@start, @start+@n): no copy; its gradient aliases @a's rows.
 *
 * Returns: (transfer none) (nullable): the view.
 */
FgVar *
fg_op_slice_rows (FgTape *tape, FgVar *a, gsize start, gsize n)
{
  g_return_val_if_fail (tape != NULL, NULL);
  if (a == NULL)
    return NULL;
  const FgTensor *x = &a->value;
  if (start > x->shape[0] || n > x->shape[0] - start)
    {
      char buf[64];
      g_critical ("fg_op_slice_rows: [%" G_GSIZE_FORMAT ", %" G_GSIZE_FORMAT ") is not a row "
                  "range of %s",
                  start, start + n, _fg_tape_shape_str (x, buf, sizeof buf));
      return NULL;
    }
  FgTensor v = _fg_tensor_view_rows (x, start, n);
  return _fg_tape_view_new (tape, a, &v, FG_NODE_ALIAS_ROWS, start, NULL, 0, NULL);
}

/**
 * fg_op_reshape:
 * @tape: a tape
 * @a: (nullable): any tensor
 * @ndim: new rank, 1..4
 * @shape: new sizes
 *
 * Keeps the rows and regroups each row's columns (so a strided view works too), e.g.
 * N×C×H×W <-> [N, C·H·W].  As an extension, a contiguous @a may also change its number of
 * rows when the element count is kept.  No copy; the gradient aliases @a's.
 *
 * Returns: (transfer none) (nullable): the view.
 */
FgVar *
fg_op_reshape (FgTape *tape, FgVar *a, guint ndim, const gsize *shape)
{
  g_return_val_if_fail (tape != NULL, NULL);
  g_return_val_if_fail (ndim >= 1 && ndim <= FG_TENSOR_MAX_DIMS && shape != NULL, NULL);
  if (a == NULL)
    return NULL;
  const FgTensor *x = &a->value;
  FgTensor v = _fg_tensor_make (x->data, ndim, shape);
  if (v.shape[0] == x->shape[0] && fg_tensor_cols (&v) == fg_tensor_cols (x))
    {
      v.ld = x->ld;
      return _fg_tape_view_new (tape, a, &v, FG_NODE_ALIAS_ROWS, 0, NULL, 0, NULL);
    }
  if (fg_tensor_numel (&v) == fg_tensor_numel (x) && fg_tensor_is_contiguous (x))
    return _fg_tape_view_new (tape, a, &v, FG_NODE_ALIAS_FLAT, 0, NULL, 0, NULL);

  char b1[64], b2[64];
  g_critical ("fg_op_reshape: cannot view %s as %s (same rows and columns, or a contiguous "
              "tensor with the same number of elements)",
              _fg_tape_shape_str (x, b1, sizeof b1), _fg_tape_shape_str (&v, b2, sizeof b2));
  return NULL;
}

/* ---- squeeze2d / unsqueeze2d ---------------------------------------------------------------- */

/* big N×C×2h×2w and small N×4C×h×w with small[n, 4c+2dy+dx, i, j] = big[n, c, 2i+dy, 2j+dx].
 * to_small moves big into small, otherwise small into big; accumulate adds instead of writing. */
static void
space_to_depth (const FgTensor *big, const FgTensor *small, gboolean to_small, gboolean accumulate)
{
  const gsize rows = fg_tensor_rows (big), C = big->shape[1];
  const gsize h = small->shape[2], w = small->shape[3];
  for (gsize n = 0; n < rows; n++)
    {
      float *B = fg_tensor_row (big, n);
      float *S = fg_tensor_row (small, n);
      for (gsize c = 0; c < C; c++)
        for (gsize dy = 0; dy < 2; dy++)
          for (gsize dx = 0; dx < 2; dx++)
            {
              float *sp = S + (4 * c + 2 * dy + dx) * h * w;
              for (gsize i = 0; i < h; i++)
                {
                  float *restrict s = sp + i * w;
                  float *restrict b = B + (c * 2 * h + 2 * i + dy) * 2 * w + dx;
                  if (to_small && accumulate)
                    for (gsize j = 0; j < w; j++)
                      s[j] += b[2 * j];
                  else if (to_small)
                    for (gsize j = 0; j < w; j++)
                      s[j] = b[2 * j];
                  else if (accumulate)
                    for (gsize j = 0; j < w; j++)
                      b[2 * j] += s[j];
                  else
                    for (gsize j = 0; j < w; j++)
                      b[2 * j] = s[j];
                }
            }
    }
}

static void
squeeze_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  gboolean fresh;
  FgTensor *da = _fg_tape_grad_fresh (tape, in[0], &fresh);
  if (da != NULL)
    space_to_depth (da, &out->grad, FALSE, !fresh);
}

static void
unsqueeze_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  gboolean fresh;
  FgTensor *da = _fg_tape_grad_fresh (tape, in[0], &fresh);
  if (da != NULL)
    space_to_depth (&out->grad, da, TRUE, !fresh);
}

/**
 * fg_op_squeeze2d:
 * @tape: a tape
 * @a: (nullable): N×C×H×W with H and W even
 *
 * Space-to-depth by 2 (RealNVP's squeeze): out[n, 4c + 2·dy + dx, i, j] = a[n, c, 2i+dy, 2j+dx].
 *
 * Returns: (transfer none) (nullable): N×4C×(H/2)×(W/2).
 */
FgVar *
fg_op_squeeze2d (FgTape *tape, FgVar *a)
{
  g_return_val_if_fail (tape != NULL, NULL);
  if (a == NULL)
    return NULL;
  const FgTensor *x = &a->value;
  if (x->ndim != 4 || x->shape[2] % 2 != 0 || x->shape[3] % 2 != 0)
    {
      char buf[64];
      g_critical ("fg_op_squeeze2d: %s is not N×C×H×W with even H and W",
                  _fg_tape_shape_str (x, buf, sizeof buf));
      return NULL;
    }
  gsize shape[4] = { x->shape[0], 4 * x->shape[1], x->shape[2] / 2, x->shape[3] / 2 };
  FgVar *out = fg_tape_op_new (tape, 4, shape, &a, 1, squeeze_backward, 0, NULL);
  space_to_depth (x, &out->value, TRUE, FALSE);
  return out;
}

/**
 * fg_op_unsqueeze2d:
 * @tape: a tape
 * @a: (nullable): N×C×H×W with C a multiple of 4
 *
 * The inverse of fg_op_squeeze2d().
 *
 * Returns: (transfer none) (nullable): N×(C/4)×2H×2W.
 */
FgVar *
fg_op_unsqueeze2d (FgTape *tape, FgVar *a)
{
  g_return_val_if_fail (tape != NULL, NULL);
  if (a == NULL)
    return NULL;
  const FgTensor *x = &a->value;
  if (x->ndim != 4 || x->shape[1] % 4 != 0)
    {
      char buf[64];
      g_critical ("fg_op_unsqueeze2d: %s is not N×C×H×W with C a multiple of 4",
                  _fg_tape_shape_str (x, buf, sizeof buf));
      return NULL;
    }
  gsize shape[4] = { x->shape[0], x->shape[1] / 4, 2 * x->shape[2], 2 * x->shape[3] };
  FgVar *out = fg_tape_op_new (tape, 4, shape, &a, 1, unsqueeze_backward, 0, NULL);
  space_to_depth (&out->value, x, FALSE, FALSE);
  return out;
}
