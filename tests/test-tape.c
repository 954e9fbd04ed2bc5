/* SPDX-License-Identifier: MIT */
/* flowgmm tests — the autodiff tape and every op in tape.h.
 *
 * Following ggml's test-backend-ops, each op case checks
 *   (1) its value against a naive double-precision reference written here (plain loops, no
 *       BLAS): max |out − ref| / max(1, |ref|) <= the case's tolerance (1e-6 for elementwise
 *       ops, 1e-5 where a float dot product or sgemm is involved), and
 *   (2) its gradient against central finite differences of L = Σ r ⊙ op(inputs) for every
 *       input (gradcheck.c: h = 1e-2 · max(1, |x|), |analytic − numeric| <= 1e-3 + 1e-2 · |g|
 *       unless the case says otherwise).
 * Inputs can be fed as strided views (a slice of dimension 1 of a wider weight), so every op is
 * also checked on ld > cols and the slice's gradient must not leak outside its range.
 * Then the tape's own properties: errors, NULL propagation, grad disabled, reset, arena reuse
 * with no heap allocation after warm-up, dropout, custom ops and an MLP end to end.
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include <flowgmm/flowgmm.h>

#include "gradcheck.h"

/* ---- Dense double tensors for the references ------------------------------------------------ */

typedef struct {
  guint ndim;
  gsize s[4];
} Shp;

#define M(r, c) { 2, { (r), (c), 1, 1 } }
#define T4(n, c, h, w) { 4, { (n), (c), (h), (w) } }

typedef struct {
  Shp shape;
  double *d;
} Dense;

static gsize
shp_rows (const Shp *s)
{
  return s->s[0];
}

static gsize
shp_cols (const Shp *s)
{
  gsize c = 1;
  for (guint i = 1; i < s->ndim; i++)
    c *= s->s[i];
  return c;
}

static Dense *
dense_new (const Shp *shape)
{
  Dense *t = g_new0 (Dense, 1);
  t->shape = *shape;
  for (guint i = shape->ndim; i < 4; i++)
    t->shape.s[i] = 1;
  t->d = g_new0 (double, MAX (shp_rows (shape) * shp_cols (shape), 1));
  return t;
}

static void
dense_free (Dense *t)
{
  if (t != NULL)
    g_free (t->d);
  g_free (t);
}

static Dense *
dense_from_tensor (const FgTensor *t)
{
  Shp s = { t->ndim, { 1, 1, 1, 1 } };
  for (guint i = 0; i < t->ndim; i++)
    s.s[i] = t->shape[i];
  Dense *d = dense_new (&s);
  const gsize rows = fg_tensor_rows (t), cols = fg_tensor_cols (t);
  for (gsize i = 0; i < rows; i++)
    for (gsize j = 0; j < cols; j++)
      d->d[i * cols + j] = fg_tensor_row (t, i)[j];
  return d;
}

static double
at2 (const Dense *t, gsize i, gsize j)
{
  return t->d[i * shp_cols (&t->shape) + j];
}

static double *
at4 (const Dense *t, gsize n, gsize c, gsize y, gsize x)
{
  return &t->d[((n * t->shape.s[1] + c) * t->shape.s[2] + y) * t->shape.s[3] + x];
}

/* Broadcast b against a: same shape, [1, cols], [rows, 1] or [1, 1]. */
static double
bcast (const Dense *a, const Dense *b, gsize i, gsize j)
{
  const gsize br = shp_rows (&b->shape), bc = shp_cols (&b->shape);
  if (br == shp_rows (&a->shape) && bc == shp_cols (&a->shape))
    return at2 (b, i, j);
  if (br == 1 && bc == 1)
    return b->d[0];
  if (br == 1)
    return b->d[j];
  return b->d[i];
}

/* Largest |out − ref| / max(1, |ref|); also checks the shape. */
static double
compare (const FgTensor *out, const Dense *ref, double *nmse)
{
  g_assert_cmpuint (out->ndim, ==, ref->shape.ndim);
  for (guint i = 0; i < out->ndim; i++)
    g_assert_cmpuint (out->shape[i], ==, ref->shape.s[i]);
  const gsize rows = fg_tensor_rows (out), cols = fg_tensor_cols (out);
  double worst = 0, num = 0, den = 0;
  for (gsize i = 0; i < rows; i++)
    for (gsize j = 0; j < cols; j++)
      {
        const double o = fg_tensor_row (out, i)[j], r = at2 (ref, i, j);
        const double e = fabs (o - r) / MAX (1.0, fabs (r));
        worst = isnan (o) != isnan (r) ? INFINITY : MAX (worst, e);
        num += (o - r) * (o - r);
        den += r * r;
      }
  if (nmse != NULL)
    *nmse = den > 0 ? num / den : num;
  return worst;
}

static void
expect_critical (const char *pattern)
{
  g_test_expect_message ("flowgmm", G_LOG_LEVEL_CRITICAL, pattern);
}

/* ---- The op cases ------------------------------------------------------------------------- */

typedef enum {
  OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_MUL_SELF, OP_ADD_BIAS, OP_MASK,
  OP_SCALE, OP_ADD_SCALAR, OP_NEG, OP_SQUARE, OP_EXP, OP_LOG, OP_TANH, OP_SIGMOID, OP_SOFTPLUS,
  OP_RELU, OP_LEAKY_RELU,
  OP_SUM, OP_MEAN, OP_LOGSUMEXP, OP_LOG_SOFTMAX, OP_SOFTMAX, OP_GATHER,
  OP_MATMUL, OP_MATMUL_SELF, OP_LINEAR, OP_LINEAR_ACT, OP_SQ_DIST,
  OP_LINEAR_COLS, OP_LINEAR_ACT_DROPOUT,
  OP_CONCAT, OP_SLICE, OP_SLICE_ROWS, OP_RESHAPE, OP_SQUEEZE2D, OP_UNSQUEEZE2D,
  OP_CONV2D,
} Op;

typedef enum { INIT_NORMAL, INIT_POSITIVE, INIT_AWAY, INIT_WIDE } InitKind;

typedef enum { MASK_FULL, MASK_ROW, MASK_COL, MASK_SCALAR } MaskForm;

typedef struct {
  const char *name;
  Op op;
  guint n_in;
  Shp in[3];
  guint strided;  /* bit i: input i is dimension-1 range [2, 2+n) of a weight 3 wider */
  InitKind init[3];
  double val_tol; /* 0: 1e-6 */
  double gc_atol; /* 0: gradcheck default */
  double gc_eps;  /* 0: gradcheck default */
  float s;
  FgAxis axis;
  gsize start, n;
  guint pad;
  gboolean ta, tb;
  MaskForm mask;
  Shp reshape;
  FgActivation act;
} Case;

#define BIN4(op, opname, binit)                                                                  \
  { opname "/full", op, 2, { M (5, 7), M (5, 7) }, .init = { INIT_NORMAL, binit } },             \
  { opname "/row", op, 2, { M (5, 7), M (1, 7) }, .init = { INIT_NORMAL, binit } },              \
  { opname "/col", op, 2, { M (5, 7), M (5, 1) }, .init = { INIT_NORMAL, binit } },              \
  { opname "/scalar", op, 2, { M (5, 7), M (1, 1) }, .init = { INIT_NORMAL, binit } },           \
  { opname "/strided-a", op, 2, { M (5, 7), M (5, 7) }, 1, { INIT_NORMAL, binit } },             \
  { opname "/strided-b-col", op, 2, { M (5, 7), M (5, 1) }, 2, { INIT_NORMAL, binit } },         \
  { opname "/4d-row-strided", op, 2, { T4 (2, 3, 2, 2), M (1, 12) }, 1, { INIT_NORMAL, binit } }

#define UN(op, opname, init_, ...)                                                               \
  { opname, op, 1, { M (5, 7) }, .init = { init_ }, __VA_ARGS__ },                               \
  { opname "/4d-strided", op, 1, { T4 (2, 3, 2, 3) }, 1, { init_ }, __VA_ARGS__ }

