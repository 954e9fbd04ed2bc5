/* SPDX-License-Identifier: MIT */
/* flowgmm — flow plugin "realnvp-mlp": RealNVP affine couplings with MLP scale/shift networks,
 * for tabular and low-dimensional data (the authors' RealNVPTabular, REFERENCE §0 and §1.1).
 *
 * Layer l has a constant mask b (1 = identity/conditioning coordinate) and computes
 *
 *   st     = NN_l(x ⊙ b)                      [N, 2D]: st[:, 0:D] = s_raw, st[:, D:2D] = t
 *   s      = w ⊙ tanh(s_raw) ⊙ (1 − b)        w: a learnable [D] scale starting at 1
 *   y      = x ⊙ b + ((x + t) ⊙ exp(s)) ⊙ (1 − b)      (translation before scaling)
 *   logdet = Σ_j s_j                          over the transformed coordinates only
 *
 * with NN = Linear(D→k) → act → Dropout(p) → [Linear(k→k) → act] × inner_layers → Linear(k→2D)
 * and inverse x_change = y_change ⊙ exp(−s) − t.  Linear layers and their activation are one
 * fused node each (fg_op_linear_act).
 *
 * How it is computed (the function is exactly the one above; only dead work is skipped):
 *  - Only live weights are stored.  x ⊙ b · W = x_id · W[id rows], so the first layer's weight
 *    holds the n_id rows of the authors' [D, k] at identity coordinates; the outputs of the
 *    authors' [k, 2D] last layer at identity coordinates are masked away, so its weight and bias
 *    hold the 2·n_ch columns that feed s and t at transformed coordinates (s_raw, then t).  The
 *    rows and columns left out never change any output or any other gradient (their own
 *    gradient is exactly 0, and AdamW's decoupled decay touches nothing else), so the model is
 *    the authors' function with the same initial values (drawn at full shape with the authors'
 *    fan-in, then cut); it just does not carry 41 % of dead parameters at D = 768 through the
 *    gradient norm and the optimizer.  Layers with nothing to transform have no weights.
 *  - The first hidden layer, its ReLU and the dropout are one node (fg_op_linear_act_dropout:
 *    the same values and mask as the two ops).
 *  - One fused op per coupling does tanh, the rescale, the masking, (x + t)·exp(s) and the
 *    log-det sum (in double) with one hand-written backward.  Its output is [N, D + 1]: the
 *    new x in columns 0..D-1 and the running log-det in column D, which the next coupling
 *    reads and extends, so the log-det needs no extra nodes.  Its rows run in blocks on the
 *    core's threads (fg_tape_parallel_run), with results independent of the thread count.
 *  - tanh and exp use the branch-free polynomial kernels of <flowgmm/vecmath.h> (≤ 2 ulp) that
 *    gcc vectorizes, instead of libm calls; exp clamps its argument to [−87.3, 88.3] (so a
 *    diverging s gives 2.2e38, not inf).
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include <flowgmm/flowgmm.h>

/* Vectorize the elementwise loops with gcc's ordinary cost model (see core/numeric/numeric-private.h).
 * no-trapping-math lets gcc if-convert the clamps and selects of <flowgmm/vecmath.h> (nothing
 * here reads floating-point exception flags); the results are the same.  fp-contract=off keeps
 * the AVX-512/AVX2 clones of the hot loops (CLONES below) from fusing multiplies and adds, so
 * that they compute exactly what the baseline code does. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize ("vect-cost-model=dynamic", "no-trapping-math", "fp-contract=off")
#endif

/* After the pragma: its kernels must share the options of their callers to be inlined. */
#include <flowgmm/vecmath.h>

/* ======================================================================================== */
/* Parameters                                                                                 */
/* ======================================================================================== */

static const FgParamSpec realnvp_params[] = {
  FG_PARAM_SPEC_INT ("layers", "4", 1, 1000,
                     "number of coupling layers (authors: 10 for UCI, 7 for text, 5 for 2-D toys)"),
  FG_PARAM_SPEC_INT ("hidden", "128", 1, 1 << 20,
                     "hidden width k of each scale/shift network (authors: 256 UCI, 1024 text, "
                     "512 toys)"),
  FG_PARAM_SPEC_INT ("inner_layers", "1", 0, 100,
                     "Linear(k→k) layers after the first hidden layer (the authors' num_layers, "
                     "hard-coded to 1)"),
  FG_PARAM_SPEC_CHOICE ("activation", "relu", "relu|tanh|leaky-relu|softplus",
                        "activation of the scale/shift networks (leaky-relu slope 0.01)"),
  FG_PARAM_SPEC_DOUBLE ("dropout", "0.5", 0.0, 0.95,
                        "dropout after the first hidden layer, training only (authors' tabular "
                        "0.5; toys 0)"),
  FG_PARAM_SPEC_CHOICE ("mask", "halves", "halves|checkerboard",
                        "halves: the first floor(D/2) coordinates condition in even layers, the "
                        "rest in odd ones (authors); checkerboard: even indices condition in even "
                        "layers, odd ones in odd layers"),
  FG_PARAM_SPEC_BOOL ("zero_init", "false",
                      "initialise the last layer of each network to zero (identity flow at start)"),
  FG_PARAM_SPEC_BOOL ("rescale", "true",
                      "learn the per-coordinate scale w in s = w·tanh(s_raw) (starts at 1); "
                      "false keeps w = 1"),
  FG_PARAM_SPEC_END,
};

