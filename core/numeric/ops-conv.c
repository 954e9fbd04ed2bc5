/* flowgmm — 2-D convolution, stride 1, zero padding: im2col + sgemm.
 *
 * Per image n: col_n [Cin·kh·kw, Ho·Wo] (im2col into arena scratch) and
 * out_n [Cout, Ho·Wo] = W [Cout, Cin·kh·kw] · col_n, with the bias written first (beta = 1).
 * Backward per image: dW += dY_n · col_nᵀ (col_n rebuilt rather than kept: memory over time),
 * dcol = Wᵀ · dY_n scattered back by col2im, and db = Σ dY.  A 1×1 kernel without padding
 * needs no im2col: x_n itself is [Cin, H·W].
 */
#include "config.h"

#include <flowgmm/vecmath.h>

#include "numeric/numeric-private.h"

typedef struct {
  gsize cin, h, w;      /* input image */
  gsize cout, kh, kw;   /* kernel */
  gsize pad, ho, wo;    /* output image */
} ConvGeom;

static inline gboolean
conv_is_pointwise (const ConvGeom *g)
{
  return g->kh == 1 && g->kw == 1 && g->pad == 0;
}

/* col[(ci·kh + ki)·kw + kj, oy·wo + ox] = x[ci, oy + ki − pad, ox + kj − pad] or 0 outside. */
static void
im2col (const ConvGeom *g, const float *x, float *col)
{
  const gsize P = g->ho * g->wo;
  for (gsize ci = 0; ci < g->cin; ci++)
    for (gsize ki = 0; ki < g->kh; ki++)
      for (gsize kj = 0; kj < g->kw; kj++)
        {
          float *row = col + ((ci * g->kh + ki) * g->kw + kj) * P;
          /* Valid ox: 0 <= ox + kj − pad < w. */
          const gsize ox0 = kj < g->pad ? MIN (g->pad - kj, g->wo) : 0;
          const gsize ox1 = MIN (g->wo, g->w + g->pad > kj ? g->w + g->pad - kj : 0);
          for (gsize oy = 0; oy < g->ho; oy++)
            {
              float *dst = row + oy * g->wo;
              const gsize iy = oy + ki; /* + pad offset: iy − pad is the input row */
              if (iy < g->pad || iy - g->pad >= g->h || ox1 <= ox0)
                {
                  memset (dst, 0, g->wo * sizeof (float));
                  continue;
                }
              const float *src = x + (ci * g->h + (iy - g->pad)) * g->w;
              memset (dst, 0, ox0 * sizeof (float));
              memcpy (dst + ox0, src + ox0 + kj - g->pad, (ox1 - ox0) * sizeof (float));
              memset (dst + ox1, 0, (g->wo - ox1) * sizeof (float));
            }
        }
}

/* The adjoint of im2col: dx[ci, iy, ix] += Σ over the col entries that read it. */
static void
col2im_add (const ConvGeom *g, const float *col, float *dx)
{
  const gsize P = g->ho * g->wo;
  for (gsize ci = 0; ci < g->cin; ci++)
    for (gsize ki = 0; ki < g->kh; ki++)
      for (gsize kj = 0; kj < g->kw; kj++)
        {
          const float *row = col + ((ci * g->kh + ki) * g->kw + kj) * P;
          const gsize ox0 = kj < g->pad ? MIN (g->pad - kj, g->wo) : 0;
          const gsize ox1 = MIN (g->wo, g->w + g->pad > kj ? g->w + g->pad - kj : 0);
          if (ox1 <= ox0)
            continue;
          for (gsize oy = 0; oy < g->ho; oy++)
            {
              const gsize iy = oy + ki;
              if (iy < g->pad || iy - g->pad >= g->h)
                continue;
              const float *restrict src = row + oy * g->wo + ox0;
              float *restrict dst = dx + (ci * g->h + (iy - g->pad)) * g->w + ox0 + kj - g->pad;
              FG_SIMD_FOR (j, ox1 - ox0, dst[j] += src[j]);
            }
        }
}

typedef struct {
  ConvGeom g;
  gboolean has_bias;
} ConvSaved;