static const Case cases[] = {
  BIN4 (OP_ADD, "add", INIT_NORMAL),
  BIN4 (OP_SUB, "sub", INIT_NORMAL),
  BIN4 (OP_MUL, "mul", INIT_NORMAL),
  BIN4 (OP_DIV, "div", INIT_POSITIVE),
  { "mul/same-node", OP_MUL_SELF, 1, { M (4, 5) } },
  { "add_bias", OP_ADD_BIAS, 2, { M (5, 7), M (1, 7) } },
  { "add_bias/strided", OP_ADD_BIAS, 2, { T4 (2, 2, 2, 2), M (1, 8) }, 3 },
  { "mask/full", OP_MASK, 1, { M (5, 7) }, .mask = MASK_FULL },
  { "mask/row", OP_MASK, 1, { M (5, 7) }, .mask = MASK_ROW },
  { "mask/col-strided", OP_MASK, 1, { M (5, 7) }, 1, .mask = MASK_COL },
  { "mask/scalar", OP_MASK, 1, { M (5, 7) }, .mask = MASK_SCALAR },
  UN (OP_SCALE, "scale", INIT_NORMAL, .s = -1.5f),
  UN (OP_ADD_SCALAR, "add_scalar", INIT_NORMAL, .s = 0.75f),
  UN (OP_NEG, "neg", INIT_NORMAL),
  UN (OP_SQUARE, "square", INIT_NORMAL),
  UN (OP_EXP, "exp", INIT_NORMAL),
  UN (OP_LOG, "log", INIT_POSITIVE),
  UN (OP_TANH, "tanh", INIT_NORMAL),
  UN (OP_SIGMOID, "sigmoid", INIT_WIDE),
  UN (OP_SOFTPLUS, "softplus", INIT_WIDE),
  UN (OP_RELU, "relu", INIT_AWAY),
  UN (OP_LEAKY_RELU, "leaky_relu", INIT_AWAY, .s = 0.1f),
  { "sum/rows", OP_SUM, 1, { M (6, 5) }, .axis = FG_AXIS_ROWS },
  { "sum/cols", OP_SUM, 1, { M (6, 5) }, .axis = FG_AXIS_COLS },
  { "sum/all", OP_SUM, 1, { M (6, 5) }, .axis = FG_AXIS_ALL },
  { "sum/rows-4d", OP_SUM, 1, { T4 (3, 2, 2, 2) }, .axis = FG_AXIS_ROWS },
  { "sum/cols-long-strided", OP_SUM, 1, { M (3, 37) }, 1, .axis = FG_AXIS_COLS },
  { "mean/rows", OP_MEAN, 1, { M (6, 5) }, .axis = FG_AXIS_ROWS },
  { "mean/cols", OP_MEAN, 1, { M (6, 5) }, .axis = FG_AXIS_COLS },
  { "mean/all", OP_MEAN, 1, { M (6, 5) }, .axis = FG_AXIS_ALL },
  { "mean/all-strided", OP_MEAN, 1, { M (6, 5) }, 1, .axis = FG_AXIS_ALL },
  { "logsumexp", OP_LOGSUMEXP, 1, { M (4, 6) }, .init = { INIT_WIDE } },
  { "logsumexp/strided", OP_LOGSUMEXP, 1, { M (4, 6) }, 1 },
  { "log_softmax", OP_LOG_SOFTMAX, 1, { M (4, 6) }, .init = { INIT_WIDE } },
  { "log_softmax/strided", OP_LOG_SOFTMAX, 1, { M (4, 6) }, 1 },
  { "softmax", OP_SOFTMAX, 1, { M (4, 6) }, .init = { INIT_WIDE } },
  { "softmax/strided", OP_SOFTMAX, 1, { M (4, 6) }, 1 },
  { "gather", OP_GATHER, 1, { M (5, 4) } },
  { "gather/strided", OP_GATHER, 1, { M (5, 4) }, 1 },
  { "matmul/nn", OP_MATMUL, 2, { M (4, 5), M (5, 3) }, .val_tol = 1e-5 },
  { "matmul/nt", OP_MATMUL, 2, { M (4, 5), M (3, 5) }, .val_tol = 1e-5, .tb = TRUE },
  { "matmul/tn", OP_MATMUL, 2, { M (5, 4), M (5, 3) }, .val_tol = 1e-5, .ta = TRUE },
  { "matmul/tt", OP_MATMUL, 2, { M (5, 4), M (3, 5) }, .val_tol = 1e-5, .ta = TRUE, .tb = TRUE },
  { "matmul/nn-strided", OP_MATMUL, 2, { M (4, 5), M (5, 3) }, 3, .val_tol = 1e-5 },
  { "matmul/tt-strided", OP_MATMUL, 2, { M (5, 4), M (3, 5) }, 3, .val_tol = 1e-5, .ta = TRUE,
    .tb = TRUE },
  { "matmul/same-node", OP_MATMUL_SELF, 1, { M (4, 5) }, .val_tol = 1e-5 },
  { "linear", OP_LINEAR, 3, { M (6, 5), M (5, 4), M (1, 4) }, .val_tol = 1e-5 },
  { "linear/no-bias", OP_LINEAR, 2, { M (6, 5), M (5, 4) }, .val_tol = 1e-5 },
  { "linear/strided", OP_LINEAR, 3, { M (6, 5), M (5, 4), M (1, 4) }, 1, .val_tol = 1e-5 },
  { "linear_act/none", OP_LINEAR_ACT, 3, { M (6, 5), M (5, 4), M (1, 4) }, .val_tol = 1e-5,
    .act = FG_ACT_NONE },
  { "linear_act/relu", OP_LINEAR_ACT, 3, { M (6, 5), M (5, 4), M (1, 4) }, .val_tol = 1e-5,
    .act = FG_ACT_RELU },
  { "linear_act/leaky_relu", OP_LINEAR_ACT, 3, { M (6, 5), M (5, 4), M (1, 4) }, .val_tol = 1e-5,
    .act = FG_ACT_LEAKY_RELU, .s = 0.1f },
  { "linear_act/tanh", OP_LINEAR_ACT, 3, { M (6, 5), M (5, 4), M (1, 4) }, .val_tol = 1e-5,
    .act = FG_ACT_TANH },
  { "linear_act/sigmoid", OP_LINEAR_ACT, 3, { M (6, 5), M (5, 4), M (1, 4) }, .val_tol = 1e-5,
    .act = FG_ACT_SIGMOID },
  { "linear_act/softplus", OP_LINEAR_ACT, 3, { M (6, 5), M (5, 4), M (1, 4) }, .val_tol = 1e-5,
    .act = FG_ACT_SOFTPLUS },
  { "linear_act/tanh-strided-nobias", OP_LINEAR_ACT, 2, { M (6, 5), M (5, 4) }, 1,
    .val_tol = 1e-5, .act = FG_ACT_TANH },
  /* 600 rows: two full blocks of 256 and a partial one. */
  { "linear_act/softplus-chunked", OP_LINEAR_ACT, 3, { M (600, 3), M (3, 2), M (1, 2) }, 1,
    .val_tol = 1e-5, .act = FG_ACT_SOFTPLUS },
  /* columns {1, 2, 4, 5, 6, 0} of a 7-wide layer: three runs */
  { "linear_cols", OP_LINEAR_COLS, 3, { M (6, 5), M (5, 7), M (1, 7) }, .val_tol = 1e-5 },
  { "linear_cols/strided-no-bias", OP_LINEAR_COLS, 2, { M (6, 5), M (5, 7) }, 3,
    .val_tol = 1e-5 },
  /* runs of 70 and 64 columns of a 140-wide layer: one product per run, W read in place */
  { "linear_cols/long-runs", OP_LINEAR_COLS, 3, { M (4, 3), M (3, 140), M (1, 140) },
    .val_tol = 1e-5, .n = 1 },
  /* the mask of the same draw as fg_op_dropout (p = 0.5 here: one bit an element; 0.3: 32) */
  { "linear_act_dropout/relu", OP_LINEAR_ACT_DROPOUT, 3, { M (6, 5), M (5, 4), M (1, 4) },
    .val_tol = 1e-5, .act = FG_ACT_RELU, .s = 0.5f },
  { "linear_act_dropout/relu-p0.3-strided", OP_LINEAR_ACT_DROPOUT, 3,
    { M (6, 5), M (5, 4), M (1, 4) }, 1, .val_tol = 1e-5, .act = FG_ACT_RELU, .s = 0.3f },
  { "linear_act_dropout/tanh", OP_LINEAR_ACT_DROPOUT, 3, { M (6, 5), M (5, 4), M (1, 4) },
    .val_tol = 1e-5, .act = FG_ACT_TANH, .s = 0.5f },
  { "sq_dist", OP_SQ_DIST, 2, { M (6, 5), M (4, 5) }, .val_tol = 1e-5 },
  { "sq_dist/strided", OP_SQ_DIST, 2, { M (6, 5), M (4, 5) }, 3, .val_tol = 1e-5 },
  { "concat/2d", OP_CONCAT, 2, { M (3, 4), M (3, 2) } },
  { "concat/4d", OP_CONCAT, 2, { T4 (2, 3, 2, 3), T4 (2, 1, 2, 3) } },
  { "concat/4d-strided", OP_CONCAT, 2, { T4 (2, 3, 2, 3), T4 (2, 2, 2, 3) }, 3 },
  { "slice/2d", OP_SLICE, 1, { M (4, 7) }, .start = 2, .n = 3 },
  { "slice/4d", OP_SLICE, 1, { T4 (2, 5, 2, 2) }, .start = 1, .n = 3 },
  { "slice/4d-of-strided", OP_SLICE, 1, { T4 (2, 5, 2, 2) }, 1, .start = 0, .n = 2 },
  { "slice_rows", OP_SLICE_ROWS, 1, { M (6, 4) }, .start = 1, .n = 3 },
  { "slice_rows/4d", OP_SLICE_ROWS, 1, { T4 (4, 2, 2, 2) }, .start = 2, .n = 2 },
  { "slice_rows/strided", OP_SLICE_ROWS, 1, { M (6, 4) }, 1, .start = 3, .n = 3 },
  { "reshape/2d-to-4d", OP_RESHAPE, 1, { M (3, 12) }, .reshape = T4 (3, 3, 2, 2) },
  { "reshape/4d-to-2d", OP_RESHAPE, 1, { T4 (2, 3, 2, 2) }, .reshape = M (2, 12) },
  { "reshape/strided-same-rows", OP_RESHAPE, 1, { T4 (2, 3, 2, 2) }, 1, .reshape = M (2, 12) },
  { "reshape/contiguous-new-rows", OP_RESHAPE, 1, { M (4, 6) }, .reshape = M (8, 3) },
  { "squeeze2d", OP_SQUEEZE2D, 1, { T4 (2, 3, 4, 6) } },
  { "squeeze2d/strided", OP_SQUEEZE2D, 1, { T4 (2, 2, 2, 4) }, 1 },
  { "unsqueeze2d", OP_UNSQUEEZE2D, 1, { T4 (2, 8, 2, 3) } },
  { "unsqueeze2d/strided", OP_UNSQUEEZE2D, 1, { T4 (2, 4, 3, 2) }, 1 },
  { "conv2d/k3-pad1", OP_CONV2D, 3, { T4 (2, 3, 5, 4), T4 (4, 3, 3, 3), M (1, 4) }, .pad = 1,
    .val_tol = 1e-5 },
  /* 3×3 with padding 1 and at least 4 channels each way runs Winograd F(4×4, 3×3): sides that
   * are and are not multiples of the 4×4 tile, one tile or several, images narrower than a
   * tile, 4 to 9 channels.  Its transforms cost a few units in the 6th digit (5e-5 against the
   * double reference), so the finite differences take long steps: the op is linear in each
   * input, where a central difference is exact for any step and rounding is what a short one
   * magnifies. */
  { "conv2d/winograd-5x4", OP_CONV2D, 3, { T4 (2, 4, 5, 4), T4 (4, 4, 3, 3), M (1, 4) },
    .pad = 1, .val_tol = 5e-5, .gc_eps = 0.5 },
  { "conv2d/winograd-7x7", OP_CONV2D, 3, { T4 (2, 4, 7, 7), T4 (5, 4, 3, 3), M (1, 5) },
    .pad = 1, .val_tol = 5e-5, .gc_eps = 0.5 },
  { "conv2d/winograd-8x12-nobias", OP_CONV2D, 2, { T4 (1, 4, 8, 12), T4 (4, 4, 3, 3) },
    .pad = 1, .val_tol = 5e-5, .gc_eps = 0.5 },
  { "conv2d/winograd-14x14", OP_CONV2D, 3, { T4 (1, 4, 14, 14), T4 (4, 4, 3, 3), M (1, 4) },
    .pad = 1, .val_tol = 5e-5, .gc_eps = 0.5 },
  { "conv2d/winograd-5x3", OP_CONV2D, 3, { T4 (3, 4, 5, 3), T4 (5, 4, 3, 3), M (1, 5) },
    .pad = 1, .val_tol = 5e-5, .gc_eps = 0.5 },
  { "conv2d/winograd-1x2-wide", OP_CONV2D, 3, { T4 (2, 9, 1, 2), T4 (7, 9, 3, 3), M (1, 7) },
    .pad = 1, .val_tol = 5e-5, .gc_eps = 0.5 },
  { "conv2d/k3-pad0-nobias", OP_CONV2D, 2, { T4 (2, 3, 5, 4), T4 (4, 3, 3, 3) }, .pad = 0,
    .val_tol = 1e-5 },
  { "conv2d/k1-pad0", OP_CONV2D, 3, { T4 (2, 3, 3, 4), T4 (5, 3, 1, 1), M (1, 5) }, .pad = 0,
    .val_tol = 1e-5 },
  { "conv2d/k1-pad1", OP_CONV2D, 3, { T4 (2, 3, 3, 4), T4 (2, 3, 1, 1), M (1, 2) }, .pad = 1,
    .val_tol = 1e-5 },
  { "conv2d/k3x1-pad1", OP_CONV2D, 3, { T4 (2, 2, 4, 3), T4 (3, 2, 3, 1), M (1, 3) }, .pad = 1,
    .val_tol = 1e-5 },
  { "conv2d/k3-pad1-strided", OP_CONV2D, 3, { T4 (2, 2, 4, 4), T4 (3, 2, 3, 3), M (1, 3) }, 1,
    .pad = 1, .val_tol = 1e-5 },
  { "conv2d/winograd-6x9-strided", OP_CONV2D, 3, { T4 (2, 4, 6, 9), T4 (4, 4, 3, 3), M (1, 4) },
    1, .pad = 1, .val_tol = 5e-5, .gc_eps = 0.5 },
  { "conv2d/k1-pad0-strided", OP_CONV2D, 2, { T4 (3, 2, 2, 3), T4 (4, 2, 1, 1) }, 1, .pad = 0,
    .val_tol = 1e-5 },
};

static const guint32 linear_cols_idx[] = { 1, 2, 4, 5, 6, 0 };

/* The columns of a linear_cols case: the short runs above, or (c->n == 1) columns 70..139
 * then 0..63. */
static const guint32 *
linear_cols_of (const Case *c, gsize *n)
{
  static guint32 long_idx[134];
  if (c->n != 1)
    {
      *n = G_N_ELEMENTS (linear_cols_idx);
      return linear_cols_idx;
    }
  for (guint i = 0; i < 134; i++)
    long_idx[i] = i < 70 ? 70 + i : i - 70;
  *n = 134;
  return long_idx;
}

/* The dropout mask of OP_LINEAR_ACT_DROPOUT: fg_op_dropout of ones with the same draw. */
static float *
dropout_mask (gsize rows, gsize cols, float p)
{
  g_autoptr (FgTape) tape = fg_tape_new ();
  g_autoptr (FgTensor) ones = fg_tensor_new_2d (rows, cols);
  float *m = g_new (float, rows * cols);
  FgRng rng;
  for (gsize k = 0; k < rows * cols; k++)
    ones->data[k] = 1.0f;
  fg_rng_init (&rng, 23, 5);
  FgVar *y = fg_op_dropout (tape, fg_tape_constant (tape, ones), p, &rng, TRUE);
  memcpy (m, y->value.data, rows * cols * sizeof (float));
  return m;
}

/* Gather picks column (3i + 1) mod C, and nothing (-1) in row 1. */
static gint32
gather_index (gsize i, gsize cols)
{
  return i == 1 ? -1 : (gint32) ((3 * i + 1) % cols);
}

/* A constant mask with 0, ½, 1, 1½ entries in the given broadcast form. */
static double
mask_value (gsize i, gsize j)
{
  return 0.5 * (double) ((i * 5 + j * 3) % 4);
}

static Shp
mask_shape (MaskForm form, gsize rows, gsize cols)
{
  Shp s = M (rows, cols);
  if (form == MASK_ROW || form == MASK_SCALAR)
    s.s[0] = 1;
  if (form == MASK_COL || form == MASK_SCALAR)
    s.s[1] = 1;
  return s;
}