typedef enum { ACT_RELU, ACT_TANH, ACT_LEAKY_RELU, ACT_SOFTPLUS } Activation;

typedef struct {
  gsize n_id, n_ch;
  guint32 *id;       /* identity coordinates, increasing */
  guint32 *ch;       /* transformed coordinates, increasing */
  gboolean id_contiguous, ch_contiguous;
  FgWeight *w_in, *b_in;   /* [max(n_id, 1), k] (rows at id of the authors' [D, k]), [1, k] */
  FgWeight **w_hid, **b_hid; /* inner × [k, k], [1, k] */
  FgWeight *w_out, *b_out; /* [k, 2·n_ch], [1, 2·n_ch]: s_raw, then t, at ch */
  FgWeight *rescale;       /* [1, n_ch]: w at ch */
} Coupling;

typedef struct {
  gsize D;
  guint L, k, inner;
  Activation act;
  float dropout;
  Coupling *layers;
} RealNvp;

/* e^x with x clamped to [−87.3, 88.3], so that a diverging scale gives 2.2e38 (the run's NaN
 * and divergence checks then stop it) rather than inf·0 = NaN inside the coupling. */
static inline float
clamped_expf (float x)
{
  x = x < -87.3f ? -87.3f : x;
  return fg_expf (x > 88.3f ? 88.3f : x);
}

/* ======================================================================================== */
/* Index ops: columns or rows of a tensor picked by an index list                             */
/* ======================================================================================== */

typedef struct {
  const guint32 *idx;
  gsize n;
} GatherSaved;

/* Length of the run of consecutive indices starting at idx[c]. */
static inline gsize
run_length (const guint32 *idx, gsize c, gsize n)
{
  gsize r = 1;
  while (c + r < n && idx[c + r] == idx[c] + r)
    r++;
  return r;
}

static void
gather_cols_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  const GatherSaved *s = saved;
  FgTensor *da = fg_tape_grad (tape, in[0]);
  if (da == NULL)
    return;
  for (gsize i = 0; i < fg_tensor_rows (&out->grad); i++)
    {
      const float *g = fg_tensor_row (&out->grad, i);
      float *d = fg_tensor_row (da, i);
      for (gsize c = 0; c < s->n;)
        {
          const gsize r = run_length (s->idx, c, s->n);
          float *restrict dd = d + s->idx[c];
          const float *restrict gg = g + c;
          for (gsize j = 0; j < r; j++)
            dd[j] += gg[j];
          c += r;
        }
    }
}

/* out[i, c] = a[i, idx[c]] (a 2-D, any ld); idx must outlive the tape step.  Runs of
 * consecutive indices (the halves mask gives one or two) are copied as blocks. */
static FgVar *
gather_cols (FgTape *tape, FgVar *a, const guint32 *idx, gsize n)
{
  GatherSaved *s;
  gsize shape[2];
  FgVar *out;
  if (a == NULL)
    return NULL;
  shape[0] = fg_tensor_rows (&a->value);
  shape[1] = n;
  out = fg_tape_op_new (tape, 2, shape, &a, 1, gather_cols_backward, sizeof *s, (gpointer *) &s);
  if (out == NULL)
    return NULL;
  s->idx = idx;
  s->n = n;
  for (gsize i = 0; i < shape[0]; i++)
    {
      const float *x = fg_tensor_row (&a->value, i);
      float *y = out->value.data + i * n;
      for (gsize c = 0; c < n;)
        {
          const gsize r = run_length (idx, c, n);
          memcpy (y + c, x + idx[c], r * sizeof (float));
          c += r;
        }
    }
  return out;
}

/* ======================================================================================== */
/* The fused coupling op                                                                      */
/* ======================================================================================== */

typedef struct {
  const Coupling *C;
  gsize D;
  gboolean has_ld; /* the input carries a running log-det in column D */
  float *th;       /* N × n_ch tanh(s_raw), for backward */
  float *e;        /* N × n_ch exp(s) */
} CouplingSaved;

/* Rows are handed to the core's threads in blocks of this many; the backward pass sums the
 * rescale's gradient per block and then the blocks in order, so that the result does not
 * depend on the number of threads. */
#define COUPLING_BLOCK 32

/* The hot loops are also compiled for AVX-512 and AVX2 (picked at load time); fp-contract is
 * off (pragma above), so every version computes the same values. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__ELF__)         \
    && defined(__GLIBC__) && __GNUC__ >= 8
#define CLONES __attribute__ ((target_clones ("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

/* One row on compact arrays: th = tanh(sr), e = exp(w·th), y = (x + t)·e; returns Σ w·th,
 * summed in double from `s` (n floats of scratch) by fg_sum_f64, so that both loops
 * vectorize. */
CLONES static double
coupling_row (gsize n, const float *restrict x, const float *restrict sr, const float *restrict t,
              const float *restrict w, float *restrict y, float *restrict th, float *restrict e,
              float *restrict s)
{
  for (gsize c = 0; c < n; c++)
    {
      const float h = fg_tanhf (sr[c]);
      const float sc = w[c] * h;
      const float ex = clamped_expf (sc);
      th[c] = h;
      e[c] = ex;
      s[c] = sc;
      y[c] = (x[c] + t[c]) * ex;
    }
  return fg_sum_f64 (s, n);
}

