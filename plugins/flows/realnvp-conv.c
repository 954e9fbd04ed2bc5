/* SPDX-License-Identifier: MIT */
/* flowgmm — flow plugin "realnvp-conv": the authors' multi-scale convolutional RealNVP for
 * images (REFERENCE §2.1–2.2; Dinh et al. 2017, as in chrischute/real-nvp and flow_ssl).
 *
 * Layers, in order, for `scales` = S (C channels, mid m, both doubling at each scale):
 *
 *   logit                 dequantise and take logits (iLogits, below)
 *   per scale s < S − 1:  3 checkerboard couplings (reverse F, T, F; mid m)
 *                         squeeze (C×H×W -> 4C×H/2×W/2, channel 4c + 2dy + dx)
 *                         3 channel-wise couplings on 4C (F, T, F; mid 2m)
 *                         split: keep channels [0, 2C), factor out [2C, 4C) into z
 *   last scale:           4 checkerboard couplings (F, T, F, T)
 *
 * z = concat (flatten (factored pieces, in order), flatten (final)), each in C, H, W order; it is
 * returned with the input's shape (the same number of values).
 *
 * Coupling (REFERENCE §0): b is the conditioning mask (checkerboard: b[i, j] = (i + j) mod 2,
 * 1 − b when reversed; channel-wise: the second half of the channels, the first when reversed),
 *   st = ResNet (x ⊙ b);  s = w ⊙ tanh (s_raw) on transformed positions;  y = (x + t) ⊙ exp (s)
 * and log-det Σ s.  ResNet (chrischute's): BN → (×2 for checkerboard) → concat (x, −x) → ReLU →
 * WN-Conv3×3 (→ mid) → skip = WN-Conv1×1; `blocks` residual blocks [BN → ReLU → WN-Conv3×3 (no
 * bias) → BN → ReLU → WN-Conv3×3] + identity, each adding WN-Conv1×1 (x) to skip; head BN (skip)
 * → ReLU → WN-Conv1×1 (→ 2·C_in).  BN uses batch statistics in training and the running ones
 * (momentum 0.1) in evaluation; the running statistics are non-trainable weights, so
 * checkpoints carry them.
 *
 * iLogits: u = (255 x + ν)/256 with ν ~ U[0, 1) drawn from the run's RNG on every pass (at
 * evaluation too, as the authors; `dequant_eval = mid` uses ν = 1/2 there), p = 0.05 + 0.9 u,
 * y = log p − log (1 − p); log-det Σ −log (p (1 − p)) + D log 0.9 (the 1/256 is the loss's
 * −D log 256).  Its inverse returns x = (256 u − 1/2)/255 clamped to [0, 1] with
 * u = (σ (y) − 0.05)/0.9: the exact inverse for the mid-bin value (the authors return σ (y)).
 *
 * Variants: `1x1` puts an invertible 1×1 convolution (LU-parameterised) before each coupling of
 * the three-coupling groups, `actnorm` an ActNorm and a 1×1 convolution (the authors'
 * RealNVPw1x1 and RealNVPw1x1ActNorm).  ActNorm is initialised from the first training batch
 * through the flow vtable's optional `init`.
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include <flowgmm/flowgmm.h>

/* ======================================================================================== */
/* Parameters                                                                                 */
/* ======================================================================================== */

static const FgParamSpec conv_params[] = {
  FG_PARAM_SPEC_INT ("scales", "2", 1, 8,
                     "number of scales (authors: 2); H and W must be divisible by 2^(scales−1)"),
  FG_PARAM_SPEC_INT ("mid_channels", "64", 1, 4096,
                     "feature maps of the first scale's s/t networks (doubled at each channel-"
                     "wise group and each scale; authors 64)"),
  FG_PARAM_SPEC_INT ("blocks", "8", 0, 256, "residual blocks per s/t network (authors 8)"),
  FG_PARAM_SPEC_CHOICE ("variant", "affine", "affine|1x1|actnorm",
                        "affine: the authors' RealNVP; 1x1: an invertible 1×1 convolution before "
                        "each coupling of a group (RealNVPw1x1); actnorm: ActNorm + 1×1 "
                        "(RealNVPw1x1ActNorm)"),
  FG_PARAM_SPEC_BOOL ("logit", "true",
                      "start with the authors' dequantisation + logit layer (inputs in [0, 1]); "
                      "false when the data are already continuous"),
  FG_PARAM_SPEC_CHOICE ("dequant_eval", "noise", "noise|mid",
                        "dequantisation noise at evaluation: drawn from the run's RNG (authors) "
                        "or the mid-bin value 1/2 (deterministic)"),
  FG_PARAM_SPEC_DOUBLE ("bn_momentum", "0.1", 0.0, 1.0,
                        "batch-norm running-statistics momentum (PyTorch 0.1)"),
  FG_PARAM_SPEC_DOUBLE ("bn_eps", "1e-5", 0.0, 1.0, "batch-norm epsilon (PyTorch 1e-5)"),
  FG_PARAM_SPEC_INT ("eval_chunk", "16", 1, 1 << 20,
                     "images per pass of a gradient-free evaluation (memory: the activations of "
                     "one pass; the values do not depend on it)"),
  FG_PARAM_SPEC_STRING ("structure", NULL,
                        "instead of the multi-scale architecture, this comma-separated layer "
                        "list (tests, experiments): logit, checker, checker-r, channel, "
                        "channel-r, squeeze, split, actnorm, 1x1; couplings use mid_channels"),
  FG_PARAM_SPEC_END,
};

/* ======================================================================================== */
/* Model                                                                                      */
/* ======================================================================================== */

typedef enum {
  L_LOGIT,
  L_CHECKER,
  L_CHANNEL,
  L_SQUEEZE,
  L_SPLIT,
  L_ACTNORM,
  L_CONV1X1,
} LayerKind;

typedef struct {
  FgWeight *v, *g, *b; /* b NULL without bias */
  guint pad;
} WnConv;

typedef struct {
  FgWeight *gamma, *beta, *mean, *var;
} Bn;

typedef struct {
  Bn in_norm, out_norm;
  WnConv in_conv, in_skip, out_conv;
  guint n_blocks;
  Bn *b_in_norm, *b_out_norm;
  WnConv *b_in_conv, *b_out_conv, *skips;
  gboolean double_after_norm;
} ResNet;

typedef struct {
  LayerKind kind;
  gboolean reverse;
  gsize C, H, W; /* input shape */
  /* couplings */
  gsize c_ch, n_ch;     /* transformed channels [c_ch, c_ch + n_ch) */
  gsize c_id, n_id;     /* conditioning channels (channel-wise) */
  float *mask;          /* checkerboard: H·W, 1 where transformed */
  FgTensor cond_mask;   /* checkerboard: [1, C·H·W], 1 where conditioning */
  ResNet net;
  FgWeight *rescale;    /* [1, n_ch] */
  /* split */
  gsize keep;
  gsize z_offset;       /* where the factored piece goes in z */
  gsize z_before;       /* values factored out before this layer */
  /* actnorm */
  FgWeight *an_shift, *an_logs; /* y = (x + shift) · exp (logs) */
  /* 1×1 convolution */
  FgWeight *perm, *sign, *lower, *upper, *log_s, *bias;
} Layer;

typedef struct {
  gsize C, H, W, D;
  Layer *layers;
  guint n_layers;
  gsize final_offset; /* where the final activation goes in z */
  gsize fC, fH, fW;   /* final activation's shape */
  gboolean dequant_mid;
  float bn_momentum, bn_eps;
  gboolean initializing; /* inside init: ActNorm layers set themselves from the data */
  gsize eval_chunk;      /* images per pass of a gradient-free evaluation */
  FgTape *scratch;       /* the tape those passes run on (created on first use) */
  const FgGroup *group;  /* during a training forward: the data-parallel group whose slices
                          * make the batch (FgFlowRun.group), for the batch statistics */
} ConvFlow;

/* ======================================================================================== */
/* Fused ops of the flow                                                                      */
/* ======================================================================================== */

#define LOGIT_ALPHA 0.05f  /* p = α + (1 − 2α)·u */
#define LOGIT_SCALE 0.9f