static FgVar *
case_build (FgTape *tape, FgVar *const *leaves, gpointer data)
{
  const Case *c = data;
  FgVar *in[3] = { NULL, NULL, NULL };
  for (guint i = 0; i < c->n_in; i++)
    in[i] = (c->strided & (1u << i)) ? fg_op_slice (tape, leaves[i], 2, c->in[i].s[1]) : leaves[i];
  FgVar *a = in[0], *b = in[1];

  switch (c->op)
    {
    case OP_ADD:
      return fg_op_add (tape, a, b);
    case OP_SUB:
      return fg_op_sub (tape, a, b);
    case OP_MUL:
      return fg_op_mul (tape, a, b);
    case OP_DIV:
      return fg_op_div (tape, a, b);
    case OP_MUL_SELF:
      return fg_op_mul (tape, a, a);
    case OP_ADD_BIAS:
      return fg_op_add_bias (tape, a, b);
    case OP_MASK:
      {
        const gsize rows = fg_tensor_rows (&a->value), cols = fg_tensor_cols (&a->value);
        Shp s = mask_shape (c->mask, rows, cols);
        float *m = fg_tape_alloc_floats (tape, s.s[0] * s.s[1]);
        for (gsize i = 0; i < s.s[0]; i++)
          for (gsize j = 0; j < s.s[1]; j++)
            m[i * s.s[1] + j] = (float) mask_value (i, j);
        FgTensor mt = fg_tensor_wrap_2d (m, s.s[0], s.s[1]);
        FgVar *out = fg_op_mask (tape, a, &mt);
        /* The op must not keep pointing at the caller's mask. */
        memset (m, 0xff, s.s[0] * s.s[1] * sizeof (float));
        return out;
      }
    case OP_SCALE:
      return fg_op_scale (tape, a, c->s);
    case OP_ADD_SCALAR:
      return fg_op_add_scalar (tape, a, c->s);
    case OP_NEG:
      return fg_op_neg (tape, a);
    case OP_SQUARE:
      return fg_op_square (tape, a);
    case OP_EXP:
      return fg_op_exp (tape, a);
    case OP_LOG:
      return fg_op_log (tape, a);
    case OP_TANH:
      return fg_op_tanh (tape, a);
    case OP_SIGMOID:
      return fg_op_sigmoid (tape, a);
    case OP_SOFTPLUS:
      return fg_op_softplus (tape, a);
    case OP_RELU:
      return fg_op_relu (tape, a);
    case OP_LEAKY_RELU:
      return fg_op_leaky_relu (tape, a, c->s);
    case OP_SUM:
      return fg_op_sum (tape, a, c->axis);
    case OP_MEAN:
      return fg_op_mean (tape, a, c->axis);
    case OP_LOGSUMEXP:
      return fg_op_logsumexp (tape, a);
    case OP_LOG_SOFTMAX:
      return fg_op_log_softmax (tape, a);
    case OP_SOFTMAX:
      return fg_op_softmax (tape, a);
    case OP_GATHER:
      {
        gint32 idx[64];
        const gsize rows = fg_tensor_rows (&a->value);
        g_assert_cmpuint (rows, <=, G_N_ELEMENTS (idx));
        for (gsize i = 0; i < rows; i++)
          idx[i] = gather_index (i, fg_tensor_cols (&a->value));
        FgVar *out = fg_op_gather (tape, a, idx);
        memset (idx, 0x7f, sizeof idx); /* copied, not kept */
        return out;
      }
    case OP_MATMUL:
      return fg_op_matmul (tape, a, b, c->ta, c->tb);
    case OP_MATMUL_SELF:
      return fg_op_matmul (tape, a, a, FALSE, TRUE);
    case OP_LINEAR:
      return fg_op_linear (tape, a, b, in[2]);
    case OP_LINEAR_ACT:
      return fg_op_linear_act (tape, a, b, in[2], c->act, c->s);
    case OP_LINEAR_COLS:
      {
        gsize n_cols;
        const guint32 *cols = linear_cols_of (c, &n_cols);
        return fg_op_linear_cols (tape, a, b, c->n_in > 2 ? in[2] : NULL, cols, n_cols);
      }
    case OP_LINEAR_ACT_DROPOUT:
      {
        FgRng rng;
        fg_rng_init (&rng, 23, 5); /* the same mask at every evaluation */
        return fg_op_linear_act_dropout (tape, a, b, in[2], c->act, 0.0f, c->s, &rng, TRUE);
      }
    case OP_SQ_DIST:
      return fg_op_sq_dist (tape, a, b);
    case OP_CONCAT:
      return fg_op_concat (tape, a, b);
    case OP_SLICE:
      return fg_op_slice (tape, a, c->start, c->n);
    case OP_SLICE_ROWS:
      return fg_op_slice_rows (tape, a, c->start, c->n);
    case OP_RESHAPE:
      return fg_op_reshape (tape, a, c->reshape.ndim, c->reshape.s);
    case OP_SQUEEZE2D:
      return fg_op_squeeze2d (tape, a);
    case OP_UNSQUEEZE2D:
      return fg_op_unsqueeze2d (tape, a);
    case OP_CONV2D:
      return fg_op_conv2d (tape, a, b, in[2], c->pad);
    }
  g_assert_not_reached ();
}

static double
ref_unary (Op op, double x, double s)
{
  switch (op)
    {
    case OP_SCALE:
      return s * x;
    case OP_ADD_SCALAR:
      return x + s;
    case OP_NEG:
      return -x;
    case OP_SQUARE:
      return x * x;
    case OP_EXP:
      return exp (x);
    case OP_LOG:
      return log (x);
    case OP_TANH:
      return tanh (x);
    case OP_SIGMOID:
      return 1.0 / (1.0 + exp (-x));
    case OP_SOFTPLUS:
      return log1p (exp (x));
    case OP_RELU:
      return x > 0 ? x : 0;
    case OP_LEAKY_RELU:
      return x > 0 ? x : s * x;
    default:
      g_assert_not_reached ();
    }
}

static double
ref_activation (FgActivation act, double x, double s)
{
  switch (act)
    {
    case FG_ACT_NONE:
      return x;
    case FG_ACT_RELU:
      return ref_unary (OP_RELU, x, s);
    case FG_ACT_LEAKY_RELU:
      return ref_unary (OP_LEAKY_RELU, x, s);
    case FG_ACT_TANH:
      return ref_unary (OP_TANH, x, s);
    case FG_ACT_SIGMOID:
      return ref_unary (OP_SIGMOID, x, s);
    case FG_ACT_SOFTPLUS:
      return ref_unary (OP_SOFTPLUS, x, s);
    }
  g_assert_not_reached ();
}

/* The naive reference of a case, in double. */
/* The reference result of the elementwise ops: binary (with broadcasting), mask, unary; NULL for another op. */
static Dense *
ref_elementwise (const Case *c, Dense *const *in)
{
  const Dense *a = in[0], *b = in[1];
  const gsize R = shp_rows (&a->shape), C = shp_cols (&a->shape);
  Dense *o = NULL;

  switch (c->op)
    {
    case OP_ADD:
    case OP_SUB:
    case OP_MUL:
    case OP_DIV:
    case OP_ADD_BIAS:
    case OP_MUL_SELF:
      o = dense_new (&a->shape);
      for (gsize i = 0; i < R; i++)
        for (gsize j = 0; j < C; j++)
          {
            const double x = at2 (a, i, j), z = c->op == OP_MUL_SELF ? x : bcast (a, b, i, j);
            o->d[i * C + j] = c->op == OP_SUB   ? x - z
                              : c->op == OP_MUL || c->op == OP_MUL_SELF ? x * z
                              : c->op == OP_DIV ? x / z
                                                : x + z;
          }
      break;
    case OP_MASK:
      {
        o = dense_new (&a->shape);
        Shp ms = mask_shape (c->mask, R, C);
        for (gsize i = 0; i < R; i++)
          for (gsize j = 0; j < C; j++)
            o->d[i * C + j] = at2 (a, i, j) * mask_value (ms.s[0] == 1 ? 0 : i, ms.s[1] == 1 ? 0 : j);
        break;
      }
    case OP_SCALE:
    case OP_ADD_SCALAR:
    case OP_NEG:
    case OP_SQUARE:
    case OP_EXP:
    case OP_LOG:
    case OP_TANH:
    case OP_SIGMOID:
    case OP_SOFTPLUS:
    case OP_RELU:
    case OP_LEAKY_RELU:
      o = dense_new (&a->shape);
      for (gsize k = 0; k < R * C; k++)
        o->d[k] = ref_unary (c->op, a->d[k], c->s);
      break;
    default:
      break;
    }
  return o;
}

/* The reference result of the reductions along an axis, softmax and gather; NULL for another
 * op. */
static Dense *
ref_reduce (const Case *c, Dense *const *in)
{
  const Dense *a = in[0];
  const gsize R = shp_rows (&a->shape), C = shp_cols (&a->shape);
  Dense *o = NULL;

  switch (c->op)
    {
    case OP_SUM:
    case OP_MEAN:
      {
        Shp s = M (1, 1);
        double div = 1;
        if (c->axis == FG_AXIS_ROWS)
          {
            s = a->shape;
            s.s[0] = 1;
            div = c->op == OP_MEAN ? (double) R : 1;
          }
        else if (c->axis == FG_AXIS_COLS)
          {
            s.s[0] = R;
            div = c->op == OP_MEAN ? (double) C : 1;
          }
        else
          div = c->op == OP_MEAN ? (double) (R * C) : 1;
        o = dense_new (&s);
        for (gsize i = 0; i < R; i++)
          for (gsize j = 0; j < C; j++)
            o->d[c->axis == FG_AXIS_ROWS ? j : c->axis == FG_AXIS_COLS ? i : 0] += at2 (a, i, j) / div;
        break;
      }
    case OP_LOGSUMEXP:
    case OP_LOG_SOFTMAX:
    case OP_SOFTMAX:
      {
        Shp s = M (R, 1);
        o = dense_new (c->op == OP_LOGSUMEXP ? &s : &a->shape);
        for (gsize i = 0; i < R; i++)
          {
            double sum = 0;
            for (gsize j = 0; j < C; j++)
              sum += exp (at2 (a, i, j));
            const double lse = log (sum);
            if (c->op == OP_LOGSUMEXP)
              o->d[i] = lse;
            else
              for (gsize j = 0; j < C; j++)
                o->d[i * C + j] = c->op == OP_SOFTMAX ? exp (at2 (a, i, j)) / sum : at2 (a, i, j) - lse;
          }
        break;
      }
    case OP_GATHER:
      {
        Shp s = M (R, 1);
        o = dense_new (&s);
        for (gsize i = 0; i < R; i++)
          {
            const gint32 k = gather_index (i, C);
            o->d[i] = k < 0 ? 0.0 : at2 (a, i, k);
          }
        break;
      }
    default:
      break;
    }
  return o;
}

/* The reference result of the products: matmul, the linear ops, squared distances; NULL for another op. */
static Dense *
ref_products (const Case *c, Dense *const *in)
{
  const Dense *a = in[0], *b = in[1];
  const gsize R = shp_rows (&a->shape), C = shp_cols (&a->shape);
  Dense *o = NULL;

  switch (c->op)
    {
    case OP_MATMUL:
    case OP_MATMUL_SELF:
      {
        const gboolean ta = c->ta, tb = c->op == OP_MATMUL_SELF ? TRUE : c->tb;
        if (c->op == OP_MATMUL_SELF)
          b = a;
        const gsize m = ta ? C : R, k = ta ? R : C;
        const gsize n = tb ? shp_rows (&b->shape) : shp_cols (&b->shape);
        Shp s = M (m, n);
        o = dense_new (&s);
        for (gsize i = 0; i < m; i++)
          for (gsize j = 0; j < n; j++)
            {
              double acc = 0;
              for (gsize l = 0; l < k; l++)
                acc += (ta ? at2 (a, l, i) : at2 (a, i, l)) * (tb ? at2 (b, j, l) : at2 (b, l, j));
              o->d[i * n + j] = acc;
            }
        break;
      }
    case OP_LINEAR_COLS:
      {
        gsize n;
        const guint32 *cols = linear_cols_of (c, &n);
        Shp s = M (R, n);
        o = dense_new (&s);
        for (gsize i = 0; i < R; i++)
          for (gsize q = 0; q < n; q++)
            {
              const gsize j = cols[q];
              double acc = c->n_in > 2 ? in[2]->d[j] : 0.0;
              for (gsize l = 0; l < C; l++)
                acc += at2 (a, i, l) * at2 (b, l, j);
              o->d[i * n + q] = acc;
            }
        break;
      }
    case OP_LINEAR_ACT_DROPOUT:
      {
        const gsize n = shp_cols (&b->shape);
        Shp s = M (R, n);
        g_autofree float *mask = dropout_mask (R, n, c->s);
        o = dense_new (&s);
        for (gsize i = 0; i < R; i++)
          for (gsize j = 0; j < n; j++)
            {
              double acc = c->n_in > 2 ? in[2]->d[j] : 0.0;
              for (gsize l = 0; l < C; l++)
                acc += at2 (a, i, l) * at2 (b, l, j);
              o->d[i * n + j] = ref_activation (c->act, acc, 0.0) * mask[i * n + j];
            }
        break;
      }
    case OP_LINEAR:
    case OP_LINEAR_ACT:
      {
        const gsize n = shp_cols (&b->shape);
        Shp s = M (R, n);
        o = dense_new (&s);
        for (gsize i = 0; i < R; i++)
          for (gsize j = 0; j < n; j++)
            {
              double acc = c->n_in > 2 ? in[2]->d[j] : 0.0;
              for (gsize l = 0; l < C; l++)
                acc += at2 (a, i, l) * at2 (b, l, j);
              if (c->op == OP_LINEAR_ACT)
                acc = ref_activation (c->act, acc, c->s);
              o->d[i * n + j] = acc;
            }
        break;
      }
    case OP_SQ_DIST:
      {
        const gsize K = shp_rows (&b->shape);
        Shp s = M (R, K);
        o = dense_new (&s);
        for (gsize i = 0; i < R; i++)
          for (gsize k = 0; k < K; k++)
            {
              double acc = 0;
              for (gsize l = 0; l < C; l++)
                acc += (at2 (a, i, l) - at2 (b, k, l)) * (at2 (a, i, l) - at2 (b, k, l));
              o->d[i * K + k] = acc;
            }
        break;
      }
    default:
      break;
    }
  return o;
}

