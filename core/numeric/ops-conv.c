/* SPDX-License-Identifier: MIT */
/* flowgmm — 2-D convolution, stride 1, zero padding: im2col + sgemm.
 *
 * Per image n: col_n [Cin·kh·kw, Ho·Wo] (im2col into arena scratch) and
 * out_n [Cout, Ho·Wo] = W [Cout, Cin·kh·kw] · col_n, with the bias written first (beta = 1).
 * The images of a batch are split over the core's pool (each task with its own scratch and
 * single-threaded sgemm).
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

/* Images are split over the core's pool: each task works on a contiguous range of images with
 * its own im2col buffers and single-threaded sgemm, and the weight gradient of task t goes to
 * partial buffer t (task 0 straight into dW), summed in task order afterwards, so the result
 * depends only on the number of tasks. */
typedef struct {
  const ConvGeom *g;
  const FgTensor *X, *W, *G;
  FgTensor *dX, *dW;
  gboolean dx_fresh, dw_fresh;
  float *scratch;   /* per task: col and dcol, K·P each */
  float *dw_part;   /* tasks 1 .. n-1: Cout·K each */
  gsize N;
} ConvBwdJob;

static void
conv_bwd_task (gpointer data, guint t, guint n_tasks)
{
  const ConvBwdJob *j = data;
  const ConvGeom *g = j->g;
  const gsize K = g->cin * g->kh * g->kw, P = g->ho * g->wo;
  const gsize ldw = MAX (j->W->ld, K);
  const gboolean pointwise = conv_is_pointwise (g);
  float *col = j->scratch + t * 2 * K * P, *dcol = col + K * P;
  gsize n0, n1;
  _fg_pool_range (j->N, t, n_tasks, 1, &n0, &n1);
  float *dw = NULL;
  gsize lddw = K;
  gboolean dw_first = TRUE; /* the first image of this task overwrites its buffer */
  if (j->dW != NULL)
    {
      if (t == 0)
        {
          dw = j->dW->data;
          lddw = MAX (j->dW->ld, K);
          dw_first = j->dw_fresh;
        }
      else
        dw = j->dw_part + (t - 1) * g->cout * K;
      if (n0 == n1 && dw_first)
        memset (dw, 0, g->cout * K * sizeof (float)); /* no image: a zero share */
    }
  for (gsize n = n0; n < n1; n++)
    {
      const float *xn = fg_tensor_row (j->X, n);
      const float *gn = fg_tensor_row (j->G, n);
      if (dw != NULL)
        {
          const float *cn = xn;
          if (!pointwise)
            {
              im2col (g, xn, col);
              cn = col;
            }
          /* dW [Cout, K] += dY_n [Cout, P] · col_nᵀ */
          _fg_sgemm (FALSE, TRUE, g->cout, K, P, 1.0f, gn, P, cn, P,
                     (dw_first && n == n0) ? 0.0f : 1.0f, dw, lddw);
        }
      if (j->dX != NULL)
        {
          float *dxn = fg_tensor_row (j->dX, n);
          if (pointwise) /* dx_n [Cin, P] (+)= Wᵀ · dY_n */
            _fg_sgemm (TRUE, FALSE, K, P, g->cout, 1.0f, j->W->data, ldw, gn, P,
                       j->dx_fresh ? 0.0f : 1.0f, dxn, P);
          else
            {
              if (j->dx_fresh) /* col2im accumulates: start from zero */
                memset (dxn, 0, fg_tensor_cols (j->dX) * sizeof (float));
              _fg_sgemm (TRUE, FALSE, K, P, g->cout, 1.0f, j->W->data, ldw, gn, P, 0.0f, dcol, P);
              col2im_add (g, dcol, dxn);
            }
        }
    }
}