/* The backward of one row on compact arrays (g, y: the transformed coordinates of the row's
 * gradient and output): dt = g·e, ds_raw = (g·y + gld)·w·(1 − th²) written (dst_fresh) or
 * added into dst (NULL: not wanted), dx = g·e into dxc, and dw_acc += (g·y + gld)·th. */
CLONES static void
coupling_row_backward (gsize n, const float *restrict g, const float *restrict y, float gld,
                       const float *restrict th, const float *restrict e,
                       const float *restrict w, float *restrict dst, gboolean dst_fresh,
                       float *restrict dxc, double *restrict dw_acc)
{
  if (dst != NULL)
    {
      float *restrict dt = dst + n;
      if (dst_fresh)
        for (gsize c = 0; c < n; c++)
          {
            const float gs = g[c] * y[c] + gld;
            dt[c] = g[c] * e[c];
            dst[c] = gs * w[c] * (1.0f - th[c] * th[c]);
          }
      else
        for (gsize c = 0; c < n; c++)
          {
            const float gs = g[c] * y[c] + gld;
            dt[c] += g[c] * e[c];
            dst[c] += gs * w[c] * (1.0f - th[c] * th[c]);
          }
    }
  if (dw_acc != NULL)
    for (gsize c = 0; c < n; c++)
      dw_acc[c] += (double) (g[c] * y[c] + gld) * th[c];
  if (dxc != NULL)
    for (gsize c = 0; c < n; c++)
      dxc[c] = g[c] * e[c];
}

typedef struct {
  const CouplingSaved *s;
  const FgTensor *G, *Y;
  FgTensor *dx, *dst;
  gboolean dx_fresh, dst_fresh; /* write, not add (the buffers are not zeroed) */
  const float *wc;      /* w at the transformed coordinates */
  double *dw_blocks;    /* n_blocks × n, or NULL */
  float *scratch;       /* per task: 3·n floats */
  gsize N, n_blocks;
} CouplingBwdJob;

static void
coupling_bwd_task (gpointer data, guint t, guint n_tasks)
{
  const CouplingBwdJob *j = data;
  const CouplingSaved *s = j->s;
  const Coupling *C = s->C;
  const gsize D = s->D, n = C->n_ch;
  float *gc = j->scratch + 3 * n * t, *yc = gc + n, *dxc = yc + n;
  const gsize b0 = j->n_blocks * t / n_tasks, b1 = j->n_blocks * (t + 1) / n_tasks;
  for (gsize b = b0; b < b1; b++)
    {
      double *dw_acc = j->dw_blocks != NULL ? j->dw_blocks + b * n : NULL;
      if (dw_acc != NULL)
        memset (dw_acc, 0, n * sizeof (double));
      for (gsize i = b * COUPLING_BLOCK; i < MIN (j->N, (b + 1) * COUPLING_BLOCK); i++)
        {
          const float *g = fg_tensor_row (j->G, i);
          const float *y = fg_tensor_row (j->Y, i);
          const float gld = g[D];
          const float *gcp = g + C->ch[0], *ycp = y + C->ch[0];
          if (!C->ch_contiguous)
            {
              for (gsize c = 0; c < n; c++)
                {
                  gc[c] = g[C->ch[c]];
                  yc[c] = y[C->ch[c]];
                }
              gcp = gc;
              ycp = yc;
            }
          float *d = j->dx != NULL ? fg_tensor_row (j->dx, i) : NULL;
          coupling_row_backward (n, gcp, ycp, gld, s->th + i * n, s->e + i * n, j->wc,
                                 j->dst != NULL ? fg_tensor_row (j->dst, i) : NULL,
                                 j->dst_fresh, d != NULL ? dxc : NULL, dw_acc);
          if (d != NULL && j->dx_fresh)
            {
              /* every element of the row: the identity coordinates, the transformed ones and
               * the log-det column */
              if (C->id_contiguous)
                memcpy (d + C->id[0], g + C->id[0], C->n_id * sizeof (float));
              else
                for (gsize c = 0; c < C->n_id; c++)
                  d[C->id[c]] = g[C->id[c]];
              if (C->ch_contiguous)
                memcpy (d + C->ch[0], dxc, n * sizeof (float));
              else
                for (gsize c = 0; c < n; c++)
                  d[C->ch[c]] = dxc[c];
              if (s->has_ld)
                d[D] = gld;
            }
          else if (d != NULL)
            {
              for (gsize c = 0; c < C->n_id; c++)
                d[C->id[c]] += g[C->id[c]];
              if (C->ch_contiguous)
                {
                  float *restrict dd = d + C->ch[0];
                  for (gsize c = 0; c < n; c++)
                    dd[c] += dxc[c];
                }
              else
                for (gsize c = 0; c < n; c++)
                  d[C->ch[c]] += dxc[c];
              if (s->has_ld)
                d[D] += gld;
            }
        }
    }
}