/* The reference result of the shape ops and conv2d; NULL for another op. */
static Dense *
ref_shape (const Case *c, Dense *const *in)
{
  const Dense *a = in[0], *b = in[1];
  const gsize R = shp_rows (&a->shape), C = shp_cols (&a->shape);
  Dense *o = NULL;

  switch (c->op)
    {
    case OP_CONCAT:
      {
        Shp s = a->shape;
        s.s[1] += b->shape.s[1];
        o = dense_new (&s);
        const gsize cb = shp_cols (&b->shape);
        for (gsize i = 0; i < R; i++)
          {
            for (gsize j = 0; j < C; j++)
              o->d[i * (C + cb) + j] = at2 (a, i, j);
            for (gsize j = 0; j < cb; j++)
              o->d[i * (C + cb) + C + j] = at2 (b, i, j);
          }
        break;
      }
    case OP_SLICE:
      {
        Shp s = a->shape;
        s.s[1] = c->n;
        o = dense_new (&s);
        const gsize inner = C / a->shape.s[1], oc = shp_cols (&s);
        for (gsize i = 0; i < R; i++)
          for (gsize j = 0; j < oc; j++)
            o->d[i * oc + j] = at2 (a, i, c->start * inner + j);
        break;
      }
    case OP_SLICE_ROWS:
      {
        Shp s = a->shape;
        s.s[0] = c->n;
        o = dense_new (&s);
        memcpy (o->d, a->d + c->start * C, c->n * C * sizeof (double));
        break;
      }
    case OP_RESHAPE:
      o = dense_new (&c->reshape);
      memcpy (o->d, a->d, R * C * sizeof (double));
      break;
    case OP_SQUEEZE2D:
    case OP_UNSQUEEZE2D:
      {
        const gboolean sq = c->op == OP_SQUEEZE2D;
        Shp s = a->shape;
        s.s[1] = sq ? 4 * s.s[1] : s.s[1] / 4;
        s.s[2] = sq ? s.s[2] / 2 : s.s[2] * 2;
        s.s[3] = sq ? s.s[3] / 2 : s.s[3] * 2;
        o = dense_new (&s);
        const Dense *big = sq ? a : o, *small = sq ? o : a;
        for (gsize n = 0; n < R; n++)
          for (gsize ch = 0; ch < big->shape.s[1]; ch++)
            for (gsize y = 0; y < big->shape.s[2]; y++)
              for (gsize x = 0; x < big->shape.s[3]; x++)
                {
                  double *bp = at4 (big, n, ch, y, x);
                  double *sp = at4 (small, n, 4 * ch + 2 * (y % 2) + (x % 2), y / 2, x / 2);
                  if (sq)
                    *sp = *bp;
                  else
                    *bp = *sp;
                }
        break;
      }
    case OP_CONV2D:
      {
        const Dense *w = b;
        const gsize cout = w->shape.s[0], cin = w->shape.s[1], kh = w->shape.s[2], kw = w->shape.s[3];
        const gsize H = a->shape.s[2], W = a->shape.s[3], p = c->pad;
        Shp s = T4 (R, cout, H + 2 * p - kh + 1, W + 2 * p - kw + 1);
        o = dense_new (&s);
        for (gsize n = 0; n < R; n++)
          for (gsize co = 0; co < cout; co++)
            for (gsize y = 0; y < s.s[2]; y++)
              for (gsize x = 0; x < s.s[3]; x++)
                {
                  double acc = c->n_in > 2 ? in[2]->d[co] : 0.0;
                  for (gsize ci = 0; ci < cin; ci++)
                    for (gsize ki = 0; ki < kh; ki++)
                      for (gsize kj = 0; kj < kw; kj++)
                        {
                          const long iy = (long) (y + ki) - (long) p, ix = (long) (x + kj) - (long) p;
                          if (iy < 0 || ix < 0 || iy >= (long) H || ix >= (long) W)
                            continue;
                          acc += *at4 (w, co, ci, ki, kj) * *at4 (a, n, ci, (gsize) iy, (gsize) ix);
                        }
                  *at4 (o, n, co, y, x) = acc;
                }
        break;
      }
    default:
      break;
    }
  return o;
}

static Dense *
case_reference (const Case *c, Dense *const *in)
{
  Dense *o = ref_elementwise (c, in);
  if (o == NULL)
    o = ref_reduce (c, in);
  if (o == NULL)
    o = ref_products (c, in);
  if (o == NULL)
    o = ref_shape (c, in);
  return o;
}

static void
fill_input (FgWeight *w, InitKind init, FgRng *rng)
{
  const gsize n = fg_tensor_numel (&w->value);
  float *x = w->value.data;
  for (gsize k = 0; k < n; k++)
    {
      double v = fg_rng_normal (rng);
      switch (init)
        {
        case INIT_NORMAL:
          break;
        case INIT_POSITIVE:
          v = 0.5 + 1.5 * fg_rng_uniform (rng);
          break;
        case INIT_AWAY: /* keep finite differences off the kink at 0 */
          v = v >= 0 ? 0.1 + v : -0.1 + v;
          break;
        case INIT_WIDE:
          v *= 3.0;
          break;
        }
      x[k] = (float) v;
    }
}

static void
test_op_case (gconstpointer data)
{
  const Case *c = data;
  g_autoptr (FgWeightSet) set = fg_weight_set_new ();
  FgWeight *w[3] = { NULL, NULL, NULL };
  Dense *din[3] = { NULL, NULL, NULL };
  FgRng rng;
  fg_rng_init (&rng, 1234, fg_rng_stream_id (c->name));

  for (guint i = 0; i < c->n_in; i++)
    {
      Shp s = c->in[i];
      if (c->strided & (1u << i))
        s.s[1] += 3; /* two entries before the view, one after */
      char name[16];
      g_snprintf (name, sizeof name, "in%u", i);
      w[i] = fg_weight_set_add (set, name, s.ndim, s.s, FALSE);
      fill_input (w[i], c->init[i], &rng);
    }

  /* (1) the value, with gradients on (the path training takes). */
  g_autoptr (FgTape) tape = fg_tape_new ();
  FgVar *leaves[3];
  for (guint i = 0; i < c->n_in; i++)
    leaves[i] = fg_tape_weight (tape, w[i]);
  FgVar *out = case_build (tape, leaves, (gpointer) c);
  g_assert_nonnull (out);
  g_assert_true (out->requires_grad);
  for (guint i = 0; i < c->n_in; i++)
    {
      FgVar *view = leaves[i];
      if (c->strided & (1u << i))
        {
          view = fg_op_slice (tape, leaves[i], 2, c->in[i].s[1]);
          g_assert_cmpuint (view->value.ld, >, fg_tensor_cols (&view->value));
        }
      din[i] = dense_from_tensor (&view->value);
    }
  Dense *ref = case_reference (c, din);
  double nmse;
  const double err = compare (&out->value, ref, &nmse);
  const double tol = c->val_tol > 0 ? c->val_tol : 1e-6;
  g_test_message ("%s: value max rel err %.3g (tol %.0e), nmse %.3g", c->name, err, tol, nmse);
  g_assert_cmpfloat (err, <=, tol);

  /* The same value with gradients off. */
  fg_tape_reset (tape);
  fg_tape_set_grad_enabled (tape, FALSE);
  for (guint i = 0; i < c->n_in; i++)
    leaves[i] = fg_tape_weight (tape, w[i]);
  out = case_build (tape, leaves, (gpointer) c);
  g_assert_false (out->requires_grad);
  g_assert_cmpfloat (compare (&out->value, ref, NULL), <=, tol);

  /* (2) the gradient of every input. */
  GcOptions opts;
  gc_options_init (&opts);
  if (c->gc_atol > 0)
    opts.atol = c->gc_atol;
  if (c->gc_eps > 0)
    opts.eps = c->gc_eps;
  gc_assert (w, c->n_in, case_build, (gpointer) c, &opts, c->name);

  for (guint i = 0; i < c->n_in; i++)
    dense_free (din[i]);
  dense_free (ref);
}

/* ---- Gradcheck must be able to fail ---------------------------------------------------------- */

/* x³ with a backward that may be deliberately wrong. */
static void
cube_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  const float factor = *(const float *) saved;
  FgTensor *da = fg_tape_grad (tape, in[0]);
  const FgTensor *x = &in[0]->value;
  for (gsize i = 0; i < fg_tensor_rows (x); i++)
    for (gsize j = 0; j < fg_tensor_cols (x); j++)
      {
        const float v = fg_tensor_row (x, i)[j];
        fg_tensor_row (da, i)[j] += factor * 3.0f * v * v * fg_tensor_row (&out->grad, i)[j];
      }
}

static FgVar *
build_cube (FgTape *tape, FgVar *const *in, gpointer data)
{
  const float factor = *(const float *) data;
  FgVar *a = in[0];
  float *saved;
  FgVar *out = fg_tape_op_new (tape, a->value.ndim, a->value.shape, &a, 1, cube_backward,
                               sizeof (float), (gpointer *) &saved);
  *saved = factor;
  for (gsize i = 0; i < fg_tensor_rows (&a->value); i++)
    for (gsize j = 0; j < fg_tensor_cols (&a->value); j++)
      {
        const float v = fg_tensor_row (&a->value, i)[j];
        fg_tensor_row (&out->value, i)[j] = v * v * v;
      }
  return out;
}

static void
test_custom_op (void)
{
  g_autoptr (FgWeightSet) set = fg_weight_set_new ();
  FgWeight *w = fg_weight_set_add_2d (set, "x", 3, 4, FALSE);
  FgRng rng;
  fg_rng_init (&rng, 5, 0);
  fill_input (w, INIT_NORMAL, &rng);

  float right = 1.0f, wrong = 1.01f;
  gc_assert (&w, 1, build_cube, &right, NULL, "custom cube");

  /* A backward 1% off must be caught: this is what makes every other gradcheck meaningful. */
  GcResult res;
  g_assert_false (gc_check (&w, 1, build_cube, &wrong, NULL, &res));
  g_assert_cmpuint (res.n_failed, >, 0);
  g_test_message ("wrong backward caught: %" G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT
                  " elements failed", res.n_failed, res.n_checked);

  /* A custom op gets scratch for its saved data even when nothing is recorded. */
  g_autoptr (FgTape) tape = fg_tape_new ();
  fg_tape_set_grad_enabled (tape, FALSE);
  FgVar *x = fg_tape_weight (tape, w);
  gpointer saved = NULL;
  FgVar *out = fg_tape_op_new (tape, 2, w->value.shape, &x, 1, cube_backward, 4, &saved);
  g_assert_nonnull (out);
  g_assert_nonnull (saved);
  g_assert_false (out->requires_grad);
  g_assert_null (fg_tape_grad (tape, out));
}

/* ---- A small MLP used by several tests --------------------------------------------------------- */

typedef struct {
  FgWeightSet *set;
  FgWeight *w1, *b1, *w2, *b2, *w3, *b3;
  gsize n, d, h, k;
  float *x;
  gint32 *y;
  float dropout;
} Mlp;

static void
mlp_init (Mlp *m, gsize n, gsize d, gsize h, gsize k, float dropout)
{
  FgRng rng;
  fg_rng_init (&rng, 77, 1);
  m->set = fg_weight_set_new ();
  m->n = n;
  m->d = d;
  m->h = h;
  m->k = k;
  m->dropout = dropout;
  m->w1 = fg_weight_set_add_2d (m->set, "w1", d, h, TRUE);
  m->b1 = fg_weight_set_add_2d (m->set, "b1", 1, h, FALSE);
  m->w2 = fg_weight_set_add_2d (m->set, "w2", h, h, TRUE);
  m->b2 = fg_weight_set_add_2d (m->set, "b2", 1, h, FALSE);
  m->w3 = fg_weight_set_add_2d (m->set, "w3", h, k, TRUE);
  m->b3 = fg_weight_set_add_2d (m->set, "b3", 1, k, FALSE);
  for (guint i = 0; i < fg_weight_set_len (m->set); i++)
    {
      FgWeight *w = fg_weight_set_get (m->set, i);
      fg_weight_init_normal (w, &rng, 0.7f);
    }
  m->x = g_new (float, n * d);
  fg_rng_fill_normal (&rng, m->x, n * d, 0.0f, 1.0f);
  m->y = g_new (gint32, n);
  for (gsize i = 0; i < n; i++)
    m->y[i] = i % 5 == 3 ? -1 : (gint32) fg_rng_below (&rng, k); /* some unlabeled */
}

static void
mlp_clear (Mlp *m)
{
  fg_weight_set_free (m->set);
  g_free (m->x);
  g_free (m->y);
}

/* softplus → dropout → tanh → linear, cross-entropy = −mean over rows of gather(log_softmax).
 * Rows with label −1 contribute 0 (they still count in the mean). */
