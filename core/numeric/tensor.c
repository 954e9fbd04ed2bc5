/* SPDX-License-Identifier: MIT */
/* flowgmm — float32 tensors: descriptors, views and 64-byte aligned storage.
 *
 * A tensor descriptor is a plain value (FgTensor); only tensors made by fg_tensor_new* own their
 * memory.  Dimension 0 has its own stride `ld`, every other dimension is contiguous, so every
 * loop here walks rows and treats each row as one contiguous run of fg_tensor_cols () floats.
 */
#include "config.h"

#include <flowgmm/tensor.h>

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define FG_ALIGNMENT 64

static gboolean
shape_is_valid (guint ndim, const gsize *shape)
{
  return ndim >= 1 && ndim <= FG_TENSOR_MAX_DIMS && shape != NULL;
}

/* Number of elements of a shape, or FALSE when it overflows gsize. */
static gboolean
shape_numel_checked (guint ndim, const gsize *shape, gsize *numel)
{
  gsize n = 1;
  for (guint i = 0; i < ndim; i++)
    if (!g_size_checked_mul (&n, n, shape[i]))
      return FALSE;
  *numel = n;
  return TRUE;
}

#define FG_HUGE_PAGE ((gsize) 2 << 20)
#define FG_HUGE_THRESHOLD ((gsize) 8 << 20)

/**
 * fg_alloc_floats:
 * @n: number of floats
 *
 * Allocates a zero-filled float buffer aligned to 64 bytes (a cache line, and the widest SIMD
 * load).  The size is rounded up to a whole number of cache lines, so kernels may read (not
 * write) up to the next 64-byte boundary.  Like g_malloc (), aborts when memory is exhausted.
 *
 * Returns: (transfer full): the buffer, freed with fg_free_aligned ().
 */
float *
fg_alloc_floats (gsize n)
{
  gsize bytes;
  void *p = NULL;
  int rc;

  if (!g_size_checked_mul (&bytes, n, sizeof (float)) || bytes > G_MAXSIZE - FG_ALIGNMENT)
    g_error ("%s: overflow allocating %" G_GSIZE_FORMAT " floats", G_STRLOC, n);
  /* Round up to whole cache lines; never ask for 0 bytes (posix_memalign may return NULL). */
  bytes = (bytes + FG_ALIGNMENT - 1) / FG_ALIGNMENT * FG_ALIGNMENT;
  if (bytes == 0)
    bytes = FG_ALIGNMENT;

  /* Large buffers (data sets, big activations) are aligned to a huge page and advised to use
   * transparent huge pages: zero-filling 188 MB of MNIST otherwise spends most of its time in
   * 4 KiB page faults on kernels that grant huge pages only on request. */
  rc = posix_memalign (&p, bytes >= FG_HUGE_THRESHOLD ? FG_HUGE_PAGE : FG_ALIGNMENT, bytes);
  if (rc != 0 || p == NULL)
    g_error ("%s: failed to allocate %" G_GSIZE_FORMAT " bytes: %s", G_STRLOC, bytes,
             g_strerror (rc != 0 ? rc : ENOMEM));
#ifdef MADV_HUGEPAGE
  if (bytes >= FG_HUGE_THRESHOLD)
    madvise (p, bytes / FG_HUGE_PAGE * FG_HUGE_PAGE, MADV_HUGEPAGE);
#endif
  memset (p, 0, bytes);
  return p;
}

/**
 * fg_free_aligned:
 * @p: (nullable): a buffer from fg_alloc_floats ()
 *
 * Frees an aligned buffer.  Accepts %NULL.
 */
void
fg_free_aligned (gpointer p)
{
  free (p);
}

/**
 * fg_tensor_wrap:
 * @data: external memory, at least the product of @shape floats
 * @ndim: number of dimensions, 1..%FG_TENSOR_MAX_DIMS
 * @shape: (array length=ndim): the dimensions
 *
 * Describes contiguous external memory as a tensor; no copy, no ownership.
 *
 * Returns: the descriptor (ld = number of columns).
 */
FgTensor
fg_tensor_wrap (float *data, guint ndim, const gsize *shape)
{
  FgTensor t = { 0 };

  g_return_val_if_fail (shape_is_valid (ndim, shape), t);

  t.data = data;
  t.ndim = ndim;
  for (guint i = 0; i < FG_TENSOR_MAX_DIMS; i++)
    t.shape[i] = i < ndim ? shape[i] : 1;
  t.ld = fg_tensor_cols (&t);
  return t;
}