static void
conv_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  const ConvSaved *cs = saved;
  const ConvGeom *g = &cs->g;
  const FgTensor *X = &in[0]->value, *W = &in[1]->value, *G = &out->grad;
  const gsize N = fg_tensor_rows (X), K = g->cin * g->kh * g->kw, P = g->ho * g->wo;
  const gsize ldw = MAX (W->ld, K);
  const gboolean pointwise = conv_is_pointwise (g);
  gboolean dx_fresh, dw_fresh, db_fresh;

  FgTensor *dX = _fg_tape_grad_fresh (tape, in[0], &dx_fresh);
  FgTensor *dW = _fg_tape_grad_fresh (tape, in[1], &dw_fresh);
  FgTensor *db = cs->has_bias ? _fg_tape_grad_fresh (tape, in[2], &db_fresh) : NULL;
  float *col = (dW != NULL && !pointwise) ? fg_tape_alloc_floats (tape, K * P) : NULL;
  float *dcol = (dX != NULL && !pointwise) ? fg_tape_alloc_floats (tape, K * P) : NULL;
  if (dX != NULL && dx_fresh && !pointwise)
    {
      /* col2im accumulates: start from zero. */
      for (gsize n = 0; n < N; n++)
        memset (fg_tensor_row (dX, n), 0, fg_tensor_cols (dX) * sizeof (float));
      dx_fresh = FALSE;
    }

  for (gsize n = 0; n < N; n++)
    {
      const float *xn = fg_tensor_row (X, n);
      const float *gn = fg_tensor_row (G, n);
      if (dW != NULL)
        {
          const float *cn = xn;
          if (!pointwise)
            {
              im2col (g, xn, col);
              cn = col;
            }
          /* dW [Cout, K] += dY_n [Cout, P] · col_nᵀ */
          _fg_sgemm (FALSE, TRUE, g->cout, K, P, 1.0f, gn, P, cn, P,
                     (dw_fresh && n == 0) ? 0.0f : 1.0f, dW->data, MAX (dW->ld, K));
        }
      if (dX != NULL)
        {
          float *dxn = fg_tensor_row (dX, n);
          if (pointwise) /* dx_n [Cin, P] (+)= Wᵀ · dY_n */
            _fg_sgemm (TRUE, FALSE, K, P, g->cout, 1.0f, W->data, ldw, gn, P,
                       dx_fresh ? 0.0f : 1.0f, dxn, P);
          else
            {
              _fg_sgemm (TRUE, FALSE, K, P, g->cout, 1.0f, W->data, ldw, gn, P, 0.0f, dcol, P);
              col2im_add (g, dcol, dxn);
            }
        }
    }

  if (dW != NULL && dw_fresh && N == 0) /* an empty batch still owes a zero gradient */
    memset (dW->data, 0, fg_tensor_numel (dW) * sizeof (float));
  if (db != NULL)
    {
      double *acc = fg_tape_alloc (tape, g->cout * sizeof (double));
      memset (acc, 0, g->cout * sizeof (double));
      for (gsize n = 0; n < N; n++)
        for (gsize c = 0; c < g->cout; c++)
          acc[c] += fg_sum_f64 (fg_tensor_row (G, n) + c * P, P);
      for (gsize c = 0; c < g->cout; c++)
        db->data[c] = (float) ((db_fresh ? 0.0 : db->data[c]) + acc[c]);
    }
}

/**
 * fg_op_conv2d:
 * @tape: a tape
 * @x: (nullable): N×Cin×H×W (a channel slice, strided over rows, is fine)
 * @w: (nullable): [Cout, Cin, kh, kw]
 * @bias: (nullable): [1, Cout], or NULL for no bias
 * @pad: zero padding on every side
 *
 * Stride-1 cross-correlation (as in PyTorch's Conv2d).
 *
 * Returns: (transfer none) (nullable): N×Cout×(H+2pad−kh+1)×(W+2pad−kw+1).
 */
FgVar *
fg_op_conv2d (FgTape *tape, FgVar *x, FgVar *w, FgVar *bias, guint pad)
{
  g_return_val_if_fail (tape != NULL, NULL);
  if (x == NULL || w == NULL)
    return NULL;
  const FgTensor *X = &x->value, *W = &w->value;
  ConvGeom g = { 0 };
  gboolean ok = X->ndim == 4 && W->ndim == 4 && W->shape[1] == X->shape[1]
                && X->shape[2] + 2 * pad >= W->shape[2] && X->shape[3] + 2 * pad >= W->shape[3]
                && W->shape[2] > 0 && W->shape[3] > 0;
  if (ok)
    {
      g.cin = X->shape[1];
      g.h = X->shape[2];
      g.w = X->shape[3];
      g.cout = W->shape[0];
      g.kh = W->shape[2];
      g.kw = W->shape[3];
      g.pad = pad;
      g.ho = g.h + 2 * pad - g.kh + 1;
      g.wo = g.w + 2 * pad - g.kw + 1;
      ok = bias == NULL
           || (fg_tensor_rows (&bias->value) == 1 && fg_tensor_cols (&bias->value) == g.cout);
    }
  if (!ok)
    {
      char b1[64], b2[64], b3[64];
      g_critical ("fg_op_conv2d: x %s, w %s, bias %s and pad %u do not fit x N×Cin×H×W, "
                  "w [Cout, Cin, kh, kw], bias [1, Cout]",
                  _fg_tape_shape_str (X, b1, sizeof b1), _fg_tape_shape_str (W, b2, sizeof b2),
                  bias ? _fg_tape_shape_str (&bias->value, b3, sizeof b3) : "(none)", pad);
      return NULL;
    }

  const gsize N = fg_tensor_rows (X), K = g.cin * g.kh * g.kw, P = g.ho * g.wo;
  gsize shape[4] = { N, g.cout, g.ho, g.wo };
  FgVar *inputs[3] = { x, w, bias };
  ConvSaved *cs;
  FgVar *out = fg_tape_op_new (tape, 4, shape, inputs, bias ? 3 : 2, conv_backward, sizeof *cs,
                               (gpointer *) &cs);
  cs->g = g;
  cs->has_bias = bias != NULL;

  const gboolean pointwise = conv_is_pointwise (&g);
  float *col = pointwise ? NULL : fg_tape_alloc_floats (tape, K * P);
  const float *bv = bias ? bias->value.data : NULL;
  for (gsize n = 0; n < N; n++)
    {
      const float *xn = fg_tensor_row (X, n);
      float *yn = fg_tensor_row (&out->value, n);
      if (!pointwise)
        im2col (&g, xn, col);
      if (bv != NULL)
        for (gsize c = 0; c < g.cout; c++)
          {
            float *restrict yc = yn + c * P;
            const float v = bv[c];
            FG_SIMD_FOR (j, P, yc[j] = v);
          }
      _fg_sgemm (FALSE, FALSE, g.cout, P, K, 1.0f, W->data, MAX (W->ld, K),
                 pointwise ? xn : col, P, bv ? 1.0f : 0.0f, yn, P);
    }
  return out;
}