/* G = dL/dout [N, D+1] (column D: the log-det), per transformed coordinate with gs = dL/ds:
 *   gs       = g_y·y + g_ld                     (∂y/∂s = (x + t)·e = y)
 *   dx       = g_y·e,  dt = g_y·e
 *   ds_raw   = gs·w·(1 − th²),  dw = Σ_rows gs·th
 * identity coordinates pass g through; the incoming log-det gets g_ld.  Rows in blocks over
 * the core's threads. */
static void
coupling_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  const CouplingSaved *s = saved;
  const Coupling *C = s->C;
  const gsize n = C->n_ch, N = fg_tensor_rows (&out->value);
  FgTensor *dw = fg_tape_grad (tape, in[2]);
  CouplingBwdJob j;

  j.s = s;
  j.G = &out->grad;
  j.Y = &out->value;
  /* Every element of dx and dst is written below: a new buffer need not be zeroed. */
  j.dx = fg_tape_grad_fresh (tape, in[0], &j.dx_fresh);
  j.dst = fg_tape_grad_fresh (tape, in[1], &j.dst_fresh);
  j.wc = in[2]->value.data;
  j.N = N;
  j.n_blocks = (N + COUPLING_BLOCK - 1) / COUPLING_BLOCK;
  j.dw_blocks = dw != NULL ? fg_tape_alloc (tape, MAX (j.n_blocks * n, 1) * sizeof (double))
                           : NULL;
  const guint tasks = (guint) MIN ((gsize) fg_tape_parallel_tasks ((double) N * n * 3.0),
                                   MAX (j.n_blocks, 1));
  j.scratch = fg_tape_alloc_floats (tape, MAX (tasks * 3 * n, 1));
  fg_tape_parallel_run (tasks, coupling_bwd_task, &j);
  if (dw != NULL)
    for (gsize c = 0; c < n; c++)
      {
        double acc = 0.0;
        for (gsize b = 0; b < j.n_blocks; b++)
          acc += j.dw_blocks[b * n + c];
        dw->data[c] += (float) acc;
      }
}

typedef struct {
  const CouplingSaved *s;
  const FgTensor *X, *ST;
  float *y;            /* N × (D + 1) */
  const float *wc;
  float *scratch;      /* per task: 5·n floats */
  gboolean keep;       /* th and e kept per row (for backward) */
  gsize N;
} CouplingFwdJob;

static void
coupling_fwd_task (gpointer data, guint t, guint n_tasks)
{
  const CouplingFwdJob *j = data;
  const CouplingSaved *s = j->s;
  const Coupling *C = s->C;
  const gsize D = s->D, n = C->n_ch;
  float *xc = j->scratch + 5 * n * t, *yc = xc + n, *sc = yc + n, *tmp = sc + n;
  const gsize n_blocks = (j->N + COUPLING_BLOCK - 1) / COUPLING_BLOCK;
  const gsize r0 = MIN (j->N, n_blocks * t / n_tasks * COUPLING_BLOCK);
  const gsize r1 = MIN (j->N, n_blocks * (t + 1) / n_tasks * COUPLING_BLOCK);
  for (gsize i = r0; i < r1; i++)
    {
      const float *xr = fg_tensor_row (j->X, i);
      float *yr = j->y + i * (D + 1);
      const float *sr = fg_tensor_row (j->ST, i);
      /* without backward, one row of th and of e per task */
      float *th = j->keep ? s->th + i * n : tmp;
      float *e = j->keep ? s->e + i * n : tmp + n;
      double acc;
      /* the identity coordinates pass through; the transformed ones are written below */
      if (C->id_contiguous)
        memcpy (yr + C->id[0], xr + C->id[0], C->n_id * sizeof (float));
      else
        for (gsize c = 0; c < C->n_id; c++)
          yr[C->id[c]] = xr[C->id[c]];
      if (C->ch_contiguous)
        acc = coupling_row (n, xr + C->ch[0], sr, sr + n, j->wc, yr + C->ch[0], th, e, sc);
      else
        {
          for (gsize c = 0; c < n; c++)
            xc[c] = xr[C->ch[c]];
          acc = coupling_row (n, xc, sr, sr + n, j->wc, yc, th, e, sc);
          for (gsize c = 0; c < n; c++)
            yr[C->ch[c]] = yc[c];
        }
      yr[D] = (float) ((s->has_ld ? (double) xr[D] : 0.0) + acc);
    }
}

/* x: [N, D] or [N, D+1] (has_ld), st: [N, 2·n_ch] (s_raw then t at the transformed
 * coordinates), w: [1, n_ch] (the rescale at them) -> [N, D+1].  Rows in blocks over the core's
 * threads. */
