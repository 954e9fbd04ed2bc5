/* SPDX-License-Identifier: MIT */
/* flowgmm — per-channel ops of convolutional networks: batch normalisation (with an activation
 * fused in), weight normalisation, a per-channel affine map, and constant-filled nodes.
 *
 * A 4-D tensor N×C×H×W has C channels of H·W contiguous values per row; a 2-D [N, C] tensor is
 * the same with H·W = 1.  Per-channel statistics are accumulated in double.
 */
#include "config.h"

#include <flowgmm/vecmath.h>

#include "numeric/numeric-private.h"

/* Channels and plane size of an activation: N×C×H×W or [N, C]. */
static gboolean
channel_geometry (const FgTensor *x, gsize *C, gsize *P)
{
  if (x->ndim == 4)
    {
      *C = x->shape[1];
      *P = x->shape[2] * x->shape[3];
      return TRUE;
    }
  if (x->ndim == 2)
    {
      *C = x->shape[1];
      *P = 1;
      return TRUE;
    }
  return FALSE;
}

/* A per-channel parameter: C values, contiguous (any shape). */
static gboolean
is_channel_vector (const FgVar *v, gsize C)
{
  return v == NULL || (fg_tensor_numel (&v->value) == C && fg_tensor_is_contiguous (&v->value));
}

/* ======================================================================================== */
/* Batch normalisation                                                                        */
/* ======================================================================================== */

typedef struct {
  gsize C, P;
  float *mean, *invstd; /* C each: the statistics the forward pass used */
  FgActivation act;
  gboolean train;
  gboolean has_gamma, has_beta;
  const FgGroup *group; /* data parallel: the statistics are the whole batch's */
  double M;             /* elements per channel in the whole batch */
} BatchNormSaved;

/* Σ d and Σ d·x̂ (x̂ = (x − μ)·σ⁻¹) of one plane, in double with four accumulators each: a
 * single chain of double adds would cost its full latency per element. */
static void
dz_sums (const float *restrict d, const float *restrict x, float mu, float is, gsize P,
         double *sum_d, double *sum_dx)
{
  double a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;
  gsize j = 0;
  for (; j + 4 <= P; j += 4)
    {
      a0 += d[j];
      a1 += d[j + 1];
      a2 += d[j + 2];
      a3 += d[j + 3];
      b0 += (double) d[j] * ((x[j] - mu) * is);
      b1 += (double) d[j + 1] * ((x[j + 1] - mu) * is);
      b2 += (double) d[j + 2] * ((x[j + 2] - mu) * is);
      b3 += (double) d[j + 3] * ((x[j + 3] - mu) * is);
    }
  for (; j < P; j++)
    {
      a0 += d[j];
      b0 += (double) d[j] * ((x[j] - mu) * is);
    }
  *sum_d += (a0 + a1) + (a2 + a3);
  *sum_dx += (b0 + b1) + (b2 + b3);
}

/* Σ (x − μ)² of one plane in double, four accumulators. */
static double
sq_dev (const float *restrict x, double mu, gsize P)
{
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  gsize j = 0;
  for (; j + 4 <= P; j += 4)
    {
      const double d0 = x[j] - mu, d1 = x[j + 1] - mu, d2 = x[j + 2] - mu, d3 = x[j + 3] - mu;
      s0 += d0 * d0;
      s1 += d1 * d1;
      s2 += d2 * d2;
      s3 += d3 * d3;
    }
  for (; j < P; j++)
    {
      const double d0 = x[j] - mu;
      s0 += d0 * d0;
    }
  return (s0 + s1) + (s2 + s3);
}

/* Two passes over the planes: the per-channel sums of dz = g · act'(y) and dz · x̂, then dx.
 * dz is recomputed in the second pass into one plane of scratch rather than kept: a batch-sized
 * buffer per batch norm would stay in the tape's arena until the step ends. */