/* iLogits: inputs x (N×C×H×W, any ld) and optional noise ν (contiguous, same numel). */
static void
logit_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  (void) saved;
  FgTensor *dx = fg_tape_grad (tape, in[0]);
  const FgTensor *Y = &out->value, *G = &out->grad;
  const gsize N = fg_tensor_rows (Y), D = fg_tensor_cols (Y);
  const float k = LOGIT_SCALE * 255.0f / 256.0f;
  if (dx == NULL)
    return;
  for (gsize n = 0; n < N; n++)
    {
      const float *restrict y = fg_tensor_row (Y, n), *restrict g = fg_tensor_row (G, n);
      float *restrict d = fg_tensor_row (dx, n);
      for (gsize j = 0; j < D; j++)
        {
          const float p = 1.0f / (1.0f + expf (-y[j]));
          d[j] += g[j] * k / (p * (1.0f - p));
        }
    }
}

static FgVar *
logit_op (FgTape *tape, FgVar *x, const float *noise)
{
  const FgTensor *X = &x->value;
  const gsize N = fg_tensor_rows (X), D = fg_tensor_cols (X);
  FgVar *out = fg_tape_op_new (tape, X->ndim, X->shape, &x, 1, logit_backward, 0, NULL);
  if (out == NULL)
    return NULL;
  for (gsize n = 0; n < N; n++)
    {
      const float *restrict xr = fg_tensor_row (X, n);
      const float *restrict nu = noise ? noise + n * D : NULL;
      float *restrict y = fg_tensor_row (&out->value, n);
      for (gsize j = 0; j < D; j++)
        {
          const double u = (255.0 * xr[j] + (nu ? nu[j] : 0.5)) / 256.0;
          const double p = LOGIT_ALPHA + LOGIT_SCALE * u;
          y[j] = (float) (log (p) - log1p (-p));
        }
    }
  return out;
}

/* Σ_j −log (p (1 − p)) + D log 0.9 per row, p = σ (y): [N, 1]. */
static void
logit_logdet_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  (void) saved;
  FgTensor *dy = fg_tape_grad (tape, in[0]);
  const FgTensor *Y = &in[0]->value;
  const gsize N = fg_tensor_rows (Y), D = fg_tensor_cols (Y);
  if (dy == NULL)
    return;
  for (gsize n = 0; n < N; n++)
    {
      const float g = out->grad.data[n];
      const float *restrict y = fg_tensor_row (Y, n);
      float *restrict d = fg_tensor_row (dy, n);
      for (gsize j = 0; j < D; j++)
        d[j] += g * (2.0f / (1.0f + expf (-y[j])) - 1.0f);
    }
}

static FgVar *
logit_logdet_op (FgTape *tape, FgVar *y)
{
  const FgTensor *Y = &y->value;
  const gsize N = fg_tensor_rows (Y), D = fg_tensor_cols (Y);
  const gsize shape[2] = { N, 1 };
  FgVar *out = fg_tape_op_new (tape, 2, shape, &y, 1, logit_logdet_backward, 0, NULL);
  if (out == NULL)
    return NULL;
  for (gsize n = 0; n < N; n++)
    {
      const float *y_ = fg_tensor_row (Y, n);
      double acc = 0.0;
      for (gsize j = 0; j < D; j++)
        {
          /* softplus (y) + softplus (−y) = |y| + 2 log (1 + e^−|y|) */
          const double a = fabs ((double) y_[j]);
          acc += a + 2.0 * log1p (exp (-a));
        }
      out->value.data[n] = (float) (acc + (double) D * log (LOGIT_SCALE));
    }
  return out;
}

/* The inverse of iLogits (no gradient): x = clamp ((256 u − 1/2)/255), u = (σ (y) − α)/0.9. */
static FgVar *
logit_inverse (FgTape *tape, FgVar *y)
{
  const FgTensor *Y = &y->value;
  FgVar *out = fg_tape_empty (tape, Y->ndim, Y->shape);
  for (gsize n = 0; n < fg_tensor_rows (Y); n++)
    {
      const float *yr = fg_tensor_row (Y, n);
      float *x = fg_tensor_row (&out->value, n);
      for (gsize j = 0; j < fg_tensor_cols (Y); j++)
        {
          const double p = 1.0 / (1.0 + exp (-(double) yr[j]));
          const double u = (p - LOGIT_ALPHA) / LOGIT_SCALE;
          const double v = (256.0 * u - 0.5) / 255.0;
          x[j] = (float) CLAMP (v, 0.0, 1.0);
        }
    }
  return out;
}

/* ---- The affine coupling: y = (x + m·t) · exp (m · w · tanh (s_raw)) on channels
 * [c_ch, c_ch + n_ch), x elsewhere; m the spatial mask (checkerboard) or 1. */

typedef struct {
  gsize c_ch, n_ch, P;
  const float *mask; /* P values or NULL */
} CouplingSaved;

static void
coupling_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  const CouplingSaved *s = saved;
  const FgTensor *X = &in[0]->value, *ST = &in[1]->value, *Y = &out->value, *G = &out->grad;
  const float *w = in[2]->value.data;
  FgTensor *dX = fg_tape_grad (tape, in[0]);
  FgTensor *dST = fg_tape_grad (tape, in[1]);
  FgTensor *dW = fg_tape_grad (tape, in[2]);
  const gsize N = fg_tensor_rows (X), C = X->shape[1], P = s->P, nc = s->n_ch;
  for (gsize n = 0; n < N; n++)
    {
      const float *g = fg_tensor_row (G, n), *y = fg_tensor_row (Y, n);
      const float *st = fg_tensor_row (ST, n);
      float *dx = dX ? fg_tensor_row (dX, n) : NULL;
      float *dst = dST ? fg_tensor_row (dST, n) : NULL;
      for (gsize c = 0; c < C; c++)
        {
          const float *restrict gc = g + c * P;
          if (c < s->c_ch || c >= s->c_ch + nc)
            {
              if (dx != NULL)
                for (gsize j = 0; j < P; j++)
                  dx[c * P + j] += gc[j];
              continue;
            }
          const gsize k = c - s->c_ch;
          const float *restrict sr = st + k * P, *restrict yc = y + c * P;
          double dw = 0.0;
          for (gsize j = 0; j < P; j++)
            {
              const float m = s->mask ? s->mask[j] : 1.0f;
              const float th = tanhf (sr[j]);
              const float e = expf (m * w[k] * th);
              const float gs = gc[j] * yc[j] * m; /* dL/ds · m */
              if (dx != NULL)
                dx[c * P + j] += gc[j] * e;
              if (dst != NULL)
                {
                  dst[k * P + j] += gs * w[k] * (1.0f - th * th);
                  dst[(nc + k) * P + j] += gc[j] * e * m;
                }
              dw += (double) gs * th;
            }
          if (dW != NULL)
            dW->data[k] += (float) dw;
        }
    }
}

static FgVar *
coupling_op (FgTape *tape, const Layer *L, FgVar *x, FgVar *st, FgVar *w)
{
  if (x == NULL || st == NULL || w == NULL)
    return NULL;
  const FgTensor *X = &x->value;
  const gsize N = fg_tensor_rows (X), C = X->shape[1], P = X->shape[2] * X->shape[3];
  FgVar *inputs[3] = { x, st, w };
  CouplingSaved *s;
  FgVar *out = fg_tape_op_new (tape, 4, X->shape, inputs, 3, coupling_backward, sizeof *s,
                               (gpointer *) &s);
  if (out == NULL)
    return NULL;
  s->c_ch = L->c_ch;
  s->n_ch = L->n_ch;
  s->P = P;
  s->mask = L->mask;
  const float *wv = w->value.data;
  for (gsize n = 0; n < N; n++)
    {
      const float *x_ = fg_tensor_row (X, n), *st_ = fg_tensor_row (&st->value, n);
      float *y = fg_tensor_row (&out->value, n);
      memcpy (y, x_, C * P * sizeof (float));
      for (gsize k = 0; k < L->n_ch; k++)
        {
          const float *restrict sr = st_ + k * P, *restrict t = st_ + (L->n_ch + k) * P;
          float *restrict yc = y + (L->c_ch + k) * P;
          for (gsize j = 0; j < P; j++)
            {
              const float m = L->mask ? L->mask[j] : 1.0f;
              yc[j] = (yc[j] + m * t[j]) * expf (m * wv[k] * tanhf (sr[j]));
            }
        }
    }
  return out;
}

typedef struct {
  gsize n_ch, P;
  const float *mask;
} CouplingLdSaved;