/**
 * fg_tensor_wrap_2d:
 * @data: external memory of @rows × @cols floats
 * @rows: rows
 * @cols: columns
 *
 * Describes a contiguous row-major matrix; no copy, no ownership.
 *
 * Returns: the descriptor.
 */
FgTensor
fg_tensor_wrap_2d (float *data, gsize rows, gsize cols)
{
  const gsize shape[2] = { rows, cols };
  return fg_tensor_wrap (data, 2, shape);
}

/**
 * fg_tensor_wrap_4d:
 * @data: external memory of @n × @c × @h × @w floats
 * @n: batch size
 * @c: channels
 * @h: height
 * @w: width
 *
 * Describes a contiguous N×C×H×W image batch; no copy, no ownership.
 *
 * Returns: the descriptor.
 */
FgTensor
fg_tensor_wrap_4d (float *data, gsize n, gsize c, gsize h, gsize w)
{
  const gsize shape[4] = { n, c, h, w };
  return fg_tensor_wrap (data, 4, shape);
}

/**
 * fg_tensor_view_rows:
 * @t: a tensor
 * @start: first row
 * @n: number of rows
 *
 * Rows [@start, @start + @n) of @t, sharing its memory and its leading dimension.
 *
 * Returns: the view.
 */
FgTensor
fg_tensor_view_rows (const FgTensor *t, gsize start, gsize n)
{
  FgTensor v = { 0 };

  g_return_val_if_fail (t != NULL, v);
  g_return_val_if_fail (start <= t->shape[0] && n <= t->shape[0] - start, v);

  v = *t;
  v.data = t->data + start * t->ld;
  v.shape[0] = n;
  return v;
}

/**
 * fg_tensor_view_cols:
 * @t: a 2-D tensor
 * @start: first column
 * @n: number of columns
 *
 * Columns [@start, @start + @n) of a matrix, sharing its memory; the view keeps the leading
 * dimension of @t, so it is not contiguous unless it spans all columns.
 *
 * Returns: the view.
 */
FgTensor
fg_tensor_view_cols (const FgTensor *t, gsize start, gsize n)
{
  FgTensor v = { 0 };

  g_return_val_if_fail (t != NULL, v);
  g_return_val_if_fail (t->ndim == 2, v);
  g_return_val_if_fail (start <= t->shape[1] && n <= t->shape[1] - start, v);

  v = *t;
  v.data = t->data + start;
  v.shape[1] = n;
  return v;
}

/**
 * fg_tensor_view_channels:
 * @t: a 4-D (N×C×H×W) tensor
 * @start: first channel
 * @n: number of channels
 *
 * Channels [@start, @start + @n) of an image batch, sharing its memory.  Within one sample the
 * selected channels are one contiguous run of @n·H·W floats; samples keep the stride of @t.
 *
 * Returns: the view.
 */
FgTensor
fg_tensor_view_channels (const FgTensor *t, gsize start, gsize n)
{
  FgTensor v = { 0 };

  g_return_val_if_fail (t != NULL, v);
  g_return_val_if_fail (t->ndim == 4, v);
  g_return_val_if_fail (start <= t->shape[1] && n <= t->shape[1] - start, v);

  v = *t;
  v.data = t->data + start * t->shape[2] * t->shape[3];
  v.shape[1] = n;
  return v;
}

/**
 * fg_tensor_reshape:
 * @t: a tensor
 * @ndim: new number of dimensions, 1..%FG_TENSOR_MAX_DIMS
 * @shape: (array length=ndim): new dimensions
 * @out: (out): the reshaped descriptor
 *
 * Reinterprets the same memory with a new shape.  When the new shape keeps the number of rows
 * and of columns (only the trailing dimensions change), any tensor can be reshaped and the view
 * keeps @t's leading dimension.  Otherwise the element counts must agree and @t must be
 * contiguous; the result is then contiguous.
 *
 * Returns: %TRUE on success; %FALSE (and @out untouched) when the shapes are incompatible.
 */