static void
batch_norm_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  const BatchNormSaved *s = saved;
  const FgTensor *X = &in[0]->value, *Y = &out->value, *G = &out->grad;
  const gsize N = fg_tensor_rows (X), C = s->C, P = s->P;
  guint k = 1;
  FgVar *gamma_v = s->has_gamma ? in[k++] : NULL;
  FgVar *beta_v = s->has_beta ? in[k++] : NULL;
  FgTensor *dX = fg_tape_grad (tape, in[0]);
  FgTensor *dG = gamma_v ? fg_tape_grad (tape, gamma_v) : NULL;
  FgTensor *dB = beta_v ? fg_tape_grad (tape, beta_v) : NULL;
  float *d = fg_tape_alloc_floats (tape, MAX (P, 1));
  double *sum_dz = fg_tape_alloc (tape, 4 * C * sizeof (double)), *sum_dzx = sum_dz + C;
  double *all_dz = sum_dz + 2 * C, *all_dzx = sum_dz + 3 * C; /* over the group */
  const double M = s->M;

  memset (sum_dz, 0, 2 * C * sizeof (double));
  if (dG != NULL || dB != NULL || (dX != NULL && s->train))
    for (gsize n = 0; n < N; n++)
      for (gsize c = 0; c < C; c++)
        {
          const float *restrict x = fg_tensor_row (X, n) + c * P;
          const float mu = s->mean[c], is = s->invstd[c];
          _fg_act_grad (s->act, 0.0f, d, fg_tensor_row (G, n) + c * P,
                        fg_tensor_row (Y, n) + c * P, P);
          double a = 0.0, b = 0.0;
          dz_sums (d, x, mu, is, P, &a, &b);
          sum_dz[c] += a;
          sum_dzx[c] += b;
        }
  /* γ and β get this slice's share (the trainer sums the group's); x̂'s gradient needs the
   * whole batch's means of dz and dz·x̂. */
  if (dG != NULL)
    for (gsize c = 0; c < C; c++)
      dG->data[c] += (float) sum_dzx[c];
  if (dB != NULL)
    for (gsize c = 0; c < C; c++)
      dB->data[c] += (float) sum_dz[c];
  if (dX == NULL)
    return;
  memcpy (all_dz, sum_dz, 2 * C * sizeof (double));
  if (s->train && s->group != NULL)
    {
      g_autoptr (GError) error = NULL;
      if (!fg_group_sum_doubles (s->group, all_dz, 2 * C, &error))
        g_critical ("batch norm backward: %s", error->message);
    }
  for (gsize n = 0; n < N; n++)
    for (gsize c = 0; c < C; c++)
      {
        const float *restrict x = fg_tensor_row (X, n) + c * P;
        float *restrict dx = fg_tensor_row (dX, n) + c * P;
        const float gm = gamma_v ? gamma_v->value.data[c] : 1.0f;
        const float is = s->invstd[c], mu = s->mean[c];
        const float scale = gm * is;
        _fg_act_grad (s->act, 0.0f, d, fg_tensor_row (G, n) + c * P,
                      fg_tensor_row (Y, n) + c * P, P);
        if (s->train)
          {
            /* dx = γ·σ⁻¹ · (dz − mean(dz) − x̂ · mean(dz · x̂)) */
            const float m1 = (float) (all_dz[c] / M), m2 = (float) (all_dzx[c] / M);
            for (gsize j = 0; j < P; j++)
              dx[j] += scale * (d[j] - m1 - (x[j] - mu) * is * m2);
          }
        else
          for (gsize j = 0; j < P; j++)
            dx[j] += scale * d[j];
      }
}