static void
coupling_logdet_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  const CouplingLdSaved *s = saved;
  const FgTensor *ST = &in[0]->value;
  const float *w = in[1]->value.data;
  FgTensor *dST = fg_tape_grad (tape, in[0]);
  FgTensor *dW = fg_tape_grad (tape, in[1]);
  const gsize P = s->P;
  for (gsize n = 0; n < fg_tensor_rows (ST); n++)
    {
      const float gl = out->grad.data[n];
      const float *st = fg_tensor_row (ST, n);
      float *dst = dST ? fg_tensor_row (dST, n) : NULL;
      for (gsize k = 0; k < s->n_ch; k++)
        {
          double acc = 0.0;
          for (gsize j = 0; j < P; j++)
            {
              const float m = s->mask ? s->mask[j] : 1.0f;
              const float th = tanhf (st[k * P + j]);
              acc += (double) m * th;
              if (dst != NULL)
                dst[k * P + j] += gl * m * w[k] * (1.0f - th * th);
            }
          if (dW != NULL)
            dW->data[k] += (float) (gl * acc);
        }
    }
}

/* Σ over transformed positions of s = w · tanh (s_raw): [N, 1]. */
static FgVar *
coupling_logdet_op (FgTape *tape, const Layer *L, FgVar *st, FgVar *w)
{
  if (st == NULL || w == NULL)
    return NULL;
  const gsize N = fg_tensor_rows (&st->value), P = st->value.shape[2] * st->value.shape[3];
  const gsize shape[2] = { N, 1 };
  FgVar *inputs[2] = { st, w };
  CouplingLdSaved *s;
  FgVar *out = fg_tape_op_new (tape, 2, shape, inputs, 2, coupling_logdet_backward, sizeof *s,
                               (gpointer *) &s);
  if (out == NULL)
    return NULL;
  s->n_ch = L->n_ch;
  s->P = P;
  s->mask = L->mask;
  for (gsize n = 0; n < N; n++)
    {
      const float *st_ = fg_tensor_row (&st->value, n);
      double acc = 0.0;
      for (gsize k = 0; k < L->n_ch; k++)
        {
          double a = 0.0;
          for (gsize j = 0; j < P; j++)
            a += (double) (L->mask ? L->mask[j] : 1.0f) * tanhf (st_[k * P + j]);
          acc += a * w->value.data[k];
        }
      out->value.data[n] = (float) acc;
    }
  return out;
}

/* x = y · exp (−s) − m·t on the transformed channels (no gradient). */
static FgVar *
coupling_inverse_op (FgTape *tape, const Layer *L, FgVar *y, FgVar *st, FgVar *w)
{
  if (y == NULL || st == NULL || w == NULL)
    return NULL;
  const FgTensor *Y = &y->value;
  const gsize N = fg_tensor_rows (Y), C = Y->shape[1], P = Y->shape[2] * Y->shape[3];
  FgVar *out = fg_tape_empty (tape, 4, Y->shape);
  for (gsize n = 0; n < N; n++)
    {
      const float *y_ = fg_tensor_row (Y, n), *st_ = fg_tensor_row (&st->value, n);
      float *x = fg_tensor_row (&out->value, n);
      memcpy (x, y_, C * P * sizeof (float));
      for (gsize k = 0; k < L->n_ch; k++)
        {
          const float *sr = st_ + k * P, *t = st_ + (L->n_ch + k) * P;
          float *xc = x + (L->c_ch + k) * P;
          for (gsize j = 0; j < P; j++)
            {
              const float m = L->mask ? L->mask[j] : 1.0f;
              xc[j] = xc[j] * expf (-m * w->value.data[k] * tanhf (sr[j])) - m * t[j];
            }
        }
    }
  return out;
}

/* ---- z: the factored pieces and the final activation, flattened and concatenated. */

typedef struct {
  guint n;
  gsize *offsets;
} PackSaved;

static void
pack_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  const PackSaved *s = saved;
  for (guint i = 0; i < s->n; i++)
    {
      FgTensor *d = fg_tape_grad (tape, in[i]);
      if (d == NULL)
        continue;
      const gsize cols = fg_tensor_cols (d);
      for (gsize n = 0; n < fg_tensor_rows (d); n++)
        {
          const float *restrict g = fg_tensor_row (&out->grad, n) + s->offsets[i];
          float *restrict dr = fg_tensor_row (d, n);
          for (gsize j = 0; j < cols; j++)
            dr[j] += g[j];
        }
    }
}

/* pieces (4-D, any ld) -> [N, Σ cols] in order (each at s->offsets). */
static FgVar *
pack_op (FgTape *tape, FgVar *const *pieces, guint n, guint ndim, const gsize *shape)
{
  PackSaved *s;
  FgVar *out = fg_tape_op_new (tape, ndim, shape, pieces, n, pack_backward, sizeof *s,
                               (gpointer *) &s);
  if (out == NULL)
    return NULL;
  s->n = n;
  s->offsets = fg_tape_alloc (tape, n * sizeof (gsize));
  gsize off = 0;
  for (guint i = 0; i < n; i++)
    {
      const FgTensor *p = &pieces[i]->value;
      const gsize cols = fg_tensor_cols (p);
      s->offsets[i] = off;
      for (gsize r = 0; r < fg_tensor_rows (p); r++)
        memcpy (fg_tensor_row (&out->value, r) + off, fg_tensor_row (p, r), cols * sizeof (float));
      off += cols;
    }
  return out;
}

/* Columns [off, off + C·H·W) of z as a contiguous N×C×H×W node (no gradient). */
static FgVar *
unpack_piece (FgTape *tape, const FgTensor *Z, gsize off, gsize C, gsize H, gsize W)
{
  const gsize N = fg_tensor_rows (Z), shape[4] = { N, C, H, W };
  FgVar *v = fg_tape_empty (tape, 4, shape);
  for (gsize n = 0; n < N; n++)
    memcpy (fg_tensor_row (&v->value, n), fg_tensor_row (Z, n) + off, C * H * W * sizeof (float));
  return v;
}

/* ======================================================================================== */
/* The s/t network                                                                            */
/* ======================================================================================== */

static FgVar *
wn_conv (FgTape *tape, const WnConv *c, FgVar *x)
{
  FgVar *w = fg_op_weight_norm (tape, fg_tape_weight (tape, c->v), fg_tape_weight (tape, c->g));
  return fg_op_conv2d (tape, x, w, c->b ? fg_tape_weight (tape, c->b) : NULL, c->pad);
}

static FgVar *
bn (const ConvFlow *self, FgTape *tape, const Bn *b, FgVar *x, gboolean train, FgActivation act)
{
  return fg_op_batch_norm2d_group (tape, x, fg_tape_weight (tape, b->gamma),
                                   fg_tape_weight (tape, b->beta), &b->mean->value,
                                   &b->var->value, self->bn_momentum, self->bn_eps, train, act,
                                   train ? self->group : NULL);
}

static FgVar *
resnet_forward (const ConvFlow *self, FgTape *tape, const ResNet *R, FgVar *x, gboolean train)
{
  FgVar *h = bn (self, tape, &R->in_norm, x, train, FG_ACT_NONE);
  if (R->double_after_norm)
    h = fg_op_scale (tape, h, 2.0f);
  h = fg_op_relu (tape, fg_op_concat (tape, h, fg_op_neg (tape, h)));
  h = wn_conv (tape, &R->in_conv, h);
  FgVar *skip = wn_conv (tape, &R->in_skip, h);
  for (guint i = 0; i < R->n_blocks; i++)
    {
      FgVar *r = bn (self, tape, &R->b_in_norm[i], h, train, FG_ACT_RELU);
      r = wn_conv (tape, &R->b_in_conv[i], r);
      r = bn (self, tape, &R->b_out_norm[i], r, train, FG_ACT_RELU);
      r = wn_conv (tape, &R->b_out_conv[i], r);
      h = fg_op_add (tape, r, h);
      skip = fg_op_add (tape, skip, wn_conv (tape, &R->skips[i], h));
    }
  h = bn (self, tape, &R->out_norm, skip, train, FG_ACT_RELU);
  return wn_conv (tape, &R->out_conv, h);
}

/* ======================================================================================== */
/* Layers                                                                                     */
/* ======================================================================================== */

/* The s/t network's output for coupling L on x (evaluation when !train). */
static FgVar *
coupling_st (const ConvFlow *self, FgTape *tape, const Layer *L, FgVar *x, gboolean train)
{
  FgVar *in = L->kind == L_CHECKER ? fg_op_mask (tape, x, &L->cond_mask)
                                   : fg_op_slice (tape, x, L->c_id, L->n_id);
  return resnet_forward (self, tape, &L->net, in, train);
}

/* The 1×1 convolution's matrix W = P·L·U' [C, C]. */
static FgVar *
conv1x1_matrix (FgTape *tape, const Layer *L)
{
  return fg_op_lu_matrix (tape, &L->perm->value, fg_tape_weight (tape, L->lower),
                          fg_tape_weight (tape, L->upper), &L->sign->value,
                          fg_tape_weight (tape, L->log_s));
}

