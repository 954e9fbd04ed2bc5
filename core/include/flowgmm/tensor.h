/* SPDX-License-Identifier: MIT */
/* flowgmm — float32 tensors.
 *
 * A tensor is row-major with up to four dimensions (N×C×H×W for images, N×D for tabular data).
 * Dimensions 1..ndim-1 are contiguous; dimension 0 ("rows") has its own stride `ld`, so row
 * ranges, column ranges of a matrix and channel ranges of an image batch are all views without
 * copies, and a matrix maps directly onto cblas_sgemm (CblasRowMajor, ..., ld).
 */
#pragma once

#include <glib.h>
#include <flowgmm/error.h>

G_BEGIN_DECLS

#define FG_TENSOR_MAX_DIMS 4

typedef struct {
  float *data;                       /* not owned by the view */
  guint  ndim;                       /* 1..4 */
  gsize  shape[FG_TENSOR_MAX_DIMS];  /* unused trailing entries are 1 */
  gsize  ld;                         /* elements from one row to the next, >= fg_tensor_cols () */
} FgTensor;

/* rows = shape[0]; cols = product of shape[1..ndim-1] (1 for a vector). */
static inline gsize
fg_tensor_rows (const FgTensor *t)
{
  return t->shape[0];
}

static inline gsize
fg_tensor_cols (const FgTensor *t)
{
  gsize c = 1;
  for (guint i = 1; i < t->ndim; i++)
    c *= t->shape[i];
  return c;
}

static inline gsize
fg_tensor_numel (const FgTensor *t)
{
  return fg_tensor_rows (t) * fg_tensor_cols (t);
}

static inline gboolean
fg_tensor_is_contiguous (const FgTensor *t)
{
  return t->ld == fg_tensor_cols (t) || t->shape[0] <= 1;
}

static inline float *
fg_tensor_row (const FgTensor *t, gsize i)
{
  return t->data + i * t->ld;
}

/* Describe external memory (no copy, no ownership). */
FG_API FgTensor fg_tensor_wrap_2d (float *data, gsize rows, gsize cols);
FG_API FgTensor fg_tensor_wrap_4d (float *data, gsize n, gsize c, gsize h, gsize w);
FG_API FgTensor fg_tensor_wrap (float *data, guint ndim, const gsize *shape);

/* Views without copies. */
FG_API FgTensor fg_tensor_view_rows (const FgTensor *t, gsize start, gsize n);
FG_API FgTensor fg_tensor_view_cols (const FgTensor *t, gsize start, gsize n);     /* 2-D only */
FG_API FgTensor fg_tensor_view_channels (const FgTensor *t, gsize start, gsize n); /* 4-D only */
/* Same data, new trailing shape with the same number of columns; requires contiguous rows. */
FG_API gboolean fg_tensor_reshape (const FgTensor *t, guint ndim, const gsize *shape,
                                   FgTensor *out);

FG_API gboolean fg_tensor_same_shape (const FgTensor *a, const FgTensor *b);
/* "2x3x4"; buf must hold at least 64 bytes. */
FG_API const char *fg_tensor_shape_string (const FgTensor *t, char *buf, gsize size);

/* Owned tensors: the struct and its 64-byte aligned data, freed together by fg_tensor_free. */
FG_API FgTensor *fg_tensor_new (guint ndim, const gsize *shape);          /* zero-filled */
FG_API FgTensor *fg_tensor_new_2d (gsize rows, gsize cols);
FG_API FgTensor *fg_tensor_copy (const FgTensor *src);                     /* compact copy */
FG_API void      fg_tensor_free (FgTensor *t);                             /* only for fg_tensor_new* */
G_DEFINE_AUTOPTR_CLEANUP_FUNC (FgTensor, fg_tensor_free)

FG_API void fg_tensor_fill (FgTensor *t, float value);
FG_API void fg_tensor_copy_into (FgTensor *dst, const FgTensor *src);      /* same shape */
/* First non-finite element; returns FALSE and sets *index when one exists. */
FG_API gboolean fg_tensor_all_finite (const FgTensor *t, gsize *index);
/* Largest |a-b| over all elements; shapes must agree. */
FG_API double fg_tensor_max_abs_diff (const FgTensor *a, const FgTensor *b);

/* Aligned float buffers (64 bytes), freed with fg_free_aligned. */
FG_API float *fg_alloc_floats (gsize n);
FG_API void   fg_free_aligned (gpointer p);

G_END_DECLS