/**
 * fg_op_batch_norm2d:
 * @tape: a tape
 * @x: (nullable): N×C×H×W (or [N, C]); rows may be strided
 * @gamma: (nullable): C scales (any shape, contiguous), or NULL for 1
 * @beta: (nullable): C shifts, or NULL for 0
 * @running_mean: (nullable): C values, updated in place in training
 * @running_var: (nullable): C values, updated in place in training
 * @momentum: weight of the new batch in the running statistics (PyTorch: 0.1)
 * @eps: added to the variance (PyTorch: 1e-5)
 * @train: TRUE: normalise with the batch's statistics (biased variance) and update the running
 *   ones (unbiased variance), as torch.nn.BatchNorm2d in training; FALSE: normalise with the
 *   running statistics, which must then be given
 * @act: activation applied to the result (FG_ACT_NONE for none; leaky-relu uses slope 0)
 *
 * y = act (γ · (x − μ) / √(σ² + ε) + β) per channel, as one node.  The running statistics are
 * updated on every training pass, also with gradients disabled (as PyTorch does in train mode
 * under no_grad).
 *
 * Returns: (transfer none) (nullable): the same shape as @x.
 */
FgVar *
fg_op_batch_norm2d (FgTape *tape, FgVar *x, FgVar *gamma, FgVar *beta, FgTensor *running_mean,
                    FgTensor *running_var, float momentum, float eps, gboolean train,
                    FgActivation act)
{
  return fg_op_batch_norm2d_group (tape, x, gamma, beta, running_mean, running_var, momentum, eps,
                                   train, act, NULL);
}

/**
 * fg_op_batch_norm2d_group:
 * @tape: a tape
 * @x: (nullable): this member's slice of the batch, N×C×H×W (or [N, C])
 * @gamma: (nullable): C scales
 * @beta: (nullable): C shifts
 * @running_mean: (nullable): C values, updated in place in training (the same on every member)
 * @running_var: (nullable): C values, updated in place in training
 * @momentum: weight of the new batch in the running statistics
 * @eps: added to the variance
 * @train: normalise with the whole batch's statistics and update the running ones
 * @act: activation applied to the result
 * @group: (nullable): the data-parallel group whose members hold the other slices
 *
 * fg_op_batch_norm2d () over a batch split across @group: the per-channel count and sum, then
 * the sum of squared deviations from the whole batch's mean, are summed over the group
 * (fg_group_sum_doubles: rank order, the same bits on every member), so every member
 * normalises its slice as one process would normalise the whole batch; the backward pass sums
 * Σdz and Σdz·x̂ the same way for the input's gradient, and gives γ and β this slice's
 * gradient.  Collective in training.
 *
 * Returns: (transfer none) (nullable): the same shape as @x; %NULL when a group sum failed.
 */