static FgVar *
mlp_loss_from (FgTape *tape, FgVar *const *p, const Mlp *m, FgRng *rng)
{
  FgTensor xt = fg_tensor_wrap_2d (m->x, m->n, m->d);
  FgVar *x = fg_tape_constant (tape, &xt);
  FgVar *h1 = fg_op_softplus (tape, fg_op_linear (tape, x, p[0], p[1]));
  if (m->dropout > 0)
    h1 = fg_op_dropout (tape, h1, m->dropout, rng, TRUE);
  FgVar *h2 = fg_op_tanh (tape, fg_op_linear (tape, h1, p[2], p[3]));
  FgVar *logits = fg_op_linear (tape, h2, p[4], p[5]);
  FgVar *ll = fg_op_gather (tape, fg_op_log_softmax (tape, logits), m->y);
  return fg_op_neg (tape, fg_op_mean (tape, ll, FG_AXIS_ALL));
}

static FgVar *
mlp_build (FgTape *tape, FgVar *const *p, gpointer data)
{
  const Mlp *m = data;
  FgRng rng;
  fg_rng_init (&rng, 99, 3); /* the same dropout mask on every call */
  return mlp_loss_from (tape, p, m, &rng);
}

static FgWeight **
mlp_weights (Mlp *m, FgWeight **w)
{
  w[0] = m->w1;
  w[1] = m->b1;
  w[2] = m->w2;
  w[3] = m->b2;
  w[4] = m->w3;
  w[5] = m->b3;
  return w;
}

static FgVar *
mlp_step (FgTape *tape, Mlp *m)
{
  FgWeight *w[6];
  FgVar *p[6];
  mlp_weights (m, w);
  for (guint i = 0; i < 6; i++)
    p[i] = fg_tape_weight (tape, w[i]);
  return mlp_build (tape, p, m);
}

/* The MLP's loss in double, without dropout. */
static double
mlp_reference_loss (const Mlp *m)
{
  const gsize n = m->n, d = m->d, h = m->h, k = m->k;
  double *h1 = g_new (double, h), *h2 = g_new (double, h), *lg = g_new (double, k);
  double total = 0;
  for (gsize i = 0; i < n; i++)
    {
      for (gsize j = 0; j < h; j++)
        {
          double s = m->b1->value.data[j];
          for (gsize l = 0; l < d; l++)
            s += (double) m->x[i * d + l] * m->w1->value.data[l * h + j];
          h1[j] = log1p (exp (s));
        }
      for (gsize j = 0; j < h; j++)
        {
          double s = m->b2->value.data[j];
          for (gsize l = 0; l < h; l++)
            s += h1[l] * m->w2->value.data[l * h + j];
          h2[j] = tanh (s);
        }
      double mx = -INFINITY, se = 0;
      for (gsize j = 0; j < k; j++)
        {
          double s = m->b3->value.data[j];
          for (gsize l = 0; l < h; l++)
            s += h2[l] * m->w3->value.data[l * k + j];
          lg[j] = s;
          mx = MAX (mx, s);
        }
      for (gsize j = 0; j < k; j++)
        se += exp (lg[j] - mx);
      if (m->y[i] >= 0)
        total += lg[m->y[i]] - mx - log (se);
    }
  g_free (h1);
  g_free (h2);
  g_free (lg);
  return -total / (double) n;
}

static void
test_composite_mlp (void)
{
  Mlp m;
  mlp_init (&m, 10, 5, 6, 4, 0.0f);
  FgWeight *w[6];
  mlp_weights (&m, w);

  g_autoptr (FgTape) tape = fg_tape_new ();
  FgVar *loss = mlp_step (tape, &m);
  g_assert_nonnull (loss);
  const double ref = mlp_reference_loss (&m);
  g_test_message ("MLP cross-entropy %.8g, double reference %.8g", loss->value.data[0], ref);
  g_assert_cmpfloat (fabs (loss->value.data[0] - ref), <=, 1e-5 * MAX (1.0, fabs (ref)));

  /* fg_tape_backward (seed 1) and backward_seed agree; gradcheck checks the latter. */
  g_autoptr (GError) error = NULL;
  fg_weight_set_zero_grad (m.set);
  g_assert_true (fg_tape_backward (tape, loss, &error));
  g_assert_no_error (error);
  float *g1 = g_new (float, m.d * m.h);
  memcpy (g1, m.w1->grad.data, m.d * m.h * sizeof (float));

  gc_assert (w, 6, mlp_build, &m, NULL, "mlp cross-entropy");
  /* gc's projection r is one scalar here: analytic grad = r · dL/dw1. */
  float rr;
  FgRng rng;
  GcOptions opts;
  gc_options_init (&opts);
  fg_rng_init (&rng, opts.seed, 7);
  fg_rng_fill_uniform (&rng, &rr, 1, -1.0f, 1.0f);
  for (gsize i = 0; i < m.d * m.h; i++)
    g_assert_cmpfloat (fabs (m.w1->grad.data[i] - rr * g1[i]), <=, 1e-6 + 1e-5 * fabs (g1[i]));
  g_free (g1);

  /* With dropout on, the gradient flows through the same mask. */
  m.dropout = 0.3f;
  gc_assert (w, 6, mlp_build, &m, NULL, "mlp cross-entropy with dropout");
  mlp_clear (&m);
}

/* The fused op against fg_op_linear + the activation op, at 600 rows (three blocks): relu's
 * kinks make finite differences useless there, so this is the check of its chunked backward. */
static void
test_linear_act_matches_unfused (void)
{
  static const FgActivation acts[] = { FG_ACT_NONE, FG_ACT_RELU, FG_ACT_LEAKY_RELU, FG_ACT_TANH,
                                       FG_ACT_SIGMOID, FG_ACT_SOFTPLUS };
  const gsize N = 600, I = 7, O = 5;
  g_autoptr (FgWeightSet) set = fg_weight_set_new ();
  FgWeight *x = fg_weight_set_add_2d (set, "x", N, I, FALSE);
  FgWeight *w = fg_weight_set_add_2d (set, "w", I, O, FALSE);
  FgWeight *b = fg_weight_set_add_2d (set, "b", 1, O, FALSE);
  FgWeight *ws[3] = { x, w, b };
  FgRng rng;
  fg_rng_init (&rng, 31, 4);
  for (guint k = 0; k < 3; k++)
    fill_input (ws[k], INIT_NORMAL, &rng);
  float *seed = g_new (float, N * O);
  fg_rng_fill_uniform (&rng, seed, N * O, -1.0f, 1.0f);
  FgTensor st = fg_tensor_wrap_2d (seed, N, O);
  g_autoptr (FgTape) tape = fg_tape_new ();

  for (guint a = 0; a < G_N_ELEMENTS (acts); a++)
    {
      float *ref[4];
      for (guint pass = 0; pass < 2; pass++)
        {
          fg_tape_reset (tape);
          fg_weight_set_zero_grad (set);
          FgVar *xv = fg_tape_weight (tape, x), *wv = fg_tape_weight (tape, w);
          FgVar *bv = fg_tape_weight (tape, b), *y;
          if (pass == 0)
            {
              y = fg_op_linear (tape, xv, wv, bv);
              switch (acts[a])
                {
                case FG_ACT_NONE:
                  break;
                case FG_ACT_RELU:
                  y = fg_op_relu (tape, y);
                  break;
                case FG_ACT_LEAKY_RELU:
                  y = fg_op_leaky_relu (tape, y, 0.2f);
                  break;
                case FG_ACT_TANH:
                  y = fg_op_tanh (tape, y);
                  break;
                case FG_ACT_SIGMOID:
                  y = fg_op_sigmoid (tape, y);
                  break;
                case FG_ACT_SOFTPLUS:
                  y = fg_op_softplus (tape, y);
                  break;
                }
            }
          else
            y = fg_op_linear_act (tape, xv, wv, bv, acts[a], 0.2f);
          g_assert_true (fg_tape_backward_seed (tape, y, &st, NULL));
          const float *got[4] = { y->value.data, x->grad.data, w->grad.data, b->grad.data };
          const gsize len[4] = { N * O, N * I, I * O, O };
          for (guint k = 0; k < 4; k++)
            {
              if (pass == 0)
                {
                  ref[k] = g_new (float, len[k]);
                  memcpy (ref[k], got[k], len[k] * sizeof (float));
                  continue;
                }
              double worst = 0;
              for (gsize i = 0; i < len[k]; i++)
                worst = MAX (worst, fabs (got[k][i] - ref[k][i]) / MAX (1.0, fabs (ref[k][i])));
              /* dW and db sum over blocks in the fused op, over all rows at once unfused. */
              g_assert_cmpfloat (worst, <=, k < 2 ? 1e-6 : 1e-5);
              g_free (ref[k]);
            }
        }
    }
  g_free (seed);

  expect_critical ("*fg_op_linear_act*slope*");
  g_assert_null (fg_op_linear_act (tape, fg_tape_weight (tape, x), fg_tape_weight (tape, w), NULL,
                                   FG_ACT_LEAKY_RELU, -0.5f));
  g_test_assert_expected_messages ();
}

/* fg_op_linear_act_dropout against fg_op_linear_act + fg_op_dropout with the same draw, at 600
 * rows (three blocks) and 40 columns, for p = 0.5 (one bit an element) and p = 0.3: the values
 * bit for bit and the gradients within rounding (relu's kinks make finite differences useless
 * at this size), the RNG left in the same state. */
static void
test_linear_act_dropout_matches_pair (void)
{
  const gsize N = 600, I = 3, O = 40;
  const float ps[] = { 0.5f, 0.3f };
  g_autoptr (FgWeightSet) set = fg_weight_set_new ();
  FgWeight *x = fg_weight_set_add_2d (set, "x", N, I, FALSE);
  FgWeight *w = fg_weight_set_add_2d (set, "w", I, O, FALSE);
  FgWeight *b = fg_weight_set_add_2d (set, "b", 1, O, FALSE);
  FgWeight *ws[3] = { x, w, b };
  FgRng rng;
  fg_rng_init (&rng, 32, 4);
  for (guint k = 0; k < 3; k++)
    fill_input (ws[k], INIT_NORMAL, &rng);
  g_autofree float *seed = g_new (float, N * O);
  fg_rng_fill_uniform (&rng, seed, N * O, -1.0f, 1.0f);
  FgTensor st = fg_tensor_wrap_2d (seed, N, O);
  g_autoptr (FgTape) tape = fg_tape_new ();

  for (guint pi = 0; pi < G_N_ELEMENTS (ps); pi++)
    {
      float *ref[4];
      guint64 next[2];
      for (guint pass = 0; pass < 2; pass++)
        {
          FgRng drop;
          fg_rng_init (&drop, 5, pi);
          fg_tape_reset (tape);
          fg_weight_set_zero_grad (set);
          FgVar *xv = fg_tape_weight (tape, x), *wv = fg_tape_weight (tape, w);
          FgVar *bv = fg_tape_weight (tape, b), *y;
          if (pass == 0)
            y = fg_op_dropout (tape, fg_op_linear_act (tape, xv, wv, bv, FG_ACT_RELU, 0.0f), ps[pi],
                               &drop, TRUE);
          else
            y = fg_op_linear_act_dropout (tape, xv, wv, bv, FG_ACT_RELU, 0.0f, ps[pi], &drop, TRUE);
          next[pass] = fg_rng_next_u64 (&drop);
          g_assert_true (fg_tape_backward_seed (tape, y, &st, NULL));
          const float *got[4] = { y->value.data, x->grad.data, w->grad.data, b->grad.data };
          const gsize len[4] = { N * O, N * I, I * O, O };
          for (guint k = 0; k < 4; k++)
            {
              if (pass == 0)
                {
                  ref[k] = g_new (float, len[k]);
                  memcpy (ref[k], got[k], len[k] * sizeof (float));
                  continue;
                }
              if (k == 0)
                g_assert_cmpmem (got[k], len[k] * sizeof (float), ref[k], len[k] * sizeof (float));
              double worst = 0;
              for (gsize i = 0; i < len[k]; i++)
                worst = MAX (worst, fabs (got[k][i] - ref[k][i]) / MAX (1.0, fabs (ref[k][i])));
              g_assert_cmpfloat (worst, <=, 1e-6);
              g_free (ref[k]);
            }
        }
      g_assert_cmpuint (next[0], ==, next[1]);
    }
  /* Evaluation: the plain fused op, no draw. */
  FgRng r1, r2;
  fg_rng_init (&r1, 1, 1);
  fg_rng_init (&r2, 1, 1);
  fg_tape_reset (tape);
  FgVar *y = fg_op_linear_act_dropout (tape, fg_tape_weight (tape, x), fg_tape_weight (tape, w),
                                       fg_tape_weight (tape, b), FG_ACT_RELU, 0.0f, 0.5f, &r1,
                                       FALSE);
  g_assert_nonnull (y);
  g_assert_cmpuint (fg_rng_next_u64 (&r1), ==, fg_rng_next_u64 (&r2));
}

/* ---- Tape properties ------------------------------------------------------------------------- */