static void
conv_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  const ConvSaved *cs = saved;
  const ConvGeom *g = &cs->g;
  const FgTensor *X = &in[0]->value, *W = &in[1]->value, *G = &out->grad;
  const gsize N = fg_tensor_rows (X), K = g->cin * g->kh * g->kw, P = g->ho * g->wo;
  gboolean dx_fresh = FALSE, dw_fresh = FALSE, db_fresh = FALSE;

  FgTensor *dX = _fg_tape_grad_fresh (tape, in[0], &dx_fresh);
  FgTensor *dW = _fg_tape_grad_fresh (tape, in[1], &dw_fresh);
  FgTensor *db = cs->has_bias ? _fg_tape_grad_fresh (tape, in[2], &db_fresh) : NULL;

  if (dX != NULL || dW != NULL)
    {
      const double flops = 2.0 * (double) N * g->cout * K * P * ((dX != NULL) + (dW != NULL));
      const guint tasks = MIN ((gsize) _fg_pool_tasks (flops * FG_POOL_NS_PER_FLOP), MAX (N, 1));
      ConvBwdJob j = { g, X, W, G, dX, dW, dx_fresh, dw_fresh, NULL, NULL, N };
      j.scratch = fg_tape_alloc_floats (tape, MAX (tasks * 2 * K * P, 1));
      if (dW != NULL && tasks > 1)
        j.dw_part = fg_tape_alloc_floats (tape, (tasks - 1) * g->cout * K);
      if (tasks > 1)
        _fg_pool_run (tasks, conv_bwd_task, &j);
      else
        conv_bwd_task (&j, 0, 1);
      if (dW != NULL)
        {
          const gsize lddw = MAX (dW->ld, K);
          if (N == 0 && dw_fresh) /* an empty batch still owes a zero gradient */
            for (gsize o = 0; o < g->cout; o++)
              memset (dW->data + o * lddw, 0, K * sizeof (float));
          for (guint t = 1; t < tasks; t++)
            for (gsize o = 0; o < g->cout; o++)
              {
                float *restrict d = dW->data + o * lddw;
                const float *restrict p = j.dw_part + ((t - 1) * g->cout + o) * K;
                FG_SIMD_FOR (k, K, d[k] += p[k]);
              }
        }
    }
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

typedef struct {
  const ConvGeom *g;
  const FgTensor *X, *W;
  const float *bias;
  FgTensor *Y;
  float *scratch; /* per task: K·P (im2col), NULL for a pointwise kernel */
  gsize N;
} ConvFwdJob;

static void
conv_fwd_task (gpointer data, guint t, guint n_tasks)
{
  const ConvFwdJob *j = data;
  const ConvGeom *g = j->g;
  const gsize K = g->cin * g->kh * g->kw, P = g->ho * g->wo;
  float *col = j->scratch ? j->scratch + t * K * P : NULL;
  gsize n0, n1;
  _fg_pool_range (j->N, t, n_tasks, 1, &n0, &n1);
  for (gsize n = n0; n < n1; n++)
    {
      const float *xn = fg_tensor_row (j->X, n);
      float *yn = fg_tensor_row (j->Y, n);
      if (col != NULL)
        im2col (g, xn, col);
      if (j->bias != NULL)
        for (gsize c = 0; c < g->cout; c++)
          {
            float *restrict yc = yn + c * P;
            const float v = j->bias[c];
            FG_SIMD_FOR (i, P, yc[i] = v);
          }
      _fg_sgemm (FALSE, FALSE, g->cout, P, K, 1.0f, j->W->data, MAX (j->W->ld, K),
                 col ? col : xn, P, j->bias ? 1.0f : 0.0f, yn, P);
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

  const double flops = 2.0 * (double) N * g.cout * K * P;
  const guint tasks = MIN ((gsize) _fg_pool_tasks (flops * FG_POOL_NS_PER_FLOP), MAX (N, 1));
  ConvFwdJob j = { &g, X, W, bias ? bias->value.data : NULL, &out->value, NULL, N };
  if (!conv_is_pointwise (&g))
    j.scratch = fg_tape_alloc_floats (tape, tasks * K * P);
  if (tasks > 1)
    _fg_pool_run (tasks, conv_fwd_task, &j);
  else
    conv_fwd_task (&j, 0, 1);
  return out;
}