FgVar *
fg_op_batch_norm2d_group (FgTape *tape, FgVar *x, FgVar *gamma, FgVar *beta,
                          FgTensor *running_mean, FgTensor *running_var, float momentum,
                          float eps, gboolean train, FgActivation act, const FgGroup *group)
{
  g_return_val_if_fail (tape != NULL, NULL);
  if (x == NULL)
    return NULL;
  const FgTensor *X = &x->value;
  gsize C = 0, P = 0;
  gboolean ok = channel_geometry (X, &C, &P) && is_channel_vector (gamma, C)
                && is_channel_vector (beta, C)
                && (running_mean == NULL || fg_tensor_numel (running_mean) == C)
                && (running_var == NULL || fg_tensor_numel (running_var) == C)
                && (train || (running_mean != NULL && running_var != NULL))
                && (!train || fg_tensor_rows (X) * P > 0) && eps >= 0.0f;
  if (!ok)
    {
      char b1[64];
      g_critical ("fg_op_batch_norm2d: x %s with gamma/beta/running statistics that are not C "
                  "values, no running statistics in evaluation, or an empty training batch",
                  _fg_tape_shape_str (X, b1, sizeof b1));
      return NULL;
    }

  const gsize N = fg_tensor_rows (X);
  FgVar *inputs[3] = { x, NULL, NULL };
  guint n_in = 1;
  if (gamma != NULL)
    inputs[n_in++] = gamma;
  if (beta != NULL)
    inputs[n_in++] = beta;
  BatchNormSaved *s;
  FgVar *out = fg_tape_op_new (tape, X->ndim, X->shape, inputs, n_in, batch_norm_backward,
                               sizeof *s, (gpointer *) &s);
  s->C = C;
  s->P = P;
  s->act = act;
  s->train = train;
  s->has_gamma = gamma != NULL;
  s->has_beta = beta != NULL;
  s->mean = fg_tape_alloc_floats (tape, 2 * C);
  s->invstd = s->mean + C;
  s->group = group;
  s->M = (double) (N * P);

  if (train)
    {
      /* Per channel: the sum, then (given the mean) the squared deviations; over a group, each
       * summed over its members before use.  stats[C] holds the element count. */
      double *stats = fg_tape_alloc (tape, (2 * C + 1) * sizeof (double));
      double *sq = stats + C + 1;
      g_autoptr (GError) error = NULL;
      for (gsize c = 0; c < C; c++)
        {
          stats[c] = 0.0;
          for (gsize n = 0; n < N; n++)
            stats[c] += fg_sum_f64 (fg_tensor_row (X, n) + c * P, P);
        }
      stats[C] = s->M;
      if (!fg_group_sum_doubles (group, stats, C + 1, &error))
        {
          g_critical ("fg_op_batch_norm2d_group: %s", error->message);
          return NULL;
        }
      s->M = stats[C];
      for (gsize c = 0; c < C; c++)
        {
          const double mu = stats[c] / s->M;
          sq[c] = 0.0;
          for (gsize n = 0; n < N; n++)
            sq[c] += sq_dev (fg_tensor_row (X, n) + c * P, mu, P);
        }
      if (!fg_group_sum_doubles (group, sq, C, &error))
        {
          g_critical ("fg_op_batch_norm2d_group: %s", error->message);
          return NULL;
        }
      const double M = s->M;
      for (gsize c = 0; c < C; c++)
        {
          const double mu = stats[c] / M;
          const double var = sq[c] / M;
          s->mean[c] = (float) mu;
          s->invstd[c] = (float) (1.0 / sqrt (var + eps));
          if (running_mean != NULL)
            running_mean->data[c]
                = (float) ((1.0 - momentum) * running_mean->data[c] + momentum * mu);
          if (running_var != NULL)
            running_var->data[c]
                = (float) ((1.0 - momentum) * running_var->data[c]
                           + momentum * (M > 1.0 ? var * M / (M - 1.0) : var));
        }
    }
  else
    for (gsize c = 0; c < C; c++)
      {
        s->mean[c] = running_mean->data[c];
        s->invstd[c] = (float) (1.0 / sqrt ((double) running_var->data[c] + eps));
      }

  for (gsize n = 0; n < N; n++)
    for (gsize c = 0; c < C; c++)
      {
        const float *restrict xr = fg_tensor_row (X, n) + c * P;
        float *restrict y = fg_tensor_row (&out->value, n) + c * P;
        const float gm = gamma ? gamma->value.data[c] : 1.0f;
        const float scale = gm * s->invstd[c];
        const float shift = (beta ? beta->value.data[c] : 0.0f) - s->mean[c] * scale;
        for (gsize j = 0; j < P; j++)
          y[j] = xr[j] * scale + shift;
        _fg_act_forward (act, 0.0f, y, P);
      }
  return out;
}

/* ======================================================================================== */
/* Weight normalisation                                                                       */
/* ======================================================================================== */

typedef struct {
  float *inv_norm; /* rows: 1 / ‖v_o‖ */
} WeightNormSaved;