/* log-det per example of a layer whose log-det is the same for every example: [1, 1]. */
static FgVar *
spatial_logdet (FgTape *tape, FgVar *log_scale, gsize HW)
{
  return fg_op_scale (tape, fg_op_sum (tape, log_scale, FG_AXIS_ALL), (float) HW);
}

/* ActNorm from the data: shift = −mean, logs = −log (std + 1e-6) per channel of x. */
static void
actnorm_init_from (Layer *L, const FgTensor *X)
{
  const gsize N = fg_tensor_rows (X), C = L->C, P = L->H * L->W;
  for (gsize c = 0; c < C; c++)
    {
      double sum = 0.0, sq = 0.0;
      for (gsize n = 0; n < N; n++)
        for (gsize j = 0; j < P; j++)
          sum += fg_tensor_row (X, n)[c * P + j];
      const double mu = sum / (double) (N * P);
      for (gsize n = 0; n < N; n++)
        for (gsize j = 0; j < P; j++)
          {
            const double d = fg_tensor_row (X, n)[c * P + j] - mu;
            sq += d * d;
          }
      const double sd = sqrt (sq / (double) (N * P));
      L->an_shift->value.data[c] = (float) -mu;
      L->an_logs->value.data[c] = (float) -log (sd + 1e-6);
    }
}

/* Forward through layers [0, end): cur and the running log-det; factored pieces collected in
 * `pieces` (n_pieces). */
static FgVar *
layers_forward (ConvFlow *self, FgTape *tape, FgVar *cur, guint end, gboolean train, FgRng *rng,
                FgVar **ld, FgVar **pieces, guint *n_pieces)
{
  for (guint l = 0; l < end && cur != NULL; l++)
    {
      Layer *L = &self->layers[l];
      const gsize HW = L->H * L->W;
      switch (L->kind)
        {
        case L_LOGIT:
          {
            const gsize n = fg_tensor_numel (&cur->value);
            float *noise = NULL;
            if (rng != NULL && (train || !self->dequant_mid))
              {
                noise = fg_tape_alloc_floats (tape, n);
                fg_rng_fill_uniform (rng, noise, n, 0.0f, 1.0f);
              }
            cur = logit_op (tape, cur, noise);
            *ld = fg_op_add (tape, *ld, logit_logdet_op (tape, cur));
            break;
          }
        case L_CHECKER:
        case L_CHANNEL:
          {
            FgVar *st = coupling_st (self, tape, L, cur, train);
            FgVar *w = fg_tape_weight (tape, L->rescale);
            FgVar *y = coupling_op (tape, L, cur, st, w);
            *ld = fg_op_add (tape, *ld, coupling_logdet_op (tape, L, st, w));
            cur = y;
            break;
          }
        case L_SQUEEZE:
          cur = fg_op_squeeze2d (tape, cur);
          break;
        case L_SPLIT:
          pieces[(*n_pieces)++] = fg_op_slice (tape, cur, L->keep, L->C - L->keep);
          cur = fg_op_slice (tape, cur, 0, L->keep);
          break;
        case L_ACTNORM:
          {
            if (self->initializing)
              actnorm_init_from (L, &cur->value);
            FgVar *logs = fg_tape_weight (tape, L->an_logs);
            FgVar *scale = fg_op_exp (tape, logs);
            cur = fg_op_channel_affine (tape, cur, scale,
                                        fg_op_mul (tape, fg_tape_weight (tape, L->an_shift), scale));
            *ld = fg_op_add (tape, *ld, spatial_logdet (tape, logs, HW));
            break;
          }
        case L_CONV1X1:
          {
            FgVar *W = conv1x1_matrix (tape, L);
            W = fg_op_reshape (tape, W, 4, (gsize[]){ L->C, L->C, 1, 1 });
            cur = fg_op_conv2d (tape, cur, W, fg_tape_weight (tape, L->bias), 0);
            *ld = fg_op_add (tape, *ld, spatial_logdet (tape, fg_tape_weight (tape, L->log_s), HW));
            break;
          }
        }
    }
  return cur;
}

/* The state after layers [0, end): the activation entering layer `end` (the final one when
 * end = n_layers) and the pieces factored out before it.  While nothing has been factored out it
 * is that activation; afterwards the pieces and the activation flattened and concatenated (as z),
 * [N, D] (x's shape at end = n_layers). */
static gboolean
state_is_packed (const ConvFlow *self, guint end)
{
  for (guint l = 0; l < end; l++)
    if (self->layers[l].kind == L_SPLIT)
      return TRUE;
  return end == self->n_layers;
}

static FgVar *
forward_direct (ConvFlow *self, FgTape *tape, FgVar *x, guint end, const FgFlowRun *run,
                FgVar **logdet, GError **error)
{
  const gboolean train = run != NULL && run->train;
  FgRng *rng = run != NULL ? run->rng : NULL;
  if (x == NULL || fg_tensor_cols (&x->value) != self->D)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                   "realnvp-conv: input of %" G_GSIZE_FORMAT " values per example, built for "
                   "%" G_GSIZE_FORMAT "×%" G_GSIZE_FORMAT "×%" G_GSIZE_FORMAT,
                   x ? fg_tensor_cols (&x->value) : 0, self->C, self->H, self->W);
      return NULL;
    }
  if (train && rng == NULL)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "realnvp-conv: training run without an RNG");
      return NULL;
    }
  const gsize N = fg_tensor_rows (&x->value);
  FgVar *cur = x;
  if (x->value.ndim != 4 || x->value.shape[1] != self->C)
    cur = fg_op_reshape (tape, x, 4, (gsize[]){ N, self->C, self->H, self->W });
  FgVar *ld = fg_op_zeros (tape, 2, (gsize[]){ N, 1 });
  FgVar **pieces = fg_tape_alloc (tape, (self->n_layers + 1) * sizeof (FgVar *));
  guint n_pieces = 0;
  self->group = train ? run->group : NULL;
  cur = layers_forward (self, tape, cur, end, train, rng, &ld, pieces, &n_pieces);
  self->group = NULL;
  FgVar *out = cur;
  if (cur != NULL && state_is_packed (self, end))
    {
      pieces[n_pieces++] = cur;
      out = end == self->n_layers
                ? pack_op (tape, pieces, n_pieces, x->value.ndim, x->value.shape)
                : pack_op (tape, pieces, n_pieces, 2, (gsize[]){ N, self->D });
    }
  if (out == NULL || ld == NULL)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "realnvp-conv: forward failed (see the log)");
      return NULL;
    }
  if (logdet != NULL)
    *logdet = ld;
  return out;
}

static FgVar *forward_until (ConvFlow *self, FgTape *tape, FgVar *x, guint end,
                             const FgFlowRun *run, FgVar **logdet, GError **error);

static FgVar *
conv_forward (gpointer data, FgTape *tape, FgVar *x, const FgFlowRun *run, FgVar **logdet,
              GError **error)
{
  *logdet = NULL;
  return forward_until (data, tape, x, ((ConvFlow *) data)->n_layers, run, logdet, error);
}