static void
test_backward_errors (void)
{
  g_autoptr (FgTape) tape = fg_tape_new ();
  g_autoptr (FgWeightSet) set = fg_weight_set_new ();
  FgWeight *w = fg_weight_set_add_2d (set, "w", 3, 2, FALSE);
  fg_weight_init_const (w, -1.0f);
  GError *error = NULL;

  g_assert_false (fg_tape_backward (tape, NULL, &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_FAILED);
  g_clear_error (&error);

  FgVar *x = fg_tape_weight (tape, w);
  g_assert_false (fg_tape_backward (tape, fg_op_sum (tape, x, FG_AXIS_COLS), &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_FAILED);
  g_clear_error (&error);

  /* log(−1) is NaN: refused before any gradient is touched. */
  FgVar *bad = fg_op_sum (tape, fg_op_log (tape, x), FG_AXIS_ALL);
  g_assert_false (fg_tape_backward (tape, bad, &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_NUMERIC);
  g_clear_error (&error);
  for (gsize i = 0; i < 6; i++)
    g_assert_cmpfloat (w->grad.data[i], ==, 0.0f);

  /* Seed of the wrong shape. */
  float seed[6] = { 0 };
  FgTensor st = fg_tensor_wrap_2d (seed, 2, 3);
  g_assert_false (fg_tape_backward_seed (tape, x, &st, &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_FAILED);
  g_clear_error (&error);
  g_assert_false (fg_tape_backward_seed (tape, NULL, &st, &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_FAILED);
  g_clear_error (&error);

  /* A good loss works. */
  fg_weight_init_const (w, 2.0f);
  g_assert_true (fg_tape_backward (tape, fg_op_sum (tape, fg_op_square (tape, x), FG_AXIS_ALL), &error));
  g_assert_no_error (error);
  for (gsize i = 0; i < 6; i++)
    g_assert_cmpfloat (w->grad.data[i], ==, 4.0f);
}

static void
test_null_propagation (void)
{
  g_autoptr (FgTape) tape = fg_tape_new ();
  float data[4] = { 1, 2, 3, 4 };
  FgTensor t = fg_tensor_wrap_2d (data, 2, 2);
  FgVar *a = fg_tape_constant (tape, &t);
  gsize shape4[4] = { 1, 4, 1, 1 };
  gint32 idx[2] = { 0, 1 };
  FgRng rng;
  fg_rng_init (&rng, 1, 1);

  /* No critical may be logged (GTest makes them fatal): the failure was reported upstream. */
  g_assert_null (fg_op_add (tape, NULL, a));
  g_assert_null (fg_op_sub (tape, a, NULL));
  g_assert_null (fg_op_mul (tape, NULL, NULL));
  g_assert_null (fg_op_div (tape, NULL, a));
  g_assert_null (fg_op_add_bias (tape, NULL, a));
  g_assert_null (fg_op_mask (tape, NULL, &t));
  g_assert_null (fg_op_scale (tape, NULL, 2.0f));
  g_assert_null (fg_op_add_scalar (tape, NULL, 2.0f));
  g_assert_null (fg_op_neg (tape, NULL));
  g_assert_null (fg_op_square (tape, NULL));
  g_assert_null (fg_op_exp (tape, NULL));
  g_assert_null (fg_op_log (tape, NULL));
  g_assert_null (fg_op_tanh (tape, NULL));
  g_assert_null (fg_op_sigmoid (tape, NULL));
  g_assert_null (fg_op_softplus (tape, NULL));
  g_assert_null (fg_op_relu (tape, NULL));
  g_assert_null (fg_op_leaky_relu (tape, NULL, 0.1f));
  g_assert_null (fg_op_dropout (tape, NULL, 0.5f, &rng, TRUE));
  g_assert_null (fg_op_sum (tape, NULL, FG_AXIS_ALL));
  g_assert_null (fg_op_mean (tape, NULL, FG_AXIS_ROWS));
  g_assert_null (fg_op_logsumexp (tape, NULL));
  g_assert_null (fg_op_log_softmax (tape, NULL));
  g_assert_null (fg_op_softmax (tape, NULL));
  g_assert_null (fg_op_gather (tape, NULL, idx));
  g_assert_null (fg_op_matmul (tape, a, NULL, FALSE, FALSE));
  g_assert_null (fg_op_linear (tape, NULL, a, NULL));
  g_assert_null (fg_op_linear_act (tape, a, NULL, NULL, FG_ACT_TANH, 0.0f));
  g_assert_null (fg_op_sq_dist (tape, NULL, a));
  g_assert_null (fg_op_concat (tape, a, NULL));
  g_assert_null (fg_op_slice (tape, NULL, 0, 1));
  g_assert_null (fg_op_slice_rows (tape, NULL, 0, 1));
  g_assert_null (fg_op_reshape (tape, NULL, 4, shape4));
  g_assert_null (fg_op_squeeze2d (tape, NULL));
  g_assert_null (fg_op_unsqueeze2d (tape, NULL));
  g_assert_null (fg_op_conv2d (tape, NULL, a, NULL, 0));
  g_assert_null (fg_tape_op_new (tape, 2, t.shape, (FgVar *[]){ a, NULL }, 2, NULL, 0, NULL));

  /* A chain through a failed op ends in a backward error. */
  GError *error = NULL;
  FgVar *loss = fg_op_sum (tape, fg_op_exp (tape, fg_op_add (tape, a, NULL)), FG_AXIS_ALL);
  g_assert_null (loss);
  g_assert_false (fg_tape_backward (tape, loss, &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_FAILED);
  g_clear_error (&error);
}

static void
test_shape_mismatch (void)
{
  g_autoptr (FgTape) tape = fg_tape_new ();
  float buf[64] = { 0 };
  FgTensor t34 = fg_tensor_wrap_2d (buf, 3, 4), t24 = fg_tensor_wrap_2d (buf, 2, 4);
  FgTensor t33 = fg_tensor_wrap_2d (buf, 3, 3), t4d = fg_tensor_wrap_4d (buf, 1, 3, 3, 3);
  FgVar *a = fg_tape_constant (tape, &t34), *b = fg_tape_constant (tape, &t24);
  FgVar *c = fg_tape_constant (tape, &t33), *img = fg_tape_constant (tape, &t4d);
  gint32 idx[3] = { 0, 4, 1 };
  gsize bad_shape[2] = { 5, 5 };

  expect_critical ("*fg_op_add*does not broadcast*");
  g_assert_null (fg_op_add (tape, a, b));
  expect_critical ("*fg_op_mul*does not broadcast*");
  g_assert_null (fg_op_mul (tape, a, c));
  expect_critical ("*fg_op_add_bias*");
  g_assert_null (fg_op_add_bias (tape, a, b));
  expect_critical ("*fg_op_matmul*inner sizes*");
  g_assert_null (fg_op_matmul (tape, a, a, FALSE, FALSE));
  expect_critical ("*fg_op_linear*");
  g_assert_null (fg_op_linear (tape, a, c, NULL));
  expect_critical ("*fg_op_sq_dist*");
  g_assert_null (fg_op_sq_dist (tape, a, c));
  expect_critical ("*fg_op_concat*");
  g_assert_null (fg_op_concat (tape, a, b));
  expect_critical ("*fg_op_slice*");
  g_assert_null (fg_op_slice (tape, a, 3, 2));
  expect_critical ("*fg_op_slice_rows*");
  g_assert_null (fg_op_slice_rows (tape, a, 2, 2));
  expect_critical ("*fg_op_reshape*");
  g_assert_null (fg_op_reshape (tape, a, 2, bad_shape));
  expect_critical ("*fg_op_gather*index 4*");
  g_assert_null (fg_op_gather (tape, a, idx));
  expect_critical ("*fg_op_squeeze2d*");
  g_assert_null (fg_op_squeeze2d (tape, img));
  expect_critical ("*fg_op_unsqueeze2d*");
  g_assert_null (fg_op_unsqueeze2d (tape, img));
  expect_critical ("*fg_op_conv2d*");
  g_assert_null (fg_op_conv2d (tape, img, a, NULL, 1));
  expect_critical ("*p >= 0.0f && p < 1.0f*");
  g_assert_null (fg_op_dropout (tape, a, 1.0f, NULL, TRUE));
  g_test_assert_expected_messages ();
}

static void
test_grad_disabled (void)
{
  Mlp m;
  mlp_init (&m, 16, 5, 8, 3, 0.25f);
  g_autoptr (FgTape) tape = fg_tape_new ();
  FgTapeStats st;

  FgVar *on = mlp_step (tape, &m);
  const float v_on = on->value.data[0];
  fg_tape_get_stats (tape, &st);
  g_assert_cmpuint (st.n_nodes, ==, 10); /* 10 ops; leaves are not records */

  fg_tape_reset (tape);
  fg_tape_set_grad_enabled (tape, FALSE);
  g_assert_false (fg_tape_get_grad_enabled (tape));
  FgVar *off = mlp_step (tape, &m);
  fg_tape_get_stats (tape, &st);
  g_assert_cmpuint (st.n_nodes, ==, 0);
  g_assert_false (off->requires_grad);
  g_assert_cmpfloat (off->value.data[0], ==, v_on);

  /* Backward of a loss that needs no gradient succeeds and touches nothing. */
  GError *error = NULL;
  fg_weight_set_zero_grad (m.set);
  g_assert_true (fg_tape_backward (tape, off, &error));
  g_assert_no_error (error);
  g_assert_cmpfloat (fg_weight_set_grad_norm (m.set), ==, 0.0);
  fg_tape_set_grad_enabled (tape, TRUE);

  /* An untrainable weight is a leaf without gradient. */
  m.w1->trainable = FALSE;
  fg_tape_reset (tape);
  FgVar *leaf = fg_tape_weight (tape, m.w1);
  g_assert_false (leaf->requires_grad);
  g_assert_null (fg_tape_grad (tape, leaf));
  FgVar *loss = mlp_step (tape, &m);
  g_assert_true (fg_tape_backward (tape, loss, &error));
  g_assert_cmpfloat (fg_weight_set_grad_norm (m.set), >, 0.0);
  for (gsize i = 0; i < m.d * m.h; i++)
    g_assert_cmpfloat (m.w1->grad.data[i], ==, 0.0f);
  mlp_clear (&m);
}

static void
test_reset_rerun (void)
{
  Mlp m;
  mlp_init (&m, 32, 7, 16, 4, 0.2f);
  g_autoptr (FgTape) tape = fg_tape_new ();
  GError *error = NULL;
  float loss[2];
  float *grads[2];

  for (guint run = 0; run < 2; run++)
    {
      fg_tape_reset (tape);
      fg_weight_set_zero_grad (m.set);
      FgVar *l = mlp_step (tape, &m);
      g_assert_true (fg_tape_backward (tape, l, &error));
      loss[run] = l->value.data[0];
      grads[run] = g_new (float, m.h * m.h);
      memcpy (grads[run], m.w2->grad.data, m.h * m.h * sizeof (float));
    }
  /* Bit for bit: same arena memory, same kernels, same order. */
  g_assert_cmpmem (&loss[0], sizeof (float), &loss[1], sizeof (float));
  g_assert_cmpmem (grads[0], m.h * m.h * sizeof (float), grads[1], m.h * m.h * sizeof (float));
  g_free (grads[0]);
  g_free (grads[1]);

  /* Two backward passes on one tape accumulate into the weights only. */
  fg_tape_reset (tape);
  fg_weight_set_zero_grad (m.set);
  FgVar *l = mlp_step (tape, &m);
  g_assert_true (fg_tape_backward (tape, l, &error));
  float *once = g_new (float, m.h * m.h);
  memcpy (once, m.w2->grad.data, m.h * m.h * sizeof (float));
  g_assert_true (fg_tape_backward (tape, l, &error));
  for (gsize i = 0; i < m.h * m.h; i++)
    g_assert_cmpfloat (fabs (m.w2->grad.data[i] - 2.0f * once[i]), <=, 1e-6f * (1 + fabsf (once[i])));
  g_free (once);
  mlp_clear (&m);
}

/* A step touching every kind of allocation: weights, views, concat, conv, reductions. */
static FgVar *
warm_step (FgTape *tape, Mlp *m, FgWeight *cw, FgWeight *cb, FgWeight *lw, const float *img)
{
  FgVar *loss = mlp_step (tape, m);
  FgTensor it = fg_tensor_wrap_4d ((float *) img, 8, 4, 8, 8);
  FgVar *x = fg_tape_constant (tape, &it);
  FgVar *c = fg_op_conv2d (tape, fg_op_slice (tape, x, 1, 2), fg_tape_weight (tape, cw),
                           fg_tape_weight (tape, cb), 1);
  FgVar *s = fg_op_squeeze2d (tape, fg_op_concat (tape, c, fg_op_slice (tape, x, 0, 1)));
  FgVar *r = fg_op_sum (tape, fg_op_square (tape, fg_op_reshape (tape, s, 2, (gsize[]){ 8, 4 * 4 * 4 * 4 })),
                        FG_AXIS_ALL);
  FgVar *f = fg_op_linear_act (tape, fg_op_reshape (tape, c, 2, (gsize[]){ 8, 3 * 8 * 8 }),
                               fg_tape_weight (tape, lw), NULL, FG_ACT_TANH, 0.0f);
  r = fg_op_add (tape, r, fg_op_sum (tape, f, FG_AXIS_ALL));
  return fg_op_add (tape, loss, fg_op_scale (tape, r, 1e-3f));
}

static void
test_no_heap_after_warmup (void)
{
  /* Big enough that a step spans several arena blocks (each activation ~1 MiB). */
  Mlp m;
  mlp_init (&m, 512, 64, 512, 10, 0.1f);
  g_autoptr (FgWeightSet) set = fg_weight_set_new ();
  FgWeight *cw = fg_weight_set_add (set, "cw", 4, (gsize[]){ 3, 2, 3, 3 }, TRUE);
  FgWeight *cb = fg_weight_set_add_2d (set, "cb", 1, 3, FALSE);
  FgWeight *lw = fg_weight_set_add_2d (set, "lw", 3 * 8 * 8, 16, TRUE);
  fg_weight_init_const (lw, 0.01f);
  float *img = g_new0 (float, 8 * 4 * 8 * 8);
  for (gsize i = 0; i < 8 * 4 * 8 * 8; i++)
    img[i] = sinf ((float) i);
  fg_weight_init_const (cw, 0.1f);

  g_autoptr (FgTape) tape = fg_tape_new ();
  FgTapeStats st[3];
  float loss[3];
  GError *error = NULL;
  for (guint step = 0; step < 3; step++)
    {
      fg_tape_reset (tape);
      FgVar *l = warm_step (tape, &m, cw, cb, lw, img);
      g_assert_true (fg_tape_backward (tape, l, &error));
      g_assert_no_error (error);
      loss[step] = l->value.data[0];
      fg_tape_get_stats (tape, &st[step]);
      g_test_message ("step %u: %" G_GSIZE_FORMAT " records, arena %" G_GSIZE_FORMAT
                      " bytes, %" G_GSIZE_FORMAT " heap allocations",
                      step, st[step].n_nodes, st[step].arena_bytes, st[step].heap_allocs);
    }
  g_assert_cmpuint (st[0].arena_bytes, >, 4u << 20); /* several blocks were needed */
  g_assert_cmpuint (st[1].heap_allocs, ==, st[0].heap_allocs);
  g_assert_cmpuint (st[2].heap_allocs, ==, st[0].heap_allocs);
  g_assert_cmpuint (st[2].arena_bytes, ==, st[0].arena_bytes);
  g_assert_cmpuint (st[2].n_nodes, ==, st[0].n_nodes);
  g_assert_cmpfloat (loss[0], ==, loss[2]);

  /* A smaller step afterwards fits in what is there. */
  fg_tape_reset (tape);
  g_assert_nonnull (mlp_step (tape, &m));
  FgTapeStats after;
  fg_tape_get_stats (tape, &after);
  g_assert_cmpuint (after.heap_allocs, ==, st[0].heap_allocs);
  g_free (img);
  mlp_clear (&m);
}

static void
test_arena (void)
{
  g_autoptr (FgTape) tape = fg_tape_new ();
  static const gsize sizes[] = { 1, 3, 64, 65, 1000, 5 << 20, 17, 300000, 2 << 20, 8 };
  gpointer first[G_N_ELEMENTS (sizes)];
  FgTapeStats st0, st1;

  for (guint round = 0; round < 2; round++)
    {
      fg_tape_reset (tape);
      guint8 *p[G_N_ELEMENTS (sizes)];
      for (guint i = 0; i < G_N_ELEMENTS (sizes); i++)
        {
          p[i] = fg_tape_alloc (tape, sizes[i]);
          g_assert_nonnull (p[i]);
          g_assert_cmpuint ((guintptr) p[i] % 64, ==, 0);
          memset (p[i], (int) i + 1, sizes[i]);
          if (round == 0)
            first[i] = p[i];
          else /* the same sequence of requests gets the same memory */
            g_assert_true (p[i] == first[i]);
        }
      for (guint i = 0; i < G_N_ELEMENTS (sizes); i++)
        for (gsize k = 0; k < sizes[i]; k += 997)
          g_assert_cmpuint (p[i][k], ==, i + 1); /* nothing overlapped */
      fg_tape_get_stats (tape, round == 0 ? &st0 : &st1);
    }
  g_assert_cmpuint (st1.heap_allocs, ==, st0.heap_allocs);
  g_assert_cmpuint (st0.arena_bytes, >=, (gsize) (7 << 20) + 300000);

  /* Leaves: a wrapped constant aliases, a copy does not, empty tensors are contiguous. */
  float data[6] = { 1, 2, 3, 4, 5, 6 };
  FgTensor t = fg_tensor_wrap_2d (data, 2, 3);
  FgVar *c = fg_tape_constant (tape, &t), *cc = fg_tape_constant_copy (tape, &t);
  g_assert_true (c->value.data == data);
  g_assert_false (cc->value.data == data);
  g_assert_cmpmem (cc->value.data, sizeof data, data, sizeof data);
  g_assert_false (c->requires_grad || cc->requires_grad);
  FgVar *e = fg_tape_empty_2d (tape, 5, 7);
  g_assert_cmpuint (e->value.ld, ==, 7);
  g_assert_cmpuint ((guintptr) fg_tape_alloc_floats (tape, 3) % 64, ==, 0);
  FgTensor strided = fg_tensor_view_cols (&t, 1, 2);
  FgVar *sc = fg_tape_constant_copy (tape, &strided);
  g_assert_cmpuint (sc->value.ld, ==, 2);
  g_assert_cmpfloat (sc->value.data[2], ==, 5.0f);
}

static void
test_dropout (void)
{
  g_autoptr (FgTape) tape = fg_tape_new ();
  const gsize n = 200, d = 150;
  float *data = g_new (float, n * d);
  for (gsize i = 0; i < n * d; i++)
    data[i] = 1.0f + (float) (i % 7);
  FgTensor t = fg_tensor_wrap_2d (data, n, d);
  FgVar *a = fg_tape_constant (tape, &t);
  FgRng r1, r2, fresh;

  /* Evaluation and p = 0 return the input itself and draw nothing. */
  fg_rng_init (&r1, 3, 0);
  fg_rng_init (&fresh, 3, 0);
  g_assert_true (fg_op_dropout (tape, a, 0.5f, &r1, FALSE) == a);
  g_assert_true (fg_op_dropout (tape, a, 0.0f, &r1, TRUE) == a);
  g_assert_cmpuint (fg_rng_next_u64 (&r1), ==, fg_rng_next_u64 (&fresh));

  /* Same seed, same mask; another seed, another mask. */
  const float p = 0.3f;
  fg_rng_init (&r1, 11, 2);
  fg_rng_init (&r2, 11, 2);
  FgVar *o1 = fg_op_dropout (tape, a, p, &r1, TRUE);
  FgVar *o2 = fg_op_dropout (tape, a, p, &r2, TRUE);
  g_assert_cmpmem (o1->value.data, n * d * sizeof (float), o2->value.data, n * d * sizeof (float));
  fg_rng_init (&r2, 12, 2);
  FgVar *o3 = fg_op_dropout (tape, a, p, &r2, TRUE);
  g_assert_true (memcmp (o1->value.data, o3->value.data, n * d * sizeof (float)) != 0);

  /* Dropped fraction ≈ p (4 standard deviations), survivors scaled by exactly 1/(1-p). */
  gsize zeros = 0;
  const float keep = 1.0f / (1.0f - p);
  for (gsize i = 0; i < n * d; i++)
    {
      const float v = o1->value.data[i];
      if (v == 0.0f)
        zeros++;
      else
        g_assert_cmpfloat (v, ==, data[i] * keep);
    }
  const double frac = (double) zeros / (double) (n * d);
  const double sd = sqrt (p * (1 - p) / (double) (n * d));
  g_test_message ("dropout p=%.2f: dropped %.4f (sd %.4f)", p, frac, sd);
  g_assert_cmpfloat (fabs (frac - p), <=, 4 * sd);

  /* The gradient flows through the same mask: d(Σ out)/da = mask exactly. */
  g_autoptr (FgWeightSet) set = fg_weight_set_new ();
  FgWeight *w = fg_weight_set_add_2d (set, "a", 20, 30, FALSE);
  fg_weight_init_const (w, 2.0f);
  fg_tape_reset (tape);
  fg_rng_init (&r1, 5, 5);
  FgVar *o = fg_op_dropout (tape, fg_tape_weight (tape, w), 0.5f, &r1, TRUE);
  GError *error = NULL;
  g_assert_true (fg_tape_backward (tape, fg_op_sum (tape, o, FG_AXIS_ALL), &error));
  for (gsize i = 0; i < 600; i++)
    g_assert_cmpfloat (w->grad.data[i], ==, o->value.data[i] / 2.0f);
  g_free (data);
}

/* Overlapping views of one weight: rows, columns, reshape; each consumer's gradient lands in
 * the right range of the parent. */
static FgVar *
build_views (FgTape *tape, FgVar *const *in, gpointer data)
{
  FgVar *p = in[0]; /* [6, 4] */
  FgVar *r1 = fg_op_slice_rows (tape, p, 1, 3);
  FgVar *r2 = fg_op_slice_rows (tape, p, 2, 4);
  FgVar *c1 = fg_op_slice (tape, r2, 1, 2);                      /* strided view of a view */
  FgVar *rs = fg_op_reshape (tape, p, 4, (gsize[]){ 6, 2, 2, 1 }); /* all of it */
  FgVar *cc = fg_op_slice (tape, rs, 1, 1);                        /* channel 1 */
  FgVar *t1 = fg_op_sum (tape, fg_op_square (tape, r1), FG_AXIS_COLS);        /* [3, 1] */
  FgVar *t2 = fg_op_sum (tape, fg_op_exp (tape, c1), FG_AXIS_COLS);           /* [4, 1] */
  FgVar *t3 = fg_op_sum (tape, fg_op_mul (tape, cc, cc), FG_AXIS_COLS);       /* [6, 1] */
  FgVar *u = fg_op_concat (tape, fg_op_slice_rows (tape, t3, 0, 3), t1);      /* [3, 2] */
  FgVar *v = fg_op_concat (tape, fg_op_slice_rows (tape, t3, 2, 4), t2);      /* [4, 2] */
  return fg_op_add (tape, fg_op_sum (tape, u, FG_AXIS_ROWS), fg_op_sum (tape, v, FG_AXIS_ROWS));
}

static void
test_view_gradients (void)
{
  g_autoptr (FgWeightSet) set = fg_weight_set_new ();
  FgWeight *w = fg_weight_set_add_2d (set, "p", 6, 4, FALSE);
  FgRng rng;
  fg_rng_init (&rng, 8, 8);
  fill_input (w, INIT_NORMAL, &rng);
  gc_assert (&w, 1, build_views, NULL, NULL, "overlapping views");
}

static void
test_numeric_extremes (void)
{
  g_autoptr (FgTape) tape = fg_tape_new ();
  float x[8] = { -100.0f, -30.0f, -1e-3f, 0.0f, 1e-3f, 30.0f, 100.0f, 88.0f };
  FgTensor t = fg_tensor_wrap_2d (x, 1, 8);
  FgVar *a = fg_tape_constant (tape, &t);

  FgVar *sp = fg_op_softplus (tape, a);
  for (guint j = 0; j < 8; j++)
    {
      const double ref = x[j] > 0 ? x[j] + log1p (exp (-(double) x[j])) : log1p (exp ((double) x[j]));
      g_assert_true (isfinite (sp->value.data[j]));
      g_assert_cmpfloat (fabs (sp->value.data[j] - ref), <=, 1e-6 * MAX (1e-30, fabs (ref)) + 1e-44);
    }
  FgVar *sg = fg_op_sigmoid (tape, a);
  /* σ(−100) = 3.7e-44, a subnormal (as torch.sigmoid gives it), or 0 */
  g_assert_cmpfloat (sg->value.data[0], >=, 0.0f);
  g_assert_cmpfloat (sg->value.data[0], <, 4e-44f);
  g_assert_cmpfloat (sg->value.data[6], ==, 1.0f);

  /* relu keeps NaN (a diverging run must stay visible), maps −inf to 0 and −3 to +0. */
  float rx[6] = { -INFINITY, NAN, INFINITY, -3.0f, 0.0f, 2.0f };
  FgTensor rt = fg_tensor_wrap_2d (rx, 1, 6);
  FgVar *rl = fg_op_relu (tape, fg_tape_constant (tape, &rt));
  g_assert_cmpfloat (rl->value.data[0], ==, 0.0f);
  g_assert_true (isnan (rl->value.data[1]));
  g_assert_true (isinf (rl->value.data[2]) && rl->value.data[2] > 0);
  g_assert_cmpfloat (rl->value.data[3], ==, 0.0f);
  g_assert_false (signbit (rl->value.data[3]));
  g_assert_cmpfloat (rl->value.data[5], ==, 2.0f);

  /* logsumexp and log_softmax at large magnitudes, and an all −inf row. */
  float big[6] = { 1000.0f, 999.0f, -1000.0f, -INFINITY, -INFINITY, -INFINITY };
  FgTensor bt = fg_tensor_wrap_2d (big, 2, 3);
  FgVar *b = fg_tape_constant (tape, &bt);
  FgVar *lse = fg_op_logsumexp (tape, b);
  g_assert_cmpfloat (fabs (lse->value.data[0] - (1000.0 + log1p (exp (-1.0)))), <=, 1e-3);
  g_assert_true (isinf (lse->value.data[1]) && lse->value.data[1] < 0);
  FgVar *ls = fg_op_log_softmax (tape, fg_op_slice_rows (tape, b, 0, 1));
  g_assert_cmpfloat (fabs (ls->value.data[1] - (-1.0 - log1p (exp (-1.0)))), <=, 1e-6);
  g_assert_true (isfinite (ls->value.data[2]));
  FgVar *sm = fg_op_softmax (tape, fg_op_slice_rows (tape, b, 0, 1));
  g_assert_cmpfloat (fabs (sm->value.data[0] + sm->value.data[1] + sm->value.data[2] - 1.0), <=, 1e-6);

  /* Reductions in double: 1e7 ones plus small values do not lose the small ones. */
  const gsize n = 1 << 20;
  float *v = g_new (float, n);
  for (gsize i = 0; i < n; i++)
    v[i] = i == 0 ? 1e7f : 0.25f;
  FgTensor vt = fg_tensor_wrap_2d (v, 1, n);
  FgVar *s = fg_op_sum (tape, fg_tape_constant (tape, &vt), FG_AXIS_ALL);
  g_assert_cmpfloat (s->value.data[0], ==, (float) (1e7 + 0.25 * (double) (n - 1)));
  g_free (v);

  /* sq_dist of a point with itself is exactly 0, never negative. */
  float pts[6] = { 3.1f, -2.7f, 11.3f, 3.1f, -2.7f, 11.3f };
  FgTensor pt = fg_tensor_wrap_2d (pts, 2, 3);
  FgVar *pv = fg_tape_constant (tape, &pt);
  FgVar *dd = fg_op_sq_dist (tape, pv, pv);
  for (guint k = 0; k < 4; k++)
    g_assert_cmpfloat (dd->value.data[k], >=, 0.0f);
}


/* ---- The gradient norm taken during backward ------------------------------------------------ */

/* A model that reaches its weights in every way a backward pass can: through a row view (W1,
 * whose gradient is written by the product that reads the view), a second leaf of the same
 * weight created later (W1 again), a column view with a gradient of its own (W6), in place by
 * linear_cols (W2, large enough to be summed in many chunks over the threads), a bias; W4 is
 * trainable but not on the tape (its gradient was set by hand), W5 is read with gradients off
 * and W3 is frozen. */
typedef struct {
  FgWeightSet *set;
  FgWeight *w1, *b, *w2, *w3, *w4, *w5, *w6, *w7;
} NormModel;

static const guint32 norm_cols[] = { 0, 1, 2, 3, 4, 5, 6, 7, 50000, 50001, 50002, 69999 };

static void
norm_model_init (NormModel *nm, guint seed)
{
  FgRng rng;
  fg_rng_init (&rng, seed, 1);
  nm->set = fg_weight_set_new ();
  nm->w1 = fg_weight_set_add_2d (nm->set, "w1", 40, 30, TRUE);
  nm->b = fg_weight_set_add_2d (nm->set, "b", 1, 30, FALSE);
  nm->w3 = fg_weight_set_add_2d (nm->set, "w3", 4, 4, TRUE);
  nm->w2 = fg_weight_set_add_2d (nm->set, "w2", 30, 70000, TRUE);
  nm->w4 = fg_weight_set_add_2d (nm->set, "w4", 1, 10, TRUE);
  nm->w5 = fg_weight_set_add_2d (nm->set, "w5", 30, 30, TRUE);
  nm->w6 = fg_weight_set_add_2d (nm->set, "w6", 30, 6, TRUE);
  /* wide enough (8 × 30 × 1024) for the linear backward to run its products on the pool */
  nm->w7 = fg_weight_set_add_2d (nm->set, "w7", 30, 1024, TRUE);
  for (guint i = 0; i < fg_weight_set_len (nm->set); i++)
    fg_weight_init_uniform (fg_weight_set_get (nm->set, i), &rng, 0.3f);
  nm->w3->trainable = FALSE;
}

/* Forward and backward on a zeroed set; a second backward pass from another output when
 * `twice` (it reaches W1 and W6 only, which accumulate). */
static void
norm_model_step (NormModel *nm, FgTape *tape, gboolean twice)
{
  GError *error = NULL;
  float xd[8 * 40];
  for (guint i = 0; i < G_N_ELEMENTS (xd); i++)
    xd[i] = sinf (0.37f * (float) i);
  FgTensor xt = fg_tensor_wrap_2d (xd, 8, 40);
  fg_weight_set_zero_grad (nm->set);
  for (guint i = 0; i < 10; i++)
    nm->w4->grad.data[i] = 0.5f - 0.1f * (float) i;
  fg_tape_reset (tape);
  FgVar *x = fg_tape_constant (tape, &xt);
  FgVar *h = fg_op_linear (tape, fg_op_slice (tape, x, 0, 20),
                           fg_op_slice_rows (tape, fg_tape_weight (tape, nm->w1), 5, 20),
                           fg_tape_weight (tape, nm->b));
  h = fg_op_tanh (tape, h);
  fg_tape_set_grad_enabled (tape, FALSE);
  FgVar *k = fg_op_matmul (tape, h, fg_tape_weight (tape, nm->w5), FALSE, FALSE);
  fg_tape_set_grad_enabled (tape, TRUE);
  h = fg_op_add (tape, h, k);
  FgVar *y = fg_op_linear_cols (tape, h, fg_tape_weight (tape, nm->w2), NULL, norm_cols,
                                G_N_ELEMENTS (norm_cols));
  FgVar *h2 = fg_op_matmul (tape, x, fg_tape_weight (tape, nm->w1), FALSE, FALSE);
  FgVar *c = fg_op_slice (tape, fg_tape_weight (tape, nm->w6), 2, 3);
  FgVar *h3 = fg_op_matmul (tape, fg_op_tanh (tape, h2), c, FALSE, FALSE);
  /* a weight used whole by one linear: the kernel takes its norm (fg_tape_get_fused_norms) */
  FgVar *z = fg_op_linear_act (tape, h, fg_tape_weight (tape, nm->w7), NULL, FG_ACT_TANH, 0.0f);
  FgVar *l = fg_op_add (tape, fg_op_sum (tape, fg_op_square (tape, y), FG_AXIS_ALL),
                        fg_op_sum (tape, h3, FG_AXIS_ALL));
  l = fg_op_add (tape, l, fg_op_sum (tape, fg_op_square (tape, z), FG_AXIS_ALL));
  g_assert_true (fg_tape_backward (tape, l, &error));
  g_assert_no_error (error);
  if (twice)
    {
      float seed[8 * 3];
      for (guint i = 0; i < G_N_ELEMENTS (seed); i++)
        seed[i] = 0.1f * (float) i;
      FgTensor st = fg_tensor_wrap_2d (seed, 8, 3);
      g_assert_true (fg_tape_backward_seed (tape, h3, &st, &error));
      g_assert_no_error (error);
    }
}

/* fg_tape_grad_norm equals fg_weight_set_grad_norm bit for bit: after one backward pass, after
 * a second one, after a reset (nothing cached: every weight summed afresh), with tracking on
 * and off (summed afterwards), for several thread counts; and the clipped update from it equals
 * fg_optimizer_step_clipped bit for bit. */
static void
test_grad_norm_fused (void)
{
  const guint saved = fg_get_num_threads ();
  const guint threads[] = { 1, 2, 3 };
  for (guint ti = 0; ti < G_N_ELEMENTS (threads); ti++)
    for (guint mode = 0; mode < 4; mode++)
      {
        /* two backward passes or one; norms tracked during backward, or summed afterwards */
        const gboolean twice = mode % 2, track = mode < 2;
        NormModel a, b;
        fg_set_num_threads (threads[ti]);
        norm_model_init (&a, 3);
        norm_model_init (&b, 3);
        g_autoptr (FgTape) tape = fg_tape_new ();
        fg_tape_set_track_grad_norms (tape, track);
        FgOptimConfig cfg;
        fg_optim_config_init (&cfg, FG_OPTIM_ADAMW);
        cfg.weight_decay = 1e-2;
        g_autoptr (FgOptimizer) oa = fg_optimizer_new (&cfg, a.set);
        g_autoptr (FgOptimizer) ob = fg_optimizer_new (&cfg, b.set);
        for (guint step = 0; step < 3; step++)
          {
            norm_model_step (&a, tape, twice);
            /* W7, in the first pass only (the second does not reach it) */
            g_assert_cmpuint (fg_tape_get_fused_norms (tape), ==, track && !twice ? 1 : 0);
            const double plain = fg_weight_set_grad_norm (a.set);
            const double fused = fg_tape_grad_norm (tape, a.set);
            g_test_message ("threads %u, %s backward pass, %s: norm %.17g", threads[ti],
                            twice ? "second" : "one", track ? "tracked" : "not tracked", plain);
            g_assert_cmpfloat (plain, >, 0.0);
            g_assert_cmpmem (&fused, sizeof fused, &plain, sizeof plain);
            /* the same gradients in b, clipped and updated the plain way */
            for (guint i = 0; i < fg_weight_set_len (a.set); i++)
              {
                const FgWeight *wa = fg_weight_set_get (a.set, i);
                memcpy (fg_weight_set_get (b.set, i)->grad.data, wa->grad.data,
                        fg_tensor_numel (&wa->grad) * sizeof (float));
              }
            const double max_norm = 0.5 * plain; /* clipping is active */
            g_assert_cmpfloat (fg_optimizer_step_clip_norm (oa, 1e-2, fused, max_norm, TRUE), ==,
                               fused);
            g_assert_cmpfloat (fg_optimizer_step_clipped (ob, 1e-2, max_norm, TRUE), ==, plain);
            for (guint i = 0; i < fg_weight_set_len (a.set); i++)
              {
                const FgWeight *wa = fg_weight_set_get (a.set, i);
                const FgWeight *wb = fg_weight_set_get (b.set, i);
                const gsize n = fg_tensor_numel (&wa->value) * sizeof (float);
                g_assert_cmpmem (wa->value.data, n, wb->value.data, n);
                g_assert_cmpmem (wa->grad.data, n, wb->grad.data, n);
              }
          }
        /* tracked norms come from the backward pass, not from the gradients as they are now */
        norm_model_step (&a, tape, twice);
        const double plain = fg_weight_set_grad_norm (a.set);
        if (track)
          {
            const float g0 = a.w1->grad.data[0];
            a.w1->grad.data[0] = g0 + 1.0f;
            const double cached = fg_tape_grad_norm (tape, a.set);
            g_assert_cmpmem (&cached, sizeof cached, &plain, sizeof plain);
            g_assert_cmpfloat (fg_weight_set_grad_norm (a.set), !=, plain);
            a.w1->grad.data[0] = g0;
          }
        /* nothing cached after a reset: the same value, summed here */
        fg_tape_reset (tape);
        const double again = fg_tape_grad_norm (tape, a.set);
        g_assert_cmpmem (&again, sizeof again, &plain, sizeof plain);
        /* a non-finite norm updates nothing */
        const float w0 = a.w1->value.data[0];
        g_assert_true (isnan (fg_optimizer_step_clip_norm (oa, 1e-2, NAN, 1.0, TRUE)));
        g_assert_cmpfloat (a.w1->value.data[0], ==, w0);
        g_assert_cmpuint (fg_optimizer_get_steps (oa), ==, 3);
        fg_weight_set_free (a.set);
        fg_weight_set_free (b.set);
      }
  fg_set_num_threads (saved);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *path = g_strdup_printf ("/tape/op/%s", cases[i].name);
      g_test_add_data_func (path, &cases[i], test_op_case);
    }
  g_test_add_func ("/tape/gradcheck/custom-op", test_custom_op);
  g_test_add_func ("/tape/gradcheck/views", test_view_gradients);
  g_test_add_func ("/tape/gradcheck/mlp-cross-entropy", test_composite_mlp);
  g_test_add_func ("/tape/linear-act/matches-unfused", test_linear_act_matches_unfused);
  g_test_add_func ("/tape/linear-act-dropout/matches-pair", test_linear_act_dropout_matches_pair);
  g_test_add_func ("/tape/backward/errors", test_backward_errors);
  g_test_add_func ("/tape/null-propagation", test_null_propagation);
  g_test_add_func ("/tape/shape-mismatch", test_shape_mismatch);
  g_test_add_func ("/tape/grad-disabled", test_grad_disabled);
  g_test_add_func ("/tape/reset-rerun", test_reset_rerun);
  g_test_add_func ("/tape/arena", test_arena);
  g_test_add_func ("/tape/no-heap-after-warmup", test_no_heap_after_warmup);
  g_test_add_func ("/tape/dropout", test_dropout);
  g_test_add_func ("/tape/numeric-extremes", test_numeric_extremes);
  g_test_add_func ("/tape/grad-norm-fused", test_grad_norm_fused);
  return g_test_run ();
}