static void
weight_norm_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  const WeightNormSaved *s = saved;
  const FgTensor *V = &in[0]->value, *Gv = &in[1]->value, *G = &out->grad;
  const gsize R = fg_tensor_rows (V), K = fg_tensor_cols (V);
  FgTensor *dV = fg_tape_grad (tape, in[0]);
  FgTensor *dGv = fg_tape_grad (tape, in[1]);
  for (gsize o = 0; o < R; o++)
    {
      const float *restrict v = fg_tensor_row (V, o);
      const float *restrict g = fg_tensor_row (G, o);
      const float in_ = s->inv_norm[o];
      /* u = v / ‖v‖; dg = Σ G·u; dv = (g/‖v‖) · (G − u · dg) */
      const double dot = _fg_dot_f64 (g, v, K) * in_;
      if (dGv != NULL)
        dGv->data[o] += (float) dot;
      if (dV != NULL)
        {
          float *restrict dv = fg_tensor_row (dV, o);
          const float scale = Gv->data[o] * in_;
          const float proj = (float) dot * in_;
          for (gsize j = 0; j < K; j++)
            dv[j] += scale * (g[j] - v[j] * proj);
        }
    }
}

/**
 * fg_op_weight_norm:
 * @tape: a tape
 * @v: (nullable): the direction, [O, ...] (one row per output channel, e.g. a conv weight
 *   [Cout, Cin, kh, kw] or a linear weight [O, K]); rows may be strided
 * @g: (nullable): the magnitudes, O values (any shape, contiguous)
 *
 * w[o, :] = g[o] · v[o, :] / ‖v[o, :]‖ (torch.nn.utils.weight_norm with dim = 0).  A zero row of
 * v gives a zero row (and no gradient) rather than NaN.
 *
 * Returns: (transfer none) (nullable): @v's shape, contiguous.
 */
FgVar *
fg_op_weight_norm (FgTape *tape, FgVar *v, FgVar *g)
{
  g_return_val_if_fail (tape != NULL, NULL);
  if (v == NULL || g == NULL)
    return NULL;
  const FgTensor *V = &v->value;
  const gsize R = fg_tensor_rows (V), K = fg_tensor_cols (V);
  if (!is_channel_vector (g, R))
    {
      char b1[64], b2[64];
      g_critical ("fg_op_weight_norm: v %s needs %" G_GSIZE_FORMAT " magnitudes, g is %s",
                  _fg_tape_shape_str (V, b1, sizeof b1), R,
                  _fg_tape_shape_str (&g->value, b2, sizeof b2));
      return NULL;
    }
  FgVar *inputs[2] = { v, g };
  WeightNormSaved *s;
  FgVar *out = fg_tape_op_new (tape, V->ndim, V->shape, inputs, 2, weight_norm_backward,
                               sizeof *s, (gpointer *) &s);
  s->inv_norm = fg_tape_alloc_floats (tape, MAX (R, 1));
  for (gsize o = 0; o < R; o++)
    {
      const float *restrict vr = fg_tensor_row (V, o);
      float *restrict w = fg_tensor_row (&out->value, o);
      const double nrm = sqrt (_fg_dot_f64 (vr, vr, K));
      const float in_ = nrm > 0.0 ? (float) (1.0 / nrm) : 0.0f;
      const float scale = g->value.data[o] * in_;
      s->inv_norm[o] = in_;
      for (gsize j = 0; j < K; j++)
        w[j] = vr[j] * scale;
    }
  return out;
}

/* ======================================================================================== */
/* Per-channel affine map                                                                     */
/* ======================================================================================== */

typedef struct {
  gsize C, P;
  gboolean has_scale, has_shift;
} ChannelAffineSaved;

static void
channel_affine_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  const ChannelAffineSaved *s = saved;
  const FgTensor *X = &in[0]->value, *G = &out->grad;
  const gsize N = fg_tensor_rows (X), C = s->C, P = s->P;
  guint k = 1;
  FgVar *scale = s->has_scale ? in[k++] : NULL;
  FgVar *shift = s->has_shift ? in[k++] : NULL;
  FgTensor *dX = fg_tape_grad (tape, in[0]);
  FgTensor *dS = scale ? fg_tape_grad (tape, scale) : NULL;
  FgTensor *dT = shift ? fg_tape_grad (tape, shift) : NULL;
  for (gsize n = 0; n < N; n++)
    for (gsize c = 0; c < C; c++)
      {
        const float *restrict g = fg_tensor_row (G, n) + c * P;
        const float *restrict x = fg_tensor_row (X, n) + c * P;
        if (dS != NULL)
          dS->data[c] += (float) _fg_dot_f64 (g, x, P);
        if (dT != NULL)
          dT->data[c] += (float) fg_sum_f64 (g, P);
        if (dX != NULL)
          {
            float *restrict dx = fg_tensor_row (dX, n) + c * P;
            const float a = scale ? scale->value.data[c] : 1.0f;
            for (gsize j = 0; j < P; j++)
              dx[j] += a * g[j];
          }
      }
}