/* x from the state after layers [0, end) (see state_is_packed), evaluation mode. */
static FgVar *
inverse_direct (ConvFlow *self, FgTape *tape, FgVar *z, guint end, GError **error)
{
  if (z == NULL || fg_tensor_cols (&z->value) != self->D)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                   "realnvp-conv: latent of %" G_GSIZE_FORMAT " values, built for %" G_GSIZE_FORMAT,
                   z ? fg_tensor_cols (&z->value) : 0, self->D);
      return NULL;
    }
  const FgTensor *Z = &z->value;
  FgVar *cur;
  if (end == self->n_layers)
    cur = unpack_piece (tape, Z, self->final_offset, self->fC, self->fH, self->fW);
  else if (state_is_packed (self, end))
    {
      const Layer *E = &self->layers[end];
      cur = unpack_piece (tape, Z, E->z_before, E->C, E->H, E->W);
    }
  else
    {
      const Layer *E = &self->layers[end];
      cur = z->value.ndim == 4 && z->value.shape[1] == E->C
                ? z
                : unpack_piece (tape, Z, 0, E->C, E->H, E->W);
    }
  for (guint l = end; l-- > 0 && cur != NULL;)
    {
      Layer *L = &self->layers[l];
      switch (L->kind)
        {
        case L_LOGIT:
          cur = logit_inverse (tape, cur);
          break;
        case L_CHECKER:
        case L_CHANNEL:
          cur = coupling_inverse_op (tape, L, cur, coupling_st (self, tape, L, cur, FALSE),
                                     fg_tape_weight (tape, L->rescale));
          break;
        case L_SQUEEZE:
          cur = fg_op_unsqueeze2d (tape, cur);
          break;
        case L_SPLIT:
          cur = fg_op_concat (tape, cur,
                              unpack_piece (tape, Z, L->z_offset, L->C - L->keep, L->H, L->W));
          break;
        case L_ACTNORM:
          {
            /* x = y · exp (−logs) − shift */
            FgVar *logs = fg_tape_weight (tape, L->an_logs);
            cur = fg_op_channel_affine (tape, cur, fg_op_exp (tape, fg_op_neg (tape, logs)),
                                        fg_op_neg (tape, fg_tape_weight (tape, L->an_shift)));
            break;
          }
        case L_CONV1X1:
          {
            /* x = W⁻¹ (y − b) with W⁻¹ = U'⁻¹ L⁻¹ Pᵀ, by two triangular solves */
            const gsize C = L->C;
            FgVar *pt = fg_op_zeros (tape, 2, (gsize[]){ C, C });
            for (gsize i = 0; i < C; i++)
              pt->value.data[(gsize) L->perm->value.data[i] * C + i] = 1.0f;
            FgVar *uf = fg_op_lu_matrix (tape, NULL, NULL, fg_tape_weight (tape, L->upper),
                                         &L->sign->value, fg_tape_weight (tape, L->log_s));
            FgVar *winv = fg_op_solve_triangular (
                tape, uf,
                fg_op_solve_triangular (tape, fg_tape_weight (tape, L->lower), pt, TRUE, TRUE),
                FALSE, FALSE);
            FgVar *yb = fg_op_channel_affine (tape, cur, NULL,
                                              fg_op_neg (tape, fg_tape_weight (tape, L->bias)));
            cur = fg_op_conv2d (tape, yb, fg_op_reshape (tape, winv, 4, (gsize[]){ C, C, 1, 1 }),
                                NULL, 0);
            break;
          }
        }
    }
  /* the full inverse returns z's shape; a partial one the input's N×C×H×W */
  if (cur != NULL && end == self->n_layers
      && (z->value.ndim != 4 || !fg_tensor_same_shape (&cur->value, &z->value)))
    cur = fg_op_reshape (tape, cur, z->value.ndim, z->value.shape);
  if (cur == NULL)
    g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "realnvp-conv: inverse failed (see the log)");
  return cur;
}

/* A gradient-free evaluation pass keeps every activation of the pass in the caller's arena
 * until it is reset: tens of megabytes per image for the authors' model.  Such passes run in
 * chunks of eval_chunk images on a private tape, reset between chunks, and only the results
 * are copied to the caller's tape.  Evaluation-mode batch norm treats each image alone and the
 * dequantisation noise is drawn in the same order, so the values are those of one pass.
 * Training-mode passes (batch statistics) are never split. */
static gboolean
use_chunks (const ConvFlow *self, FgTape *tape, FgVar *x, gboolean train)
{
  return !train && !fg_tape_get_grad_enabled (tape) && x != NULL
         && fg_tensor_rows (&x->value) > self->eval_chunk;
}

/* Rows [start, start + n) of v as a leaf on `tape` (a view of v's memory, no copy). */
static FgVar *
rows_leaf (FgTape *tape, FgVar *v, gsize start, gsize n)
{
  FgTensor t = fg_tensor_view_rows (&v->value, start, n);
  return fg_tape_constant (tape, &t);
}

static void
copy_rows_into (FgVar *dst, gsize start, const FgVar *src)
{
  const gsize cols = fg_tensor_cols (&src->value);
  for (gsize i = 0; i < fg_tensor_rows (&src->value); i++)
    memcpy (fg_tensor_row (&dst->value, start + i), fg_tensor_row (&src->value, i),
            cols * sizeof (float));
}

static FgVar *
forward_until (ConvFlow *self, FgTape *tape, FgVar *x, guint end, const FgFlowRun *run,
               FgVar **logdet, GError **error)
{
  const gboolean train = run != NULL && run->train;
  if (!use_chunks (self, tape, x, train) || fg_tensor_cols (&x->value) != self->D)
    return forward_direct (self, tape, x, end, run, logdet, error);
  const gsize N = fg_tensor_rows (&x->value);
  FgVar *out = NULL, *ld = fg_tape_empty (tape, 2, (gsize[]){ N, 1 });
  if (self->scratch == NULL)
    self->scratch = fg_tape_new ();
  fg_tape_set_grad_enabled (self->scratch, FALSE);
  for (gsize start = 0; start < N; start += self->eval_chunk)
    {
      const gsize n = MIN (self->eval_chunk, N - start);
      FgVar *cld = NULL;
      fg_tape_reset (self->scratch);
      FgVar *c = forward_direct (self, self->scratch, rows_leaf (self->scratch, x, start, n), end,
                                 run, &cld, error);
      if (c == NULL)
        {
          fg_tape_reset (self->scratch);
          return NULL;
        }
      if (out == NULL)
        {
          gsize shape[FG_TENSOR_MAX_DIMS];
          memcpy (shape, c->value.shape, sizeof shape);
          shape[0] = N;
          out = fg_tape_empty (tape, c->value.ndim, shape);
        }
      copy_rows_into (out, start, c);
      copy_rows_into (ld, start, cld);
    }
  fg_tape_reset (self->scratch);
  if (logdet != NULL)
    *logdet = ld;
  return out;
}

static FgVar *
inverse_from (ConvFlow *self, FgTape *tape, FgVar *z, guint end, GError **error)
{
  if (!use_chunks (self, tape, z, FALSE) || fg_tensor_cols (&z->value) != self->D)
    return inverse_direct (self, tape, z, end, error);
  const gsize N = fg_tensor_rows (&z->value);
  FgVar *out = NULL;
  if (self->scratch == NULL)
    self->scratch = fg_tape_new ();
  fg_tape_set_grad_enabled (self->scratch, FALSE);
  for (gsize start = 0; start < N; start += self->eval_chunk)
    {
      const gsize n = MIN (self->eval_chunk, N - start);
      fg_tape_reset (self->scratch);
      FgVar *c = inverse_direct (self, self->scratch, rows_leaf (self->scratch, z, start, n), end,
                                 error);
      if (c == NULL)
        {
          fg_tape_reset (self->scratch);
          return NULL;
        }
      if (out == NULL)
        {
          gsize shape[FG_TENSOR_MAX_DIMS];
          memcpy (shape, c->value.shape, sizeof shape);
          shape[0] = N;
          out = fg_tape_empty (tape, c->value.ndim, shape);
        }
      copy_rows_into (out, start, c);
    }
  fg_tape_reset (self->scratch);
  return out;
}

static FgVar *
conv_inverse (gpointer data, FgTape *tape, FgVar *z, GError **error)
{
  ConvFlow *self = data;
  return inverse_from (self, tape, z, self->n_layers, error);
}

/* Data-dependent initialisation: one pass over the batch in which each ActNorm layer sets its
 * shift and scale so that its output has mean 0 and standard deviation 1 per channel. */
static gboolean
conv_init (gpointer data, FgTape *tape, FgVar *x, const FgFlowRun *run, GError **error)
{
  ConvFlow *self = data;
  gboolean any = FALSE;
  for (guint l = 0; l < self->n_layers; l++)
    any |= self->layers[l].kind == L_ACTNORM;
  if (!any)
    return TRUE;
  const gboolean grad_was = fg_tape_get_grad_enabled (tape);
  FgVar *ld = NULL;
  fg_tape_set_grad_enabled (tape, FALSE);
  self->initializing = TRUE;
  FgVar *z = conv_forward (self, tape, x, run, &ld, error);
  self->initializing = FALSE;
  fg_tape_set_grad_enabled (tape, grad_was);
  if (z == NULL)
    {
      g_prefix_error (error, "init: ");
      return FALSE;
    }
  return TRUE;
}

/* ======================================================================================== */
/* Construction                                                                               */
/* ======================================================================================== */

static void
resnet_free (ResNet *R)
{
  g_free (R->b_in_norm);
  g_free (R->b_out_norm);
  g_free (R->b_in_conv);
  g_free (R->b_out_conv);
  g_free (R->skips);
}

static void
conv_destroy (gpointer data)
{
  ConvFlow *self = data;
  if (self == NULL)
    return;
  for (guint l = 0; l < self->n_layers; l++)
    {
      resnet_free (&self->layers[l].net);
      g_free (self->layers[l].mask);
      g_free (self->layers[l].cond_mask.data);
    }
  g_free (self->layers);
  g_clear_pointer (&self->scratch, fg_tape_free);
  g_free (self);
}