static FgVar *
coupling_op (FgTape *tape, const Coupling *C, gsize D, FgVar *x, gboolean has_ld, FgVar *st,
             FgVar *w)
{
  CouplingSaved *s;
  FgVar *inputs[3] = { x, st, w };
  gsize shape[2];
  FgVar *out;
  const gsize n = C->n_ch;
  if (x == NULL || st == NULL || w == NULL)
    return NULL;
  const gsize N = fg_tensor_rows (&x->value);
  shape[0] = N;
  shape[1] = D + 1;
  out = fg_tape_op_new (tape, 2, shape, inputs, 3, coupling_backward, sizeof *s, (gpointer *) &s);
  if (out == NULL)
    return NULL;
  s->C = C;
  s->D = D;
  s->has_ld = has_ld;
  /* Kept for backward only when recorded. */
  const gboolean keep = out->requires_grad;
  s->th = keep ? fg_tape_alloc_floats (tape, MAX (N * n, 1)) : NULL;
  s->e = keep ? fg_tape_alloc_floats (tape, MAX (N * n, 1)) : NULL;
  const float *wc = w->value.data;
  const gsize n_blocks = (N + COUPLING_BLOCK - 1) / COUPLING_BLOCK;
  const guint tasks = (guint) MIN ((gsize) fg_tape_parallel_tasks ((double) N * n * 8.0),
                                   MAX (n_blocks, 1));
  CouplingFwdJob j = { s, &x->value, &st->value, out->value.data, wc,
                       fg_tape_alloc_floats (tape, MAX (tasks * 5 * n, 1)), keep, N };
  fg_tape_parallel_run (tasks, coupling_fwd_task, &j);
  return out;
}

/* The inverse coupling (evaluation only: no backward).  y: [N, D], st as above -> [N, D]. */
static FgVar *
coupling_inverse_op (FgTape *tape, const Coupling *C, gsize D, FgVar *y, FgVar *st, FgVar *w)
{
  FgVar *inputs[3] = { y, st, w };
  gsize shape[2];
  FgVar *out;
  const gsize n = C->n_ch;
  if (y == NULL || st == NULL || w == NULL)
    return NULL;
  shape[0] = fg_tensor_rows (&y->value);
  shape[1] = D;
  out = fg_tape_op_new (tape, 2, shape, inputs, 3, NULL, 0, NULL);
  if (out == NULL)
    return NULL;
  for (gsize i = 0; i < shape[0]; i++)
    {
      const float *yr = fg_tensor_row (&y->value, i);
      const float *sr = fg_tensor_row (&st->value, i);
      float *xr = out->value.data + i * D;
      memcpy (xr, yr, D * sizeof (float));
      for (gsize c = 0; c < n; c++)
        {
          const guint32 j = C->ch[c];
          const float s = w->value.data[c] * fg_tanhf (sr[c]);
          xr[j] = yr[j] * clamped_expf (-s) - sr[n + c];
        }
    }
  return out;
}

/* [N, D+1] -> z with `shape` (contiguous): drop the log-det column. */
static void
unpack_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  const gsize D = fg_tensor_cols (&out->grad);
  FgTensor *d = fg_tape_grad (tape, in[0]);
  if (d == NULL)
    return;
  for (gsize i = 0; i < fg_tensor_rows (&out->grad); i++)
    {
      const float *restrict g = fg_tensor_row (&out->grad, i);
      float *restrict dr = fg_tensor_row (d, i);
      for (gsize j = 0; j < D; j++)
        dr[j] += g[j];
    }
}

static FgVar *
unpack_op (FgTape *tape, FgVar *packed, guint ndim, const gsize *shape)
{
  FgVar *out;
  if (packed == NULL)
    return NULL;
  out = fg_tape_op_new (tape, ndim, shape, &packed, 1, unpack_backward, 0, NULL);
  if (out == NULL)
    return NULL;
  const gsize D = fg_tensor_cols (&out->value);
  for (gsize i = 0; i < fg_tensor_rows (&out->value); i++)
    memcpy (fg_tensor_row (&out->value, i), fg_tensor_row (&packed->value, i),
            D * sizeof (float));
  return out;
}

/* ======================================================================================== */
/* The flow                                                                                   */
/* ======================================================================================== */

static FgActivation
fused_activation (Activation act)
{
  switch (act)
    {
    case ACT_TANH:
      return FG_ACT_TANH;
    case ACT_LEAKY_RELU:
      return FG_ACT_LEAKY_RELU;
    case ACT_SOFTPLUS:
      return FG_ACT_SOFTPLUS;
    case ACT_RELU:
    default:
      return FG_ACT_RELU;
    }
}

/* act(x·W + b) as one fused node (leaky-relu slope 0.01, PyTorch's default). */
static FgVar *
linear_act (FgTape *tape, Activation act, FgVar *x, FgVar *w, FgVar *b)
{
  return fg_op_linear_act (tape, x, w, b, fused_activation (act), 0.01f);
}

/* dropout(act(x·W + b)) in training, act(x·W + b) otherwise: one fused node for ReLU (the same
 * values and mask as the two ops). */
static FgVar *
linear_act_dropout (const RealNvp *self, FgTape *tape, FgVar *x, FgVar *w, FgVar *b,
                    gboolean train, FgRng *rng)
{
  return fg_op_linear_act_dropout (tape, x, w, b, fused_activation (self->act), 0.01f,
                                   self->dropout, rng, train && self->dropout > 0.0f);
}