/**
 * fg_op_channel_affine:
 * @tape: a tape
 * @x: (nullable): N×C×H×W (or [N, C]); rows may be strided
 * @scale: (nullable): C values (any shape, contiguous), or NULL for 1
 * @shift: (nullable): C values, or NULL for 0
 *
 * y[n, c, ·] = x[n, c, ·] · scale[c] + shift[c] (e.g. ActNorm, or batch norm with fixed
 * statistics).
 *
 * Returns: (transfer none) (nullable): @x's shape, contiguous.
 */
FgVar *
fg_op_channel_affine (FgTape *tape, FgVar *x, FgVar *scale, FgVar *shift)
{
  g_return_val_if_fail (tape != NULL, NULL);
  if (x == NULL)
    return NULL;
  const FgTensor *X = &x->value;
  gsize C = 0, P = 0;
  if (!channel_geometry (X, &C, &P) || !is_channel_vector (scale, C)
      || !is_channel_vector (shift, C))
    {
      char b1[64];
      g_critical ("fg_op_channel_affine: x %s needs N×C×H×W or [N, C] and C scales and shifts",
                  _fg_tape_shape_str (X, b1, sizeof b1));
      return NULL;
    }
  FgVar *inputs[3] = { x, NULL, NULL };
  guint n_in = 1;
  if (scale != NULL)
    inputs[n_in++] = scale;
  if (shift != NULL)
    inputs[n_in++] = shift;
  ChannelAffineSaved *s;
  FgVar *out = fg_tape_op_new (tape, X->ndim, X->shape, inputs, n_in, channel_affine_backward,
                               sizeof *s, (gpointer *) &s);
  s->C = C;
  s->P = P;
  s->has_scale = scale != NULL;
  s->has_shift = shift != NULL;
  for (gsize n = 0; n < fg_tensor_rows (X); n++)
    for (gsize c = 0; c < C; c++)
      {
        const float *restrict xr = fg_tensor_row (X, n) + c * P;
        float *restrict y = fg_tensor_row (&out->value, n) + c * P;
        const float a = scale ? scale->value.data[c] : 1.0f;
        const float b = shift ? shift->value.data[c] : 0.0f;
        for (gsize j = 0; j < P; j++)
          y[j] = xr[j] * a + b;
      }
  return out;
}

/* ======================================================================================== */
/* Constant nodes                                                                             */
/* ======================================================================================== */

/**
 * fg_op_full:
 * @tape: a tape
 * @ndim: 1..4
 * @shape: @ndim sizes
 * @value: the value of every element
 *
 * A leaf without gradient filled with @value, in arena memory (e.g. the zero log-det a flow
 * starts from).
 *
 * Returns: (transfer none): the node.
 */
FgVar *
fg_op_full (FgTape *tape, guint ndim, const gsize *shape, float value)
{
  FgVar *v = fg_tape_empty (tape, ndim, shape);
  if (v == NULL)
    return NULL;
  float *restrict d = v->value.data;
  FG_SIMD_FOR (j, fg_tensor_numel (&v->value), d[j] = value);
  return v;
}

/**
 * fg_op_zeros:
 * @tape: a tape
 * @ndim: 1..4
 * @shape: @ndim sizes
 *
 * Returns: (transfer none): a leaf of zeros without gradient (fg_op_full () with 0).
 */
FgVar *
fg_op_zeros (FgTape *tape, guint ndim, const gsize *shape)
{
  return fg_op_full (tape, ndim, shape, 0.0f);
}