gboolean
fg_tensor_reshape (const FgTensor *t, guint ndim, const gsize *shape, FgTensor *out)
{
  FgTensor r = { 0 };
  gsize new_numel;

  g_return_val_if_fail (t != NULL, FALSE);
  g_return_val_if_fail (out != NULL, FALSE);
  g_return_val_if_fail (shape_is_valid (ndim, shape), FALSE);

  if (!shape_numel_checked (ndim, shape, &new_numel) || new_numel != fg_tensor_numel (t))
    return FALSE;

  r.data = t->data;
  r.ndim = ndim;
  for (guint i = 0; i < FG_TENSOR_MAX_DIMS; i++)
    r.shape[i] = i < ndim ? shape[i] : 1;

  if (r.shape[0] == t->shape[0] && fg_tensor_cols (&r) == fg_tensor_cols (t))
    r.ld = t->ld;               /* each row keeps its place: a strided view stays valid */
  else if (fg_tensor_is_contiguous (t))
    r.ld = fg_tensor_cols (&r);
  else
    return FALSE;

  *out = r;
  return TRUE;
}

/**
 * fg_tensor_same_shape:
 * @a: a tensor
 * @b: a tensor
 *
 * Returns: %TRUE when @a and @b have the same number of dimensions and the same dimensions
 * (leading dimensions may differ).
 */
gboolean
fg_tensor_same_shape (const FgTensor *a, const FgTensor *b)
{
  g_return_val_if_fail (a != NULL && b != NULL, FALSE);

  if (a->ndim != b->ndim)
    return FALSE;
  for (guint i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i])
      return FALSE;
  return TRUE;
}

/**
 * fg_tensor_shape_string:
 * @t: a tensor
 * @buf: (out caller-allocates): a buffer, 64 bytes are always enough for realistic shapes
 * @size: size of @buf in bytes
 *
 * Formats the shape as "2x3x4" (truncated to fit @buf, always NUL-terminated).
 *
 * Returns: (transfer none): @buf.
 */
const char *
fg_tensor_shape_string (const FgTensor *t, char *buf, gsize size)
{
  gsize pos = 0;

  g_return_val_if_fail (t != NULL, NULL);
  g_return_val_if_fail (buf != NULL && size > 0, NULL);

  buf[0] = '\0';
  for (guint i = 0; i < t->ndim && pos < size; i++)
    {
      int n = g_snprintf (buf + pos, size - pos, i == 0 ? "%" G_GSIZE_FORMAT : "x%" G_GSIZE_FORMAT,
                          t->shape[i]);
      if (n < 0)
        break;
      pos += (gsize) n;
    }
  return buf;
}

/**
 * fg_tensor_new:
 * @ndim: number of dimensions, 1..%FG_TENSOR_MAX_DIMS
 * @shape: (array length=ndim): the dimensions (0 is allowed: an empty tensor)
 *
 * Allocates a contiguous, zero-filled tensor whose data is 64-byte aligned.  Aborts, like
 * g_malloc (), when memory is exhausted or the size overflows.
 *
 * Returns: (transfer full): the tensor, freed with fg_tensor_free ().
 */
FgTensor *
fg_tensor_new (guint ndim, const gsize *shape)
{
  FgTensor *t;
  gsize numel;

  g_return_val_if_fail (shape_is_valid (ndim, shape), NULL);

  if (!shape_numel_checked (ndim, shape, &numel))
    g_error ("%s: tensor size overflows", G_STRLOC);

  t = g_new0 (FgTensor, 1);
  *t = fg_tensor_wrap (fg_alloc_floats (numel), ndim, shape);
  return t;
}

/**
 * fg_tensor_new_2d:
 * @rows: rows
 * @cols: columns
 *
 * Allocates a contiguous zero-filled matrix.
 *
 * Returns: (transfer full): the tensor, freed with fg_tensor_free ().
 */
FgTensor *
fg_tensor_new_2d (gsize rows, gsize cols)
{
  const gsize shape[2] = { rows, cols };
  return fg_tensor_new (2, shape);
}

/**
 * fg_tensor_copy:
 * @src: a tensor (may be a strided view)
 *
 * Copies @src into a new contiguous tensor of the same shape.
 *
 * Returns: (transfer full): the copy, freed with fg_tensor_free ().
 */
FgTensor *
fg_tensor_copy (const FgTensor *src)
{
  FgTensor *t;

  g_return_val_if_fail (src != NULL, NULL);

  t = fg_tensor_new (src->ndim, src->shape);
  fg_tensor_copy_into (t, src);
  return t;
}