typedef struct {
  FgWeightSet *weights;
  FgRng *rng;
  gboolean failed;
  char failed_name[96];
} Builder;

static FgWeight *
add_weight (Builder *b, const char *name, guint ndim, const gsize *shape, gboolean decay)
{
  FgWeight *w = b->failed ? NULL : fg_weight_set_add (b->weights, name, ndim, shape, decay);
  if (w == NULL && !b->failed)
    {
      b->failed = TRUE;
      g_strlcpy (b->failed_name, name, sizeof b->failed_name);
    }
  return w;
}

/* A weight-normalised convolution with PyTorch's Conv2d initialisation, U(±1/√fan_in) for the
 * weight and bias (kaiming_uniform with a = √5), and g = ‖v‖ per output channel (so w = v at
 * the start, as torch.nn.utils.weight_norm). */
static void
add_wn_conv (Builder *b, WnConv *c, const char *prefix, gsize cout, gsize cin, gsize k,
             gboolean bias)
{
  char name[128];
  const float bound = (float) (1.0 / sqrt ((double) (cin * k * k)));
  g_snprintf (name, sizeof name, "%s.weight_v", prefix);
  c->v = add_weight (b, name, 4, (gsize[]){ cout, cin, k, k }, FALSE);
  g_snprintf (name, sizeof name, "%s.weight_g", prefix);
  c->g = add_weight (b, name, 2, (gsize[]){ cout, 1 }, TRUE);
  c->b = NULL;
  if (bias)
    {
      g_snprintf (name, sizeof name, "%s.bias", prefix);
      c->b = add_weight (b, name, 2, (gsize[]){ 1, cout }, FALSE);
    }
  c->pad = (guint) (k / 2);
  if (b->failed)
    return;
  fg_weight_init_uniform (c->v, b->rng, bound);
  if (c->b != NULL)
    fg_weight_init_uniform (c->b, b->rng, bound);
  const gsize K = cin * k * k;
  for (gsize o = 0; o < cout; o++)
    {
      double s = 0.0;
      for (gsize j = 0; j < K; j++)
        s += (double) c->v->value.data[o * K + j] * c->v->value.data[o * K + j];
      c->g->value.data[o] = (float) sqrt (s);
    }
}

static void
add_bn (Builder *b, Bn *n, const char *prefix, gsize C)
{
  char name[128];
  g_snprintf (name, sizeof name, "%s.weight", prefix);
  n->gamma = add_weight (b, name, 2, (gsize[]){ 1, C }, FALSE);
  g_snprintf (name, sizeof name, "%s.bias", prefix);
  n->beta = add_weight (b, name, 2, (gsize[]){ 1, C }, FALSE);
  g_snprintf (name, sizeof name, "%s.running_mean", prefix);
  n->mean = add_weight (b, name, 2, (gsize[]){ 1, C }, FALSE);
  g_snprintf (name, sizeof name, "%s.running_var", prefix);
  n->var = add_weight (b, name, 2, (gsize[]){ 1, C }, FALSE);
  if (b->failed)
    return;
  fg_weight_init_const (n->gamma, 1.0f);
  fg_weight_init_const (n->var, 1.0f);
  n->mean->trainable = FALSE;
  n->var->trainable = FALSE;
}

static void
build_resnet (Builder *b, ResNet *R, const char *prefix, gsize cin, gsize mid, gsize cout,
              guint blocks, gboolean checker)
{
  char name[128];
  R->double_after_norm = checker;
  R->n_blocks = blocks;
  g_snprintf (name, sizeof name, "%s.in_norm", prefix);
  add_bn (b, &R->in_norm, name, cin);
  g_snprintf (name, sizeof name, "%s.in_conv", prefix);
  add_wn_conv (b, &R->in_conv, name, mid, 2 * cin, 3, TRUE);
  g_snprintf (name, sizeof name, "%s.in_skip", prefix);
  add_wn_conv (b, &R->in_skip, name, mid, mid, 1, TRUE);
  R->b_in_norm = g_new0 (Bn, MAX (blocks, 1));
  R->b_out_norm = g_new0 (Bn, MAX (blocks, 1));
  R->b_in_conv = g_new0 (WnConv, MAX (blocks, 1));
  R->b_out_conv = g_new0 (WnConv, MAX (blocks, 1));
  R->skips = g_new0 (WnConv, MAX (blocks, 1));
  for (guint i = 0; i < blocks; i++)
    {
      g_snprintf (name, sizeof name, "%s.blocks.%u.in_norm", prefix, i);
      add_bn (b, &R->b_in_norm[i], name, mid);
      g_snprintf (name, sizeof name, "%s.blocks.%u.in_conv", prefix, i);
      add_wn_conv (b, &R->b_in_conv[i], name, mid, mid, 3, FALSE);
      g_snprintf (name, sizeof name, "%s.blocks.%u.out_norm", prefix, i);
      add_bn (b, &R->b_out_norm[i], name, mid);
      g_snprintf (name, sizeof name, "%s.blocks.%u.out_conv", prefix, i);
      add_wn_conv (b, &R->b_out_conv[i], name, mid, mid, 3, TRUE);
      g_snprintf (name, sizeof name, "%s.skips.%u", prefix, i);
      add_wn_conv (b, &R->skips[i], name, mid, mid, 1, TRUE);
    }
  g_snprintf (name, sizeof name, "%s.out_norm", prefix);
  add_bn (b, &R->out_norm, name, mid);
  g_snprintf (name, sizeof name, "%s.out_conv", prefix);
  add_wn_conv (b, &R->out_conv, name, cout, mid, 1, TRUE);
}

/* A random rotation (Gram–Schmidt of a Gaussian matrix) factored as P·L·U with partial
 * pivoting (Glow's initialisation of the invertible 1×1 convolution). */
static void
init_conv1x1 (Layer *L, FgRng *rng)
{
  const gsize n = L->C;
  g_autofree double *a = g_new (double, n * n);
  g_autofree gsize *rows = g_new (gsize, n), *piv = g_new (gsize, n);
  for (gsize i = 0; i < n * n; i++)
    a[i] = fg_rng_normal (rng);
  /* orthonormalise the rows (modified Gram–Schmidt; a Gaussian matrix is full rank) */
  for (gsize i = 0; i < n; i++)
    {
      for (gsize k = 0; k < i; k++)
        {
          double d = 0.0;
          for (gsize j = 0; j < n; j++)
            d += a[i * n + j] * a[k * n + j];
          for (gsize j = 0; j < n; j++)
            a[i * n + j] -= d * a[k * n + j];
        }
      double s = 0.0;
      for (gsize j = 0; j < n; j++)
        s += a[i * n + j] * a[i * n + j];
      s = 1.0 / sqrt (s);
      for (gsize j = 0; j < n; j++)
        a[i * n + j] *= s;
    }
  /* P A = L U; rows[i] = the row of A that the swaps bring to position i */
  fg_lu_factor (a, n, piv);
  for (gsize i = 0; i < n; i++)
    rows[i] = i;
  for (gsize k = 0; k < n; k++)
    {
      const gsize t = rows[k];
      rows[k] = rows[piv[k]];
      rows[piv[k]] = t;
    }
  /* W[i, :] = (L U)[perm[i], :] with perm the inverse of rows. */
  for (gsize i = 0; i < n; i++)
    L->perm->value.data[rows[i]] = (float) i;
  for (gsize i = 0; i < n; i++)
    for (gsize j = 0; j < n; j++)
      {
        const double v = a[i * n + j];
        if (j < i)
          L->lower->value.data[i * n + j] = (float) v;
        else if (j > i)
          L->upper->value.data[i * n + j] = (float) v;
        else
          {
            L->sign->value.data[i] = v < 0.0 ? -1.0f : 1.0f;
            L->log_s->value.data[i] = (float) log (fabs (v));
          }
      }
}