/* st = NN(x ⊙ b) at the transformed coordinates: [N, 2·n_ch].  x: [N, ≥ D] (first D columns). */
static FgVar *
st_net (RealNvp *self, FgTape *tape, const Coupling *C, FgVar *x, gboolean train, FgRng *rng)
{
  const gsize N = fg_tensor_rows (&x->value);
  FgVar *h, *w_in = fg_tape_weight (tape, C->w_in), *b_in = fg_tape_weight (tape, C->b_in);

  if (C->n_id == 0)
    {
      /* x ⊙ b = 0: the first layer gives act(bias) for every row (a zero row times any W). */
      FgVar *zeros = fg_tape_empty_2d (tape, N, 1);
      memset (zeros->value.data, 0, N * sizeof (float));
      h = linear_act_dropout (self, tape, zeros, w_in, b_in, train, rng);
    }
  else
    h = linear_act_dropout (self, tape,
                            C->id_contiguous ? fg_op_slice (tape, x, C->id[0], C->n_id)
                                             : gather_cols (tape, x, C->id, C->n_id),
                            w_in, b_in, train, rng);
  for (guint m = 0; m < self->inner; m++)
    h = linear_act (tape, self->act, h, fg_tape_weight (tape, C->w_hid[m]),
                    fg_tape_weight (tape, C->b_hid[m]));
  return fg_op_linear (tape, h, fg_tape_weight (tape, C->w_out), fg_tape_weight (tape, C->b_out));
}

/* The first n_layers couplings on [N, D] input x.  The output carries the running log-det as
 * an extra column once a coupling has run (*has_ld); before that it is x itself. */
static FgVar *
run_couplings (RealNvp *self, FgTape *tape, FgVar *x, guint n_layers, gboolean train, FgRng *rng,
               gboolean *has_ld)
{
  FgVar *cur = x;
  *has_ld = FALSE;
  for (guint l = 0; l < n_layers; l++)
    {
      const Coupling *C = &self->layers[l];
      if (C->n_ch == 0)
        continue; /* nothing transformed: the identity, log-det 0 */
      cur = coupling_op (tape, C, self->D, cur, *has_ld, st_net (self, tape, C, cur, train, rng),
                         fg_tape_weight (tape, C->rescale));
      *has_ld = TRUE;
    }
  return cur;
}

static FgVar *
realnvp_forward (gpointer data, FgTape *tape, FgVar *x, const FgFlowRun *run, FgVar **logdet,
                 GError **error)
{
  RealNvp *self = data;
  const gboolean train = run != NULL && run->train;
  FgRng *rng = run != NULL ? run->rng : NULL;
  FgVar *x2 = x, *cur;
  gboolean has_ld = FALSE;
  gsize N;

  *logdet = NULL;
  if (x == NULL || fg_tensor_cols (&x->value) != self->D)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                   "realnvp-mlp: input of %" G_GSIZE_FORMAT " features, built for %" G_GSIZE_FORMAT,
                   x ? fg_tensor_cols (&x->value) : 0, self->D);
      return NULL;
    }
  if (train && self->dropout > 0.0f && rng == NULL)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "realnvp-mlp: training run without an RNG");
      return NULL;
    }
  N = fg_tensor_rows (&x->value);
  if (x->value.ndim != 2)
    x2 = fg_op_reshape (tape, x, 2, (gsize[]){ N, self->D });
  cur = run_couplings (self, tape, x2, self->L, train, rng, &has_ld);
  if (!has_ld)
    {
      FgVar *zero = fg_tape_empty_2d (tape, N, 1);
      memset (zero->value.data, 0, N * sizeof (float));
      *logdet = zero;
      return x;
    }
  *logdet = fg_op_slice (tape, cur, self->D, 1);
  cur = unpack_op (tape, cur, x->value.ndim, x->value.shape);
  if (cur == NULL || *logdet == NULL)
    {
      *logdet = NULL;
      g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "realnvp-mlp: forward failed (see the log)");
      return NULL;
    }
  return cur;
}

static gboolean
check_layer (const RealNvp *self, FgVar *v, guint layer, const char *what, GError **error)
{
  if (v == NULL || fg_tensor_cols (&v->value) != self->D)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                   "realnvp-mlp: %s of %" G_GSIZE_FORMAT " features, built for %" G_GSIZE_FORMAT,
                   what, v ? fg_tensor_cols (&v->value) : 0, self->D);
      return FALSE;
    }
  if (layer > self->L)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                   "realnvp-mlp: layer %u of a flow with %u coupling layers (expected 0..%u)",
                   layer, self->L, self->L);
      return FALSE;
    }
  return TRUE;
}

/* x = f_{:layer}^{-1}(h): the couplings layer−1, ..., 0 inverted, on h of x's shape. */
static FgVar *
realnvp_inverse_from (gpointer data, FgTape *tape, FgVar *h, guint layer, GError **error)
{
  RealNvp *self = data;
  FgVar *cur;
  gsize N;
  if (!check_layer (self, h, layer, "activation", error))
    return NULL;
  N = fg_tensor_rows (&h->value);
  cur = h->value.ndim == 2 ? h : fg_op_reshape (tape, h, 2, (gsize[]){ N, self->D });
  for (guint l = layer; l-- > 0;)
    {
      const Coupling *C = &self->layers[l];
      if (C->n_ch == 0)
        continue;
      cur = coupling_inverse_op (tape, C, self->D, cur, st_net (self, tape, C, cur, FALSE, NULL),
                                 fg_tape_weight (tape, C->rescale));
    }
  if (cur != NULL && h->value.ndim != 2)
    cur = fg_op_reshape (tape, cur, h->value.ndim, h->value.shape);
  if (cur == NULL)
    g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "realnvp-mlp: inverse failed (see the log)");
  return cur;
}