/**
 * fg_tensor_free:
 * @t: (nullable): a tensor from fg_tensor_new* ()
 *
 * Frees the tensor and its data.  Accepts %NULL.  Never call it on a view or a wrapped tensor.
 */
void
fg_tensor_free (FgTensor *t)
{
  if (t == NULL)
    return;
  fg_free_aligned (t->data);
  g_free (t);
}

/**
 * fg_tensor_fill:
 * @t: a tensor (may be a strided view)
 * @value: the value
 *
 * Sets every element of @t to @value.
 */
void
fg_tensor_fill (FgTensor *t, float value)
{
  gsize rows, cols;

  g_return_if_fail (t != NULL);

  rows = fg_tensor_rows (t);
  cols = fg_tensor_cols (t);
  for (gsize i = 0; i < rows; i++)
    {
      float *restrict row = fg_tensor_row (t, i);
      for (gsize j = 0; j < cols; j++)
        row[j] = value;
    }
}

/**
 * fg_tensor_copy_into:
 * @dst: destination (may be a strided view)
 * @src: source of the same shape (may be a strided view); must not overlap @dst
 *
 * Copies the elements of @src into @dst.
 */
void
fg_tensor_copy_into (FgTensor *dst, const FgTensor *src)
{
  gsize rows, cols;

  g_return_if_fail (dst != NULL && src != NULL);
  g_return_if_fail (fg_tensor_same_shape (dst, src));

  rows = fg_tensor_rows (src);
  cols = fg_tensor_cols (src);
  if (cols == 0 || rows == 0 || (dst->data == src->data && dst->ld == src->ld))
    return;
  if (fg_tensor_is_contiguous (dst) && fg_tensor_is_contiguous (src))
    {
      memcpy (dst->data, src->data, rows * cols * sizeof (float));
      return;
    }
  for (gsize i = 0; i < rows; i++)
    memcpy (fg_tensor_row (dst, i), fg_tensor_row (src, i), cols * sizeof (float));
}

/**
 * fg_tensor_all_finite:
 * @t: a tensor
 * @index: (out) (optional): where to store the index of the first non-finite element
 *
 * Looks for NaN or infinite elements.  The index counts elements in row-major order, ignoring
 * the leading dimension (row i, column j is i·cols + j).
 *
 * Returns: %TRUE when every element is finite; %FALSE with *@index set otherwise.
 */
gboolean
fg_tensor_all_finite (const FgTensor *t, gsize *index)
{
  gsize rows, cols;

  g_return_val_if_fail (t != NULL, FALSE);

  rows = fg_tensor_rows (t);
  cols = fg_tensor_cols (t);
  for (gsize i = 0; i < rows; i++)
    {
      const float *row = fg_tensor_row (t, i);
      for (gsize j = 0; j < cols; j++)
        if (G_UNLIKELY (!isfinite (row[j])))
          {
            if (index != NULL)
              *index = i * cols + j;
            return FALSE;
          }
    }
  return TRUE;
}

/**
 * fg_tensor_max_abs_diff:
 * @a: a tensor
 * @b: a tensor of the same shape
 *
 * The largest |a − b| over all elements, in double.  Equal values (including equal infinities)
 * differ by 0; any other comparison involving NaN makes the result NaN, so a NaN is never
 * mistaken for agreement.
 *
 * Returns: the maximum absolute difference (0 for empty tensors, NaN for mismatched shapes).
 */
double
fg_tensor_max_abs_diff (const FgTensor *a, const FgTensor *b)
{
  gsize rows, cols;
  double max = 0.0;

  g_return_val_if_fail (a != NULL && b != NULL, NAN);
  g_return_val_if_fail (fg_tensor_same_shape (a, b), NAN);

  rows = fg_tensor_rows (a);
  cols = fg_tensor_cols (a);
  for (gsize i = 0; i < rows; i++)
    {
      const float *ra = fg_tensor_row (a, i);
      const float *rb = fg_tensor_row (b, i);
      for (gsize j = 0; j < cols; j++)
        {
          double d;
          if (ra[j] == rb[j])
            continue;
          d = fabs ((double) ra[j] - (double) rb[j]);
          if (isnan (d))
            return NAN;
          if (d > max)
            max = d;
        }
    }
  return max;
}