/* Append a layer of `kind` to self for the running shape (C, H, W), building its weights. */
static gboolean
append_layer (ConvFlow *self, Builder *b, GArray *layers, LayerKind kind, gboolean reverse,
              gsize *C, gsize *H, gsize *W, gsize mid, guint blocks, gsize *z_off, GError **error)
{
  Layer L;
  char prefix[64];
  memset (&L, 0, sizeof L);
  L.kind = kind;
  L.reverse = reverse;
  L.C = *C;
  L.H = *H;
  L.W = *W;
  L.z_before = *z_off;
  g_snprintf (prefix, sizeof prefix, "layer%u", layers->len);
  switch (kind)
    {
    case L_LOGIT:
      break;
    case L_CHECKER:
      {
        const gsize P = *H * *W;
        L.c_ch = 0;
        L.n_ch = *C;
        L.mask = g_new (float, P);
        L.cond_mask = fg_tensor_wrap_2d (g_new (float, *C * P), 1, *C * P);
        for (gsize i = 0; i < *H; i++)
          for (gsize j = 0; j < *W; j++)
            {
              const gboolean cond = ((i + j) % 2 == 1) != reverse; /* b[i, j] = (i + j) mod 2 */
              L.mask[i * *W + j] = cond ? 0.0f : 1.0f;
              for (gsize c = 0; c < *C; c++)
                L.cond_mask.data[c * P + i * *W + j] = cond ? 1.0f : 0.0f;
            }
        char name[96];
        g_snprintf (name, sizeof name, "%s.st_net", prefix);
        build_resnet (b, &L.net, name, *C, mid, 2 * *C, blocks, TRUE);
        g_snprintf (name, sizeof name, "%s.rescale.weight_g", prefix);
        L.rescale = add_weight (b, name, 2, (gsize[]){ 1, *C }, TRUE);
        if (L.rescale != NULL)
          fg_weight_init_const (L.rescale, 1.0f);
        break;
      }
    case L_CHANNEL:
      {
        if (*C % 2 != 0)
          {
            g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                         "realnvp-conv: a channel-wise coupling needs an even number of "
                         "channels, has %" G_GSIZE_FORMAT " (layer %u)",
                         *C, layers->len);
            return FALSE;
          }
        const gsize h = *C / 2;
        /* reverse = F: the first half is transformed, the second conditions */
        L.c_ch = reverse ? h : 0;
        L.c_id = reverse ? 0 : h;
        L.n_ch = L.n_id = h;
        char name[96];
        g_snprintf (name, sizeof name, "%s.st_net", prefix);
        build_resnet (b, &L.net, name, h, mid, 2 * h, blocks, FALSE);
        g_snprintf (name, sizeof name, "%s.rescale.weight_g", prefix);
        L.rescale = add_weight (b, name, 2, (gsize[]){ 1, h }, TRUE);
        if (L.rescale != NULL)
          fg_weight_init_const (L.rescale, 1.0f);
        break;
      }
    case L_SQUEEZE:
      if (*H % 2 != 0 || *W % 2 != 0)
        {
          g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                       "realnvp-conv: cannot squeeze %" G_GSIZE_FORMAT "×%" G_GSIZE_FORMAT
                       " (odd height or width) at layer %u; use fewer scales",
                       *H, *W, layers->len);
          return FALSE;
        }
      *C *= 4;
      *H /= 2;
      *W /= 2;
      break;
    case L_SPLIT:
      if (*C < 2)
        {
          g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                       "realnvp-conv: cannot factor out half of %" G_GSIZE_FORMAT
                       " channel(s) at layer %u",
                       *C, layers->len);
          return FALSE;
        }
      L.keep = *C / 2;
      L.z_offset = *z_off;
      *z_off += (*C - L.keep) * *H * *W;
      *C = L.keep;
      break;
    case L_ACTNORM:
      {
        char name[96];
        g_snprintf (name, sizeof name, "%s.actnorm.bias", prefix);
        L.an_shift = add_weight (b, name, 2, (gsize[]){ 1, *C }, FALSE);
        g_snprintf (name, sizeof name, "%s.actnorm.logs", prefix);
        L.an_logs = add_weight (b, name, 2, (gsize[]){ 1, *C }, FALSE);
        break;
      }
    case L_CONV1X1:
      {
        char name[96];
        const gsize n = *C;
        g_snprintf (name, sizeof name, "%s.conv1x1.perm", prefix);
        L.perm = add_weight (b, name, 2, (gsize[]){ 1, n }, FALSE);
        g_snprintf (name, sizeof name, "%s.conv1x1.sign", prefix);
        L.sign = add_weight (b, name, 2, (gsize[]){ 1, n }, FALSE);
        g_snprintf (name, sizeof name, "%s.conv1x1.lower", prefix);
        L.lower = add_weight (b, name, 2, (gsize[]){ n, n }, FALSE);
        g_snprintf (name, sizeof name, "%s.conv1x1.upper", prefix);
        L.upper = add_weight (b, name, 2, (gsize[]){ n, n }, FALSE);
        g_snprintf (name, sizeof name, "%s.conv1x1.log_s", prefix);
        L.log_s = add_weight (b, name, 2, (gsize[]){ 1, n }, FALSE);
        g_snprintf (name, sizeof name, "%s.conv1x1.bias", prefix);
        L.bias = add_weight (b, name, 2, (gsize[]){ 1, n }, FALSE);
        if (!b->failed)
          {
            L.perm->trainable = FALSE;
            L.sign->trainable = FALSE;
            init_conv1x1 (&L, b->rng);
          }
        break;
      }
    }
  g_array_append_val (layers, L);
  (void) self;
  return TRUE;
}

static gboolean
parse_structure (ConvFlow *self, Builder *b, GArray *layers, const char *spec, gsize *C, gsize *H,
                 gsize *W, gsize mid, guint blocks, gsize *z_off, GError **error)
{
  g_auto (GStrv) tok = g_strsplit (spec, ",", -1);
  for (guint i = 0; tok[i] != NULL; i++)
    {
      const char *t = g_strstrip (tok[i]);
      static const struct { const char *name; LayerKind kind; gboolean reverse; } names[] = {
        { "logit", L_LOGIT, FALSE },     { "checker", L_CHECKER, FALSE },
        { "checker-r", L_CHECKER, TRUE }, { "channel", L_CHANNEL, FALSE },
        { "channel-r", L_CHANNEL, TRUE }, { "squeeze", L_SQUEEZE, FALSE },
        { "split", L_SPLIT, FALSE },     { "actnorm", L_ACTNORM, FALSE },
        { "1x1", L_CONV1X1, FALSE },
      };
      guint k;
      for (k = 0; k < G_N_ELEMENTS (names); k++)
        if (strcmp (t, names[k].name) == 0)
          break;
      if (k == G_N_ELEMENTS (names))
        {
          g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                       "realnvp-conv: structure: unknown layer '%s' (item %u); expected logit, "
                       "checker, checker-r, channel, channel-r, squeeze, split, actnorm or 1x1",
                       t, i + 1);
          return FALSE;
        }
      if (!append_layer (self, b, layers, names[k].kind, names[k].reverse, C, H, W, mid, blocks,
                         z_off, error))
        return FALSE;
    }
  return TRUE;
}

/* A group of three couplings (reverse F, T, F), each preceded by the variant's layers. */
static gboolean
append_group (ConvFlow *self, Builder *b, GArray *layers, LayerKind kind, const char *variant,
              gsize *C, gsize *H, gsize *W, gsize mid, guint blocks, gsize *z_off, GError **error)
{
  for (guint i = 0; i < 3; i++)
    {
      if (strcmp (variant, "actnorm") == 0
          && !append_layer (self, b, layers, L_ACTNORM, FALSE, C, H, W, mid, blocks, z_off, error))
        return FALSE;
      if (strcmp (variant, "affine") != 0
          && !append_layer (self, b, layers, L_CONV1X1, FALSE, C, H, W, mid, blocks, z_off, error))
        return FALSE;
      if (!append_layer (self, b, layers, kind, i == 1, C, H, W, mid, blocks, z_off, error))
        return FALSE;
    }
  return TRUE;
}