static FgVar *
realnvp_inverse (gpointer data, FgTape *tape, FgVar *z, GError **error)
{
  RealNvp *self = data;
  if (!check_layer (self, z, self->L, "latent", error))
    return NULL;
  return realnvp_inverse_from (data, tape, z, self->L, error);
}

static guint
realnvp_n_layers (gpointer data)
{
  return ((RealNvp *) data)->L;
}

/* h = f_{:layer}(x), the activations after the first `layer` couplings, in x's shape (layer 0:
 * x; layer L: f(x)).  Evaluation mode unless run->train. */
static FgVar *
realnvp_forward_to (gpointer data, FgTape *tape, FgVar *x, guint layer, const FgFlowRun *run,
                    GError **error)
{
  RealNvp *self = data;
  const gboolean train = run != NULL && run->train;
  FgRng *rng = run != NULL ? run->rng : NULL;
  gboolean has_ld;
  FgVar *x2, *cur;
  gsize N;
  if (!check_layer (self, x, layer, "input", error))
    return NULL;
  if (train && self->dropout > 0.0f && rng == NULL)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "realnvp-mlp: training run without an RNG");
      return NULL;
    }
  N = fg_tensor_rows (&x->value);
  x2 = x->value.ndim == 2 ? x : fg_op_reshape (tape, x, 2, (gsize[]){ N, self->D });
  cur = run_couplings (self, tape, x2, layer, train, rng, &has_ld);
  if (!has_ld)
    return x;
  cur = unpack_op (tape, cur, x->value.ndim, x->value.shape);
  if (cur == NULL)
    g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "realnvp-mlp: forward failed (see the log)");
  return cur;
}

/* Fill C's index lists from its mask b (TRUE = identity). */
static void
coupling_set_mask (Coupling *C, const gboolean *b, gsize D)
{
  C->id = g_new (guint32, MAX (D, 1));
  C->ch = g_new (guint32, MAX (D, 1));
  C->n_id = C->n_ch = 0;
  for (gsize j = 0; j < D; j++)
    if (b[j])
      C->id[C->n_id++] = (guint32) j;
    else
      C->ch[C->n_ch++] = (guint32) j;
  C->id_contiguous = C->n_id > 0 && C->id[C->n_id - 1] - C->id[0] + 1 == C->n_id;
  C->ch_contiguous = C->n_ch > 0 && C->ch[C->n_ch - 1] - C->ch[0] + 1 == C->n_ch;
}

static void
realnvp_destroy (gpointer data)
{
  RealNvp *self = data;
  if (self == NULL)
    return;
  for (guint l = 0; l < self->L; l++)
    {
      Coupling *C = &self->layers[l];
      g_free (C->id);
      g_free (C->ch);
      g_free (C->w_hid);
      g_free (C->b_hid);
    }
  g_free (self->layers);
  g_free (self);
}

/* A weight with PyTorch's Linear default initialisation U(±1/√fan_in), drawn at the authors'
 * full shape [full_rows, full_cols] (the same draws as theirs, in order) and cut to the rows
 * `rows` (NULL: all) and the columns `cols` (NULL: all) that can affect the output. */
static FgWeight *
add_linear (FgWeightSet *weights, const char *name, gsize full_rows, gsize full_cols,
            const guint32 *rows, gsize n_rows, const guint32 *cols, gsize n_cols, gsize fan_in,
            gboolean zero, FgRng *rng)
{
  if (rows == NULL)
    n_rows = full_rows;
  if (cols == NULL)
    n_cols = full_cols;
  FgWeight *w = fg_weight_set_add_2d (weights, name, n_rows, n_cols, TRUE);
  if (w == NULL)
    return NULL;
  if (zero)
    {
      fg_weight_init_const (w, 0.0f);
      return w;
    }
  const float bound = (float) (1.0 / sqrt ((double) fan_in));
  if (rows == NULL && cols == NULL)
    {
      fg_weight_init_uniform (w, rng, bound);
      return w;
    }
  g_autofree float *full = g_new (float, full_rows * full_cols);
  fg_rng_fill_uniform (rng, full, full_rows * full_cols, -bound, bound);
  for (gsize r = 0; r < n_rows; r++)
    {
      const float *src = full + (rows != NULL ? rows[r] : r) * full_cols;
      float *dst = w->value.data + r * n_cols;
      for (gsize c = 0; c < n_cols; c++)
        dst[c] = src[cols != NULL ? cols[c] : c];
    }
  return w;
}

static gpointer
realnvp_create (const FgParams *params, const FgSampleShape *shape, FgWeightSet *weights,
                FgRng *rng, GError **error)
{
  const gsize D = fg_sample_shape_numel (shape);
  const char *act = fg_params_get_string (params, "activation");
  const gboolean checker = g_strcmp0 (fg_params_get_string (params, "mask"), "checkerboard") == 0;
  const gboolean zero = fg_params_get_bool (params, "zero_init");
  const gboolean rescale = fg_params_get_bool (params, "rescale");
  g_autofree gboolean *b = NULL;
  RealNvp *self;

  if (D == 0)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM, "realnvp-mlp: empty input");
      return NULL;
    }
  if (D > G_MAXUINT32 / 2)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_UNSUPPORTED,
                   "realnvp-mlp: %" G_GSIZE_FORMAT " features is too many", D);
      return NULL;
    }
  self = g_new0 (RealNvp, 1);
  self->D = D;
  self->L = (guint) fg_params_get_int (params, "layers");
  self->k = (guint) fg_params_get_int (params, "hidden");
  self->inner = (guint) fg_params_get_int (params, "inner_layers");
  self->dropout = (float) fg_params_get_double (params, "dropout");
  self->act = g_strcmp0 (act, "tanh") == 0         ? ACT_TANH
              : g_strcmp0 (act, "leaky-relu") == 0 ? ACT_LEAKY_RELU
              : g_strcmp0 (act, "softplus") == 0   ? ACT_SOFTPLUS
                                                   : ACT_RELU;
  self->layers = g_new0 (Coupling, self->L);
  b = g_new (gboolean, D);

  for (guint l = 0; l < self->L; l++)
    {
      Coupling *C = &self->layers[l];
      const gsize split = D / 2;
      char name[64];
      for (gsize j = 0; j < D; j++)
        b[j] = checker ? (j + l) % 2 == 0 : (l % 2 == 0 ? j < split : j >= split);
      coupling_set_mask (C, b, D);

      if (C->n_ch == 0)
        continue; /* the identity: no weights */
      /* The authors' last layer has 2D outputs (s_raw, then t); s and t at ch are kept. */
      g_autofree guint32 *out_cols = g_new (guint32, 2 * C->n_ch);
      for (gsize c = 0; c < C->n_ch; c++)
        {
          out_cols[c] = C->ch[c];
          out_cols[C->n_ch + c] = (guint32) D + C->ch[c];
        }
      /* With nothing to condition on the first layer's input is a zero column: one dead row
       * keeps the product well formed. */
      static const guint32 row0 = 0;
      g_snprintf (name, sizeof name, "coupling%u.in.weight", l);
      C->w_in = add_linear (weights, name, D, self->k, C->n_id > 0 ? C->id : &row0,
                            MAX (C->n_id, 1), NULL, 0, D, FALSE, rng);
      g_snprintf (name, sizeof name, "coupling%u.in.bias", l);
      C->b_in = add_linear (weights, name, 1, self->k, NULL, 0, NULL, 0, D, FALSE, rng);
      C->w_hid = g_new0 (FgWeight *, MAX (self->inner, 1));
      C->b_hid = g_new0 (FgWeight *, MAX (self->inner, 1));
      for (guint m = 0; m < self->inner; m++)
        {
          g_snprintf (name, sizeof name, "coupling%u.hidden%u.weight", l, m);
          C->w_hid[m] = add_linear (weights, name, self->k, self->k, NULL, 0, NULL, 0, self->k,
                                    FALSE, rng);
          g_snprintf (name, sizeof name, "coupling%u.hidden%u.bias", l, m);
          C->b_hid[m] = add_linear (weights, name, 1, self->k, NULL, 0, NULL, 0, self->k, FALSE,
                                    rng);
        }
      g_snprintf (name, sizeof name, "coupling%u.out.weight", l);
      C->w_out = add_linear (weights, name, self->k, 2 * D, NULL, 0, out_cols, 2 * C->n_ch,
                             self->k, zero, rng);
      g_snprintf (name, sizeof name, "coupling%u.out.bias", l);
      C->b_out = add_linear (weights, name, 1, 2 * D, NULL, 0, out_cols, 2 * C->n_ch, self->k,
                             zero, rng);
      g_snprintf (name, sizeof name, "coupling%u.rescale", l);
      C->rescale = fg_weight_set_add_2d (weights, name, 1, C->n_ch, TRUE);
      if (C->w_in == NULL || C->b_in == NULL || C->w_out == NULL || C->b_out == NULL
          || C->rescale == NULL)
        {
          g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                       "realnvp-mlp: cannot add weight '%s' (a name clash in the weight set?)",
                       name);
          realnvp_destroy (self);
          return NULL;
        }
      fg_weight_init_const (C->rescale, 1.0f);
      C->rescale->trainable = rescale;
    }
  return self;
}

static const FgFlowVTable realnvp_vtable = {
  .struct_size = sizeof (FgFlowVTable),
  .create = realnvp_create,
  .forward = realnvp_forward,
  .inverse = realnvp_inverse,
  .destroy = realnvp_destroy,
  .n_layers = realnvp_n_layers,
  .forward_to = realnvp_forward_to,
  .inverse_from = realnvp_inverse_from,
};

static const FgComponent realnvp_components[] = {
  { FG_KIND_FLOW, "realnvp-mlp",
    "RealNVP affine couplings with MLP scale/shift nets (tabular and 2-D data)", realnvp_params,
    &realnvp_vtable, { 0 } },
  { 0 },
};

static const FgPluginInfo realnvp_info = {
  .abi_version = FG_PLUGIN_ABI_VERSION,
  .struct_size = sizeof (FgPluginInfo),
  .name = "realnvp-mlp",
  .version = PACKAGE_VERSION,
  .license = "MIT",
  .description = "RealNVP flow for tabular data: masked affine couplings with MLP networks",
  .components = realnvp_components,
};

FG_PLUGIN_DEFINE (realnvp_info)