static gpointer
conv_create (const FgParams *params, const FgSampleShape *shape, FgWeightSet *weights,
             FgRng *rng, GError **error)
{
  const guint scales = (guint) fg_params_get_int (params, "scales");
  const guint blocks = (guint) fg_params_get_int (params, "blocks");
  gsize mid = (gsize) fg_params_get_int (params, "mid_channels");
  const char *variant = fg_params_get_string (params, "variant");
  const char *structure = fg_params_get_string (params, "structure");
  Builder b = { weights, rng, FALSE, { 0 } };
  gsize C, H, W, z_off = 0;
  gboolean ok = TRUE;

  if (shape->ndim != 3 || fg_sample_shape_numel (shape) == 0)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                   "realnvp-conv: needs image examples C×H×W, the data have %u dimension(s)",
                   shape->ndim);
      return NULL;
    }
  ConvFlow *self = g_new0 (ConvFlow, 1);
  self->C = C = shape->dims[0];
  self->H = H = shape->dims[1];
  self->W = W = shape->dims[2];
  self->D = C * H * W;
  self->dequant_mid = g_strcmp0 (fg_params_get_string (params, "dequant_eval"), "mid") == 0;
  self->bn_momentum = (float) fg_params_get_double (params, "bn_momentum");
  self->bn_eps = (float) fg_params_get_double (params, "bn_eps");
  self->eval_chunk = (gsize) fg_params_get_int (params, "eval_chunk");
  GArray *layers = g_array_new (FALSE, TRUE, sizeof (Layer));

  if (structure != NULL && *structure != '\0')
    ok = parse_structure (self, &b, layers, structure, &C, &H, &W, mid, blocks, &z_off, error);
  else
    {
      if (H % (1u << (scales - 1)) != 0 || W % (1u << (scales - 1)) != 0)
        {
          g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                       "realnvp-conv: scales = %u needs height and width divisible by %u, the "
                       "images are %" G_GSIZE_FORMAT "×%" G_GSIZE_FORMAT,
                       scales, 1u << (scales - 1), H, W);
          ok = FALSE;
        }
      if (ok && fg_params_get_bool (params, "logit"))
        ok = append_layer (self, &b, layers, L_LOGIT, FALSE, &C, &H, &W, mid, blocks, &z_off,
                           error);
      for (guint s = 0; ok && s < scales; s++)
        {
          ok = append_group (self, &b, layers, L_CHECKER, variant, &C, &H, &W, mid, blocks, &z_off,
                             error);
          if (!ok)
            break;
          if (s == scales - 1)
            ok = append_layer (self, &b, layers, L_CHECKER, TRUE, &C, &H, &W, mid, blocks, &z_off,
                               error);
          else
            ok = append_layer (self, &b, layers, L_SQUEEZE, FALSE, &C, &H, &W, mid, blocks,
                               &z_off, error)
                 && append_group (self, &b, layers, L_CHANNEL, variant, &C, &H, &W, 2 * mid,
                                  blocks, &z_off, error)
                 && append_layer (self, &b, layers, L_SPLIT, FALSE, &C, &H, &W, mid, blocks,
                                  &z_off, error);
          mid *= 2;
        }
    }
  self->n_layers = layers->len;
  self->layers = (Layer *) g_array_free (layers, FALSE);
  if (ok && b.failed)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                   "realnvp-conv: cannot add weight '%s' (a name clash in the weight set?)",
                   b.failed_name);
      ok = FALSE;
    }
  if (!ok)
    {
      conv_destroy (self);
      return NULL;
    }
  self->final_offset = z_off;
  self->fC = C;
  self->fH = H;
  self->fW = W;
  g_assert (z_off + C * H * W == self->D);
  return self;
}

/* ======================================================================================== */
/* Partial passes (feature visualisation, paper eq. 8; the flow vtable's optional members)   */
/* ======================================================================================== */

/* Layer ℓ (0 ≤ ℓ ≤ n_layers) is the state after layers [0, ℓ).  For 0 < ℓ < n_layers it is
 * given image-shaped, [N, C′, H_ℓ, W_ℓ]: the activation entering layer ℓ (its C_ℓ channels
 * first), then each piece factored out before ℓ, in order, squeezed down to H_ℓ × W_ℓ (a
 * piece of c channels factored out k squeezes earlier gives 4^k·c channels).  Layer 0 is the
 * input as N×C×H×W, layer n_layers forward's z in the input's shape.  Evaluation passes use
 * the mid-bin dequantisation whatever dequant_eval says, so that
 * inverse_from (forward_to (x, ℓ), ℓ) = x up to round-off. */

static guint
conv_n_layers (gpointer data)
{
  return ((ConvFlow *) data)->n_layers;
}

static gboolean
check_partial_layer (const ConvFlow *self, guint layer, GError **error)
{
  if (layer <= self->n_layers)
    return TRUE;
  g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
               "realnvp-conv: layer %u of a flow with %u layers (expected 0..%u)", layer,
               self->n_layers, self->n_layers);
  return FALSE;
}

/* The squeezes between split layer S and layer `end` (> S). */
static guint
squeezes_between (const ConvFlow *self, guint S, guint end)
{
  guint k = 0;
  for (guint l = S + 1; l < end; l++)
    k += self->layers[l].kind == L_SQUEEZE;
  return k;
}

static FgVar *
conv_forward_to (gpointer data, FgTape *tape, FgVar *x, guint layer, const FgFlowRun *run,
                 GError **error)
{
  ConvFlow *self = data;
  FgFlowRun mid;
  if (!check_partial_layer (self, layer, error))
    return NULL;
  if (run == NULL || !run->train)
    {
      memset (&mid, 0, sizeof mid);
      run = &mid; /* no RNG: the mid-bin dequantisation */
    }
  FgVar *h = forward_until (self, tape, x, layer, run, NULL, error);
  if (h == NULL || layer == self->n_layers || !state_is_packed (self, layer))
    return h;
  const Layer *E = &self->layers[layer];
  FgVar *img = unpack_piece (tape, &h->value, E->z_before, E->C, E->H, E->W);
  for (guint l = 0; l < layer; l++)
    {
      const Layer *S = &self->layers[l];
      if (S->kind != L_SPLIT)
        continue;
      FgVar *p = unpack_piece (tape, &h->value, S->z_offset, S->C - S->keep, S->H, S->W);
      for (guint k = squeezes_between (self, l, layer); k > 0; k--)
        p = fg_op_squeeze2d (tape, p);
      img = fg_op_concat (tape, img, p);
    }
  if (img == NULL)
    g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "realnvp-conv: forward_to failed (see the log)");
  return img;
}

static FgVar *
conv_inverse_from (gpointer data, FgTape *tape, FgVar *h, guint layer, GError **error)
{
  ConvFlow *self = data;
  if (!check_partial_layer (self, layer, error))
    return NULL;
  if (h == NULL || fg_tensor_cols (&h->value) != self->D)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                   "realnvp-conv: activation of %" G_GSIZE_FORMAT " values, built for %"
                   G_GSIZE_FORMAT, h ? fg_tensor_cols (&h->value) : 0, self->D);
      return NULL;
    }
  if (layer == self->n_layers || !state_is_packed (self, layer))
    return inverse_from (self, tape, h, layer, error);
  const Layer *E = &self->layers[layer];
  const gsize N = fg_tensor_rows (&h->value), P = E->H * E->W;
  FgVar *img = h;
  if (h->value.ndim != 4 || h->value.shape[2] != E->H || h->value.shape[3] != E->W)
    img = fg_op_reshape (tape, h, 4, (gsize[]){ N, self->D / P, E->H, E->W });
  FgVar **pieces = fg_tape_alloc (tape, (self->n_layers + 1) * sizeof (FgVar *));
  guint n = 0;
  gsize ch = E->C;
  for (guint l = 0; l < layer; l++)
    {
      const Layer *S = &self->layers[l];
      if (S->kind != L_SPLIT)
        continue;
      const guint k = squeezes_between (self, l, layer);
      const gsize c = (S->C - S->keep) << (2 * k);
      FgVar *p = fg_op_slice (tape, img, ch, c);
      for (guint i = 0; i < k; i++)
        p = fg_op_unsqueeze2d (tape, p);
      pieces[n++] = p;
      ch += c;
    }
  pieces[n++] = fg_op_slice (tape, img, 0, E->C);
  for (guint i = 0; i < n; i++)
    if (pieces[i] == NULL)
      {
        g_set_error (error, FG_ERROR, FG_ERROR_FAILED,
                     "realnvp-conv: inverse_from failed (see the log)");
        return NULL;
      }
  FgVar *packed = pack_op (tape, pieces, n, 2, (gsize[]){ N, self->D });
  return inverse_from (self, tape, packed, layer, error);
}

static const FgFlowVTable conv_vtable = {
  .struct_size = sizeof (FgFlowVTable),
  .create = conv_create,
  .forward = conv_forward,
  .inverse = conv_inverse,
  .destroy = conv_destroy,
  .init = conv_init,
  .n_layers = conv_n_layers,
  .forward_to = conv_forward_to,
  .inverse_from = conv_inverse_from,
};

static const FgComponent conv_components[] = {
  { FG_KIND_FLOW, "realnvp-conv",
    "multi-scale convolutional RealNVP for images (the authors' MNIST/CIFAR flow)", conv_params,
    &conv_vtable, { 0 } },
  { 0 },
};

static const FgPluginInfo conv_info = {
  .abi_version = FG_PLUGIN_ABI_VERSION,
  .struct_size = sizeof (FgPluginInfo),
  .name = "realnvp-conv",
  .version = PACKAGE_VERSION,
  .license = "MIT",
  .description = "Multi-scale RealNVP with ResNet coupling networks, for images",
  .components = conv_components,
};

FG_PLUGIN_DEFINE (conv_info)
