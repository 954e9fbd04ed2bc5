/* SPDX-License-Identifier: MIT */
/* flowgmm — elementwise ops: binary with broadcasting of b, unary maps, masks and dropout.
 *
 * Every loop runs row by row with each tensor's own ld (inputs may be strided views) and a
 * contiguous inner loop written for gcc -O2's vectorizer (see FG_SIMD_FOR).  Outputs and
 * gradients are contiguous.  Backward passes write instead of accumulate when they are the
 * first to touch a gradient (_fg_tape_grad_fresh), saving the zero fill.
 */
#include "config.h"

/* no-trapping-math lets gcc if-convert the selects of the vector math and of the masks below
 * (nothing here reads floating-point exception flags); the values are the same. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize ("no-trapping-math", "fp-contract=off")
#endif

#include "numeric/numeric-private.h"
#include <flowgmm/vecmath.h>

/* ---- Broadcasting ------------------------------------------------------------------------ */

typedef enum {
  BC_FULL,   /* b has a's rows and columns */
  BC_ROW,    /* b is [1, cols]: broadcast over rows */
  BC_COL,    /* b is [rows, 1]: broadcast over columns */
  BC_SCALAR, /* b is [1, 1] */
} Bcast;

static gboolean
classify (const char *op, const FgTensor *a, const FgTensor *b, Bcast *form)
{
  const gsize ar = fg_tensor_rows (a), ac = fg_tensor_cols (a);
  const gsize br = fg_tensor_rows (b), bc = fg_tensor_cols (b);
  /* Same shape first: a [1, 1] or [1, C] a is then FULL, which computes the same thing. */
  if (br == ar && bc == ac)
    *form = BC_FULL;
  else if (br == 1 && bc == 1)
    *form = BC_SCALAR;
  else if (br == 1 && bc == ac)
    *form = BC_ROW;
  else if (br == ar && bc == 1)
    *form = BC_COL;
  else
    {
      char b1[64], b2[64];
      g_critical ("%s: b %s does not broadcast to a %s (same shape, [1, cols], [rows, 1] or "
                  "[1, 1])",
                  op, _fg_tape_shape_str (b, b1, sizeof b1), _fg_tape_shape_str (a, b2, sizeof b2));
      return FALSE;
    }
  return TRUE;
}

/* The row of b that goes with row i of a (for BC_COL/BC_SCALAR, its single value). */
static inline const float *
bc_row (const FgTensor *b, Bcast form, gsize i)
{
  switch (form)
    {
    case BC_FULL:
      return fg_tensor_row (b, i);
    case BC_COL:
      return b->data + i * b->ld;
    case BC_ROW:
    case BC_SCALAR:
    default:
      return b->data;
    }
}

/* y = EXPR (x, z) over a's rows with z broadcast from b. */
#define BINARY_MAP(y_t, a_t, b_t, form, EXPR)                                                   \
  G_STMT_START                                                                                  \
  {                                                                                             \
    const gsize rows_ = fg_tensor_rows (a_t), cols_ = fg_tensor_cols (a_t);                     \
    for (gsize i = 0; i < rows_; i++)                                                           \
      {                                                                                         \
        float *restrict y = fg_tensor_row (y_t, i);                                             \
        const float *restrict x = fg_tensor_row (a_t, i);                                       \
        const float *restrict zr = bc_row (b_t, form, i);                                       \
        if (form == BC_FULL || form == BC_ROW)                                                  \
          FG_SIMD_FOR (j, cols_, const float z = zr[j]; y[j] = (EXPR));                         \
        else                                                                                    \
          {                                                                                     \
            const float z = zr[0];                                                              \
            FG_SIMD_FOR (j, cols_, y[j] = (EXPR));                                              \
          }                                                                                     \
      }                                                                                         \
  }                                                                                             \
  G_STMT_END

/* d (+)= EXPR (g, x, o, z) over a's shape, z broadcast from b. */
#define BINARY_GRAD_FULL(d_t, fresh, g_t, a_t, o_t, b_t, form, EXPR)                            \
  G_STMT_START                                                                                  \
  {                                                                                             \
    const gsize rows_ = fg_tensor_rows (a_t), cols_ = fg_tensor_cols (a_t);                     \
    for (gsize i = 0; i < rows_; i++)                                                           \
      {                                                                                         \
        float *restrict d = fg_tensor_row (d_t, i);                                             \
        const float *restrict gr = fg_tensor_row (g_t, i);                                      \
        const float *restrict xr = fg_tensor_row (a_t, i);                                      \
        const float *restrict orr = fg_tensor_row (o_t, i);                                     \
        const float *restrict zr = bc_row (b_t, form, i);                                       \
        const gsize zs_ = (form == BC_FULL || form == BC_ROW) ? 1 : 0;                          \
        (void) xr;                                                                              \
        (void) orr;                                                                             \
        (void) zr;                                                                              \
        if (zs_ == 0)                                                                           \
          {                                                                                     \
            const float z = zr[0];                                                              \
            (void) z;                                                                           \
            if (fresh)                                                                          \
              FG_SIMD_FOR (j, cols_, const float g = gr[j]; const float x = xr[j];              \
                           const float o = orr[j]; (void) x; (void) o; d[j] = (EXPR));          \
            else                                                                                \
              FG_SIMD_FOR (j, cols_, const float g = gr[j]; const float x = xr[j];              \
                           const float o = orr[j]; (void) x; (void) o; d[j] += (EXPR));         \
          }                                                                                     \
        else if (fresh)                                                                         \
          FG_SIMD_FOR (j, cols_, const float g = gr[j]; const float x = xr[j];                  \
                       const float o = orr[j]; const float z = zr[j]; (void) x; (void) o;       \
                       (void) z; d[j] = (EXPR));                                                \
        else                                                                                    \
          FG_SIMD_FOR (j, cols_, const float g = gr[j]; const float x = xr[j];                  \
                       const float o = orr[j]; const float z = zr[j]; (void) x; (void) o;       \
                       (void) z; d[j] += (EXPR));                                               \
      }                                                                                         \
  }                                                                                             \
  G_STMT_END

/* db (+)= EXPR (g, x, o, z) summed (in double) over the broadcast dimensions of b. */
#define BINARY_GRAD_B(tape, db_t, fresh, g_t, a_t, o_t, b_t, form, EXPR)                        \
  G_STMT_START                                                                                  \
  if (form == BC_FULL)                                                                          \
    BINARY_GRAD_FULL (db_t, fresh, g_t, a_t, o_t, b_t, form, EXPR);                             \
  else                                                                                          \
  {                                                                                             \
    const gsize rows_ = fg_tensor_rows (a_t), cols_ = fg_tensor_cols (a_t);                     \
    if (form == BC_ROW)                                                                         \
      {                                                                                         \
        double *restrict acc = fg_tape_alloc (tape, cols_ * sizeof (double));                   \
        memset (acc, 0, cols_ * sizeof (double));                                               \
        const float *restrict zr = b_t->data;                                                   \
        for (gsize i = 0; i < rows_; i++)                                                       \
          {                                                                                     \
            const float *restrict gr = fg_tensor_row (g_t, i);                                  \
            const float *restrict xr = fg_tensor_row (a_t, i);                                  \
            const float *restrict orr = fg_tensor_row (o_t, i);                                 \
            (void) xr;                                                                          \
            (void) orr;                                                                         \
            (void) zr;                                                                          \
            FG_SIMD_FOR (j, cols_, const float g = gr[j]; const float x = xr[j];                \
                         const float o = orr[j]; const float z = zr[j]; (void) x; (void) o;     \
                         (void) z; acc[j] += (EXPR));                                           \
          }                                                                                     \
        float *restrict d = db_t->data;                                                         \
        for (gsize j = 0; j < cols_; j++)                                                       \
          d[j] = (float) ((fresh ? 0.0 : d[j]) + acc[j]);                                       \
      }                                                                                         \
    else if (form != BC_FULL)                                                                   \
      {                                                                                         \
        double total = 0.0;                                                                     \
        for (gsize i = 0; i < rows_; i++)                                                       \
          {                                                                                     \
            const float *restrict gr = fg_tensor_row (g_t, i);                                  \
            const float *restrict xr = fg_tensor_row (a_t, i);                                  \
            const float *restrict orr = fg_tensor_row (o_t, i);                                 \
            const float z = bc_row (b_t, form, i)[0];                                           \
            double s_ = 0.0;                                                                    \
            (void) xr;                                                                          \
            (void) orr;                                                                         \
            (void) z;                                                                           \
            for (gsize j = 0; j < cols_; j++)                                                   \
              {                                                                                 \
                const float g = gr[j], x = xr[j], o = orr[j];                                   \
                (void) x;                                                                       \
                (void) o;                                                                       \
                s_ += (EXPR);                                                                   \
              }                                                                                 \
            if (form == BC_COL)                                                                 \
              {                                                                                 \
                float *d = db_t->data + i * db_t->ld;                                           \
                *d = (float) ((fresh ? 0.0 : *d) + s_);                                         \
              }                                                                                 \
            else                                                                                \
              total += s_;                                                                      \
          }                                                                                     \
        if (form == BC_SCALAR)                                                                  \
          db_t->data[0] = (float) ((fresh ? 0.0 : db_t->data[0]) + total);                      \
      }                                                                                         \
  }                                                                                             \
  G_STMT_END

/* ---- Binary ops -------------------------------------------------------------------------- */

typedef enum { BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV } BinaryKind;

typedef struct {
  BinaryKind kind;
  Bcast form;
} BinarySaved;

static void
binary_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  const BinarySaved *bs = saved;
  const Bcast form = bs->form;
  const FgTensor *gt = &out->grad, *ot = &out->value;
  const FgTensor *at = &in[0]->value, *bt = &in[1]->value;
  gboolean fresh;

  FgTensor *da = _fg_tape_grad_fresh (tape, in[0], &fresh);
  if (da != NULL)
    switch (bs->kind)
      {
      case BIN_ADD:
        _fg_accumulate (da, gt, 1.0f, fresh);
        break;
      case BIN_SUB:
        _fg_accumulate (da, gt, 1.0f, fresh);
        break;
      case BIN_MUL:
        BINARY_GRAD_FULL (da, fresh, gt, at, ot, bt, form, g * z);
        break;
      case BIN_DIV:
        BINARY_GRAD_FULL (da, fresh, gt, at, ot, bt, form, g / z);
        break;
      }

  /* When a and b are the same node its gradient is no longer fresh here. */
  FgTensor *db = _fg_tape_grad_fresh (tape, in[1], &fresh);
  if (db != NULL)
    switch (bs->kind)
      {
      case BIN_ADD:
        BINARY_GRAD_B (tape, db, fresh, gt, at, ot, bt, form, g);
        break;
      case BIN_SUB:
        BINARY_GRAD_B (tape, db, fresh, gt, at, ot, bt, form, -g);
        break;
      case BIN_MUL:
        BINARY_GRAD_B (tape, db, fresh, gt, at, ot, bt, form, g * x);
        break;
      case BIN_DIV:
        BINARY_GRAD_B (tape, db, fresh, gt, at, ot, bt, form, -g * o / z);
        break;
      }
}

static FgVar *
binary_op (FgTape *tape, const char *name, FgVar *a, FgVar *b, BinaryKind kind)
{
  g_return_val_if_fail (tape != NULL, NULL);
  if (a == NULL || b == NULL)
    return NULL;
  Bcast form;
  if (!classify (name, &a->value, &b->value, &form))
    return NULL;

  FgVar *inputs[2] = { a, b };
  BinarySaved *s;
  FgVar *out = fg_tape_op_new (tape, a->value.ndim, a->value.shape, inputs, 2, binary_backward,
                               sizeof *s, (gpointer *) &s);
  s->kind = kind;
  s->form = form;
  FgTensor *yt = &out->value;
  const FgTensor *at = &a->value, *bt = &b->value;
  switch (kind)
    {
    case BIN_ADD:
      BINARY_MAP (yt, at, bt, form, x[j] + z);
      break;
    case BIN_SUB:
      BINARY_MAP (yt, at, bt, form, x[j] - z);
      break;
    case BIN_MUL:
      BINARY_MAP (yt, at, bt, form, x[j] * z);
      break;
    case BIN_DIV:
      BINARY_MAP (yt, at, bt, form, x[j] / z);
      break;
    }
  return out;
}

/**
 * fg_op_add:
 * @tape: a tape
 * @a: (nullable): the full operand
 * @b: (nullable): same shape as @a, [1, cols], [rows, 1] or [1, 1]
 *
 * Returns: (transfer none) (nullable): a + b, a's shape; NULL on NULL input or mismatch.
 */
FgVar *
fg_op_add (FgTape *tape, FgVar *a, FgVar *b)
{
  return binary_op (tape, "fg_op_add", a, b, BIN_ADD);
}

/**
 * fg_op_sub:
 * @tape: a tape
 * @a: (nullable): the full operand
 * @b: (nullable): broadcast as in fg_op_add()
 *
 * Returns: (transfer none) (nullable): a − b.
 */
FgVar *
fg_op_sub (FgTape *tape, FgVar *a, FgVar *b)
{
  return binary_op (tape, "fg_op_sub", a, b, BIN_SUB);
}

/**
 * fg_op_mul:
 * @tape: a tape
 * @a: (nullable): the full operand
 * @b: (nullable): broadcast as in fg_op_add()
 *
 * Returns: (transfer none) (nullable): a ⊙ b.
 */
FgVar *
fg_op_mul (FgTape *tape, FgVar *a, FgVar *b)
{
  return binary_op (tape, "fg_op_mul", a, b, BIN_MUL);
}

/**
 * fg_op_div:
 * @tape: a tape
 * @a: (nullable): the full operand
 * @b: (nullable): broadcast as in fg_op_add()
 *
 * Returns: (transfer none) (nullable): a / b (IEEE: division by zero gives ±inf or NaN).
 */
FgVar *
fg_op_div (FgTape *tape, FgVar *a, FgVar *b)
{
  return binary_op (tape, "fg_op_div", a, b, BIN_DIV);
}

/**
 * fg_op_add_bias:
 * @tape: a tape
 * @a: (nullable): [rows, cols]
 * @bias: (nullable): [1, cols]
 *
 * Returns: (transfer none) (nullable): a + bias broadcast over rows.
 */
FgVar *
fg_op_add_bias (FgTape *tape, FgVar *a, FgVar *bias)
{
  g_return_val_if_fail (tape != NULL, NULL);
  if (a == NULL || bias == NULL)
    return NULL;
  if (fg_tensor_rows (&bias->value) != 1
      || fg_tensor_cols (&bias->value) != fg_tensor_cols (&a->value))
    {
      char b1[64], b2[64];
      g_critical ("fg_op_add_bias: bias %s is not [1, cols] for a %s",
                  _fg_tape_shape_str (&bias->value, b1, sizeof b1),
                  _fg_tape_shape_str (&a->value, b2, sizeof b2));
      return NULL;
    }
  return binary_op (tape, "fg_op_add_bias", a, bias, BIN_ADD);
}

/* ---- Constant masks and dropout ---------------------------------------------------------- */

typedef struct {
  Bcast form;
  FgTensor mask; /* arena copy */
} MaskSaved;

static void
mask_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  const MaskSaved *s = saved;
  gboolean fresh;
  FgTensor *da = _fg_tape_grad_fresh (tape, in[0], &fresh);
  if (da != NULL)
    BINARY_GRAD_FULL (da, fresh, &out->grad, &in[0]->value, &out->value, &s->mask, s->form, g * z);
}

/* y = a ⊙ mask; mask is already in arena memory when `owned`, else copied if recorded. */
static FgVar *
mask_op (FgTape *tape, const char *name, FgVar *a, const FgTensor *mask, gboolean owned)
{
  Bcast form;
  if (!classify (name, &a->value, mask, &form))
    return NULL;
  MaskSaved *s;
  FgVar *out = fg_tape_op_new (tape, a->value.ndim, a->value.shape, &a, 1, mask_backward,
                               sizeof *s, (gpointer *) &s);
  s->form = form;
  s->mask = *mask;
  if (out->requires_grad && !owned)
    {
      /* The caller's mask need only live for this call. */
      float *copy = fg_tape_alloc_floats (tape, fg_tensor_numel (mask));
      _fg_copy_rows (copy, mask);
      s->mask = _fg_tensor_make (copy, mask->ndim, mask->shape);
    }
  BINARY_MAP (&out->value, &a->value, &s->mask, form, x[j] * z);
  return out;
}

/**
 * fg_op_mask:
 * @tape: a tape
 * @a: (nullable): the operand
 * @mask: a constant (e.g. 0/1) tensor broadcast as b in fg_op_add(); copied when needed
 *
 * Returns: (transfer none) (nullable): a ⊙ mask; no gradient flows into the mask.
 */
FgVar *
fg_op_mask (FgTape *tape, FgVar *a, const FgTensor *mask)
{
  g_return_val_if_fail (tape != NULL, NULL);
  g_return_val_if_fail (mask != NULL && mask->data != NULL, NULL);
  if (a == NULL)
    return NULL;
  return mask_op (tape, "fg_op_mask", a, mask, FALSE);
}

/* Dropout masks come from a counter-based stream: one 64-bit key is drawn from the caller's
 * generator per call, and word w of the mask's bit stream is SplitMix64's output for
 * key + (w + 1)·γ.  Element e (row-major) takes bits [e·k, (e+1)·k) of the stream (from the
 * least significant bit of each word) as an integer u and is kept when u ≥ thr, so
 * P(drop) = thr / 2^k.  k is the smallest of 1, 8, 16, 32 with p·2^k an integer (p = 0.5:
 * one bit an element), so the drop probability is exactly p, or within 2^-32 of it.  Any row
 * of the mask can be made on its own: the rows are split over the pool's threads and the mask
 * does not depend on the thread count. */
#define DROPOUT_GAMMA G_GUINT64_CONSTANT (0x9e3779b97f4a7c15)

static inline guint64
splitmix64 (guint64 z)
{
  z = (z ^ (z >> 30)) * G_GUINT64_CONSTANT (0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * G_GUINT64_CONSTANT (0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static inline guint64
dropout_word (const FgDropout *d, gsize w)
{
  return splitmix64 (d->key + (guint64) (w + 1) * DROPOUT_GAMMA);
}

void
_fg_dropout_init (FgDropout *d, float p, FgRng *rng)
{
  d->key = fg_rng_next_u64 (rng);
  d->k = 32;
  for (guint k = 1; k < 32; k = k == 1 ? 8 : 2 * k)
    {
      const double scaled = (double) p * (double) (G_GUINT64_CONSTANT (1) << k);
      if (scaled == floor (scaled))
        {
          d->k = k;
          break;
        }
    }
  d->thr = (guint32) ceil ((double) p * (double) (G_GUINT64_CONSTANT (1) << d->k));
  d->keep = 1.0f / (1.0f - p);
}

static const guint32 bit_of[32] = {
  1u << 0,  1u << 1,  1u << 2,  1u << 3,  1u << 4,  1u << 5,  1u << 6,  1u << 7,
  1u << 8,  1u << 9,  1u << 10, 1u << 11, 1u << 12, 1u << 13, 1u << 14, 1u << 15,
  1u << 16, 1u << 17, 1u << 18, 1u << 19, 1u << 20, 1u << 21, 1u << 22, 1u << 23,
  1u << 24, 1u << 25, 1u << 26, 1u << 27, 1u << 28, 1u << 29, 1u << 30, 1u << 31,
};

FG_CLONES void
_fg_dropout_fill (const FgDropout *d, gsize e0, gsize n, float *restrict m,
                  guint32 *restrict lanes)
{
  const float keep = d->keep;
  if (d->k == 1)
    {
      /* One bit an element: 32 elements per half word, tested against constant bit masks
       * (a loop gcc vectorizes). */
      gsize j = 0;
      while (j < n)
        {
          const gsize e = e0 + j, b = e % 32;
          const guint64 w = dropout_word (d, e / 64);
          const guint32 half = (guint32) ((e % 64) >= 32 ? w >> 32 : w);
          if (b == 0 && n - j >= 32)
            {
              float *restrict mm = m + j;
              FG_SIMD_FOR (i, 32, mm[i] = (half & bit_of[i]) != 0 ? keep : 0.0f);
              j += 32;
            }
          else
            {
              const gsize stop = MIN (n, j + (32 - b));
              for (; j < stop; j++)
                m[j] = (half >> ((e0 + j) % 32)) & 1 ? keep : 0.0f;
            }
        }
      return;
    }
  const guint k = d->k, per = 64 / k;
  const guint64 lane_mask = k == 32 ? G_GUINT64_CONSTANT (0xffffffff)
                                    : (G_GUINT64_CONSTANT (1) << k) - 1;
  gsize w = e0 / per;
  guint l = (guint) (e0 % per);
  guint64 word = dropout_word (d, w) >> (l * k);
  for (gsize j = 0; j < n; j++)
    {
      lanes[j] = (guint32) (word & lane_mask);
      word >>= k;
      if (++l == per)
        {
          l = 0;
          word = dropout_word (d, ++w);
        }
    }
  const guint32 thr = d->thr;
  FG_SIMD_FOR (j, n, m[j] = lanes[j] >= thr ? keep : 0.0f);
}

typedef struct {
  FgDropout d;
  const FgTensor *a;
  float *m, *y; /* N × cols, contiguous */
  guint32 *lanes; /* per task: cols entries */
  gsize cols;
} DropoutJob;

static void
dropout_task (gpointer data, guint t, guint n_tasks)
{
  const DropoutJob *j = data;
  const gsize rows = fg_tensor_rows (j->a), cols = j->cols;
  gsize r0, r1;
  _fg_pool_range (rows, t, n_tasks, 8, &r0, &r1);
  for (gsize i = r0; i < r1; i++)
    {
      const float *restrict x = fg_tensor_row (j->a, i);
      float *restrict m = j->m + i * cols;
      float *restrict y = j->y + i * cols;
      _fg_dropout_fill (&j->d, i * cols, cols, m, j->lanes + t * cols);
      FG_SIMD_FOR (c, cols, y[c] = x[c] * m[c]);
    }
}

typedef struct {
  FgTensor *d;
  const FgTensor *g;
  const float *m;
  gboolean fresh;
} DropoutBwdJob;

FG_CLONES static void
dropout_bwd_task (gpointer data, guint t, guint n_tasks)
{
  const DropoutBwdJob *j = data;
  const gsize rows = fg_tensor_rows (j->g), cols = fg_tensor_cols (j->g);
  gsize r0, r1;
  _fg_pool_range (rows, t, n_tasks, 8, &r0, &r1);
  for (gsize i = r0; i < r1; i++)
    {
      float *restrict d = fg_tensor_row (j->d, i);
      const float *restrict g = fg_tensor_row (j->g, i);
      const float *restrict m = j->m + i * cols;
      if (j->fresh)
        FG_SIMD_FOR (c, cols, d[c] = g[c] * m[c]);
      else
        FG_SIMD_FOR (c, cols, d[c] += g[c] * m[c]);
    }
}

static void
dropout_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  const float *m = *(float **) saved;
  gboolean fresh;
  FgTensor *da = _fg_tape_grad_fresh (tape, in[0], &fresh);
  if (da == NULL)
    return;
  DropoutBwdJob j = { da, &out->grad, m, fresh };
  const gsize rows = fg_tensor_rows (&out->grad);
  const double ns = (double) fg_tensor_numel (&out->grad) * FG_POOL_NS_PER_ELEMENT;
  _fg_pool_run ((guint) MIN ((gsize) _fg_pool_tasks (ns), MAX (rows / 8, 1)), dropout_bwd_task,
                &j);
}

/**
 * fg_op_dropout:
 * @tape: a tape
 * @a: (nullable): the operand
 * @p: drop probability, 0 <= p < 1
 * @rng: draws one 64-bit word per call, the key of the call's mask (so a seed fixes the mask)
 * @train: FALSE at evaluation
 *
 * Inverted dropout: each element is zeroed with probability @p and the others are scaled by
 * 1/(1−@p), so evaluation needs no rescaling.  The gradient flows through the same mask.  The
 * mask is a function of the key and the element's row-major index only (see above), made in
 * parallel on the core's threads and the same for any thread count.
 *
 * Returns: (transfer none) (nullable): the dropped-out tensor, or @a itself when !@train or
 * @p == 0 (no random numbers are drawn then).
 */
FgVar *
fg_op_dropout (FgTape *tape, FgVar *a, float p, FgRng *rng, gboolean train)
{
  g_return_val_if_fail (tape != NULL, NULL);
  g_return_val_if_fail (p >= 0.0f && p < 1.0f, NULL);
  if (a == NULL)
    return NULL;
  if (!train || p == 0.0f)
    return a;
  g_return_val_if_fail (rng != NULL, NULL);

  const gsize rows = fg_tensor_rows (&a->value), cols = fg_tensor_cols (&a->value);
  float **saved;
  FgVar *out = fg_tape_op_new (tape, a->value.ndim, a->value.shape, &a, 1, dropout_backward,
                               sizeof *saved, (gpointer *) &saved);
  DropoutJob j;
  _fg_dropout_init (&j.d, p, rng);
  j.a = &a->value;
  j.m = *saved = fg_tape_alloc_floats (tape, MAX (rows * cols, 1));
  j.y = out->value.data;
  j.cols = cols;
  const double ns = (double) rows * cols * 4.0 * FG_POOL_NS_PER_ELEMENT;
  const guint tasks = (guint) MIN ((gsize) _fg_pool_tasks (ns), MAX (rows / 8, 1));
  j.lanes = fg_tape_alloc (tape, MAX (tasks * cols, 1) * sizeof (guint32));
  _fg_pool_run (tasks, dropout_task, &j);
  return out;
}

/* ---- Unary maps -------------------------------------------------------------------------- */

typedef enum {
  UN_SCALE,
  UN_ADD_SCALAR,
  UN_NEG,
  UN_SQUARE,
  UN_EXP,
  UN_LOG,
  UN_TANH,
  UN_SIGMOID,
  UN_SOFTPLUS,
  UN_RELU,
  UN_LEAKY_RELU,
} UnaryKind;

typedef struct {
  UnaryKind kind;
  float s;
} UnarySaved;

/* max(x, 0) that keeps NaN (fmaxf would drop it) and maps −inf to 0 (x·[x > 0] would give
 * NaN): keep the bits where x > 0 or x is NaN, else +0.  Branch-free, so it vectorizes. */
static inline float
relu_f (float x)
{
  guint32 bits;
  memcpy (&bits, &x, sizeof bits);
  bits &= (guint32) - (gint32) ((x > 0.0f) | (x != x));
  memcpy (&x, &bits, sizeof bits);
  return x;
}

/* x where `keep`, else +0, by masking the bits: a select gcc vectorizes, and unlike x·[keep]
 * it gives 0 (not NaN) for an infinite x that is not kept (as PyTorch's threshold_backward). */
static inline float
mask_f (float x, gboolean keep)
{
  return _fg_bits_to_float (_fg_float_to_bits (x) & (guint32) - (gint32) keep);
}

/* d (+)= g where COND (x), else (+)= 0, row by row. */
#define UNARY_GRAD_SELECT(d_t, fresh, g_t, a_t, COND)                                           \
  G_STMT_START                                                                                  \
  {                                                                                             \
    const gsize rows_ = fg_tensor_rows (a_t), cols_ = fg_tensor_cols (a_t);                     \
    for (gsize i = 0; i < rows_; i++)                                                           \
      {                                                                                         \
        float *restrict d = fg_tensor_row (d_t, i);                                             \
        const float *restrict gr = fg_tensor_row (g_t, i);                                      \
        const float *restrict xr = fg_tensor_row (a_t, i);                                      \
        if (fresh)                                                                              \
          FG_SIMD_FOR (j, cols_, const float x = xr[j]; d[j] = mask_f (gr[j], COND));           \
        else                                                                                    \
          FG_SIMD_FOR (j, cols_, const float x = xr[j]; d[j] += mask_f (gr[j], COND));          \
      }                                                                                         \
  }                                                                                             \
  G_STMT_END

/* y = EXPR (x) row by row. */
#define UNARY_MAP(y_t, a_t, EXPR)                                                               \
  G_STMT_START                                                                                  \
  {                                                                                             \
    const gsize rows_ = fg_tensor_rows (a_t), cols_ = fg_tensor_cols (a_t);                     \
    for (gsize i = 0; i < rows_; i++)                                                           \
      {                                                                                         \
        float *restrict yr = fg_tensor_row (y_t, i);                                            \
        const float *restrict xr = fg_tensor_row (a_t, i);                                      \
        FG_SIMD_FOR (j, cols_, const float x = xr[j]; yr[j] = (EXPR));                          \
      }                                                                                         \
  }                                                                                             \
  G_STMT_END

/* d (+)= g · DERIV (x, y) row by row. */
#define UNARY_GRAD(d_t, fresh, g_t, a_t, o_t, DERIV)                                            \
  G_STMT_START                                                                                  \
  {                                                                                             \
    const gsize rows_ = fg_tensor_rows (a_t), cols_ = fg_tensor_cols (a_t);                     \
    for (gsize i = 0; i < rows_; i++)                                                           \
      {                                                                                         \
        float *restrict d = fg_tensor_row (d_t, i);                                             \
        const float *restrict gr = fg_tensor_row (g_t, i);                                      \
        const float *restrict xr = fg_tensor_row (a_t, i);                                      \
        const float *restrict yr = fg_tensor_row (o_t, i);                                      \
        (void) xr;                                                                              \
        (void) yr;                                                                              \
        if (fresh)                                                                              \
          FG_SIMD_FOR (j, cols_, const float x = xr[j]; const float y = yr[j]; (void) x;        \
                       (void) y; d[j] = gr[j] * (DERIV));                                       \
        else                                                                                    \
          FG_SIMD_FOR (j, cols_, const float x = xr[j]; const float y = yr[j]; (void) x;        \
                       (void) y; d[j] += gr[j] * (DERIV));                                      \
      }                                                                                         \
  }                                                                                             \
  G_STMT_END

static void
unary_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  const UnarySaved *us = saved;
  const float s = us->s;
  gboolean fresh;
  FgTensor *da = _fg_tape_grad_fresh (tape, in[0], &fresh);
  if (da == NULL)
    return;
  const FgTensor *gt = &out->grad, *at = &in[0]->value, *ot = &out->value;
  switch (us->kind)
    {
    case UN_SCALE:
      _fg_accumulate (da, gt, s, fresh);
      break;
    case UN_ADD_SCALAR:
      _fg_accumulate (da, gt, 1.0f, fresh);
      break;
    case UN_NEG:
      _fg_accumulate (da, gt, -1.0f, fresh);
      break;
    case UN_SQUARE:
      UNARY_GRAD (da, fresh, gt, at, ot, 2.0f * x);
      break;
    case UN_EXP:
      UNARY_GRAD (da, fresh, gt, at, ot, y);
      break;
    case UN_LOG:
      UNARY_GRAD (da, fresh, gt, at, ot, 1.0f / x);
      break;
    case UN_TANH:
      UNARY_GRAD (da, fresh, gt, at, ot, 1.0f - y * y);
      break;
    case UN_SIGMOID:
      UNARY_GRAD (da, fresh, gt, at, ot, y * (1.0f - y));
      break;
    case UN_SOFTPLUS:
      /* σ(x) = 1 − e^{−softplus(x)}; expm1 keeps it accurate where σ(x) is tiny. */
      UNARY_GRAD (da, fresh, gt, at, ot, -fg_expm1f (-y));
      break;
    case UN_RELU:
      UNARY_GRAD_SELECT (da, fresh, gt, at, x > 0.0f);
      break;
    case UN_LEAKY_RELU:
      UNARY_GRAD (da, fresh, gt, at, ot, x > 0.0f ? 1.0f : s);
      break;
    }
}

static FgVar *
unary_op (FgTape *tape, FgVar *a, UnaryKind kind, float s)
{
  g_return_val_if_fail (tape != NULL, NULL);
  if (a == NULL)
    return NULL;
  UnarySaved *us;
  FgVar *out = fg_tape_op_new (tape, a->value.ndim, a->value.shape, &a, 1, unary_backward,
                               sizeof *us, (gpointer *) &us);
  us->kind = kind;
  us->s = s;
  FgTensor *yt = &out->value;
  const FgTensor *at = &a->value;
  switch (kind)
    {
    case UN_SCALE:
      UNARY_MAP (yt, at, s * x);
      break;
    case UN_ADD_SCALAR:
      UNARY_MAP (yt, at, x + s);
      break;
    case UN_NEG:
      UNARY_MAP (yt, at, -x);
      break;
    case UN_SQUARE:
      UNARY_MAP (yt, at, x * x);
      break;
    case UN_EXP:
      UNARY_MAP (yt, at, fg_expf (x));
      break;
    case UN_LOG:
      UNARY_MAP (yt, at, fg_logf (x));
      break;
    case UN_TANH:
      UNARY_MAP (yt, at, fg_tanhf (x));
      break;
    case UN_SIGMOID:
      UNARY_MAP (yt, at, fg_sigmoidf (x));
      break;
    case UN_SOFTPLUS:
      /* Never overflows and keeps log1p's accuracy where softplus(x) ≈ e^x is tiny. */
      UNARY_MAP (yt, at, fg_softplusf (x));
      break;
    case UN_RELU:
      UNARY_MAP (yt, at, relu_f (x));
      break;
    case UN_LEAKY_RELU:
      UNARY_MAP (yt, at, x > 0.0f ? x : s * x);
      break;
    }
  return out;
}

/**
 * fg_op_scale:
 * @tape: a tape
 * @a: (nullable): the operand
 * @s: the factor
 *
 * Returns: (transfer none) (nullable): s·a.
 */
FgVar *
fg_op_scale (FgTape *tape, FgVar *a, float s)
{
  return unary_op (tape, a, UN_SCALE, s);
}

/**
 * fg_op_add_scalar:
 * @tape: a tape
 * @a: (nullable): the operand
 * @s: the constant
 *
 * Returns: (transfer none) (nullable): a + s.
 */
FgVar *
fg_op_add_scalar (FgTape *tape, FgVar *a, float s)
{
  return unary_op (tape, a, UN_ADD_SCALAR, s);
}

/**
 * fg_op_neg:
 * @tape: a tape
 * @a: (nullable): the operand
 *
 * Returns: (transfer none) (nullable): −a.
 */
FgVar *
fg_op_neg (FgTape *tape, FgVar *a)
{
  return unary_op (tape, a, UN_NEG, 0.0f);
}

/**
 * fg_op_square:
 * @tape: a tape
 * @a: (nullable): the operand
 *
 * Returns: (transfer none) (nullable): a².
 */
FgVar *
fg_op_square (FgTape *tape, FgVar *a)
{
  return unary_op (tape, a, UN_SQUARE, 0.0f);
}

/**
 * fg_op_exp:
 * @tape: a tape
 * @a: (nullable): the operand
 *
 * Returns: (transfer none) (nullable): e^a.
 */
FgVar *
fg_op_exp (FgTape *tape, FgVar *a)
{
  return unary_op (tape, a, UN_EXP, 0.0f);
}

/**
 * fg_op_log:
 * @tape: a tape
 * @a: (nullable): the operand (positive; otherwise IEEE −inf/NaN)
 *
 * Returns: (transfer none) (nullable): log a.
 */
FgVar *
fg_op_log (FgTape *tape, FgVar *a)
{
  return unary_op (tape, a, UN_LOG, 0.0f);
}

/**
 * fg_op_tanh:
 * @tape: a tape
 * @a: (nullable): the operand
 *
 * Returns: (transfer none) (nullable): tanh a.
 */
FgVar *
fg_op_tanh (FgTape *tape, FgVar *a)
{
  return unary_op (tape, a, UN_TANH, 0.0f);
}

/**
 * fg_op_sigmoid:
 * @tape: a tape
 * @a: (nullable): the operand
 *
 * Returns: (transfer none) (nullable): 1 / (1 + e^−a).
 */
FgVar *
fg_op_sigmoid (FgTape *tape, FgVar *a)
{
  return unary_op (tape, a, UN_SIGMOID, 0.0f);
}

/**
 * fg_op_softplus:
 * @tape: a tape
 * @a: (nullable): the operand
 *
 * Computed as max(a, 0) + log1p(e^−|a|): finite for every finite input.
 *
 * Returns: (transfer none) (nullable): log(1 + e^a).
 */
FgVar *
fg_op_softplus (FgTape *tape, FgVar *a)
{
  return unary_op (tape, a, UN_SOFTPLUS, 0.0f);
}

/**
 * fg_op_relu:
 * @tape: a tape
 * @a: (nullable): the operand
 *
 * Returns: (transfer none) (nullable): max(a, 0); the gradient at 0 is 0.
 */
FgVar *
fg_op_relu (FgTape *tape, FgVar *a)
{
  return unary_op (tape, a, UN_RELU, 0.0f);
}

/**
 * fg_op_leaky_relu:
 * @tape: a tape
 * @a: (nullable): the operand
 * @slope: the factor for a <= 0
 *
 * Returns: (transfer none) (nullable): a for a > 0, slope·a otherwise.
 */
FgVar *
fg_op_leaky_relu (FgTape *tape, FgVar *a, float slope)
{
  return unary_op (tape, a, UN_LEAKY_RELU, slope);
}

/* ---- Activations for fused ops ------------------------------------------------------------ */

FG_CLONES void
_fg_act_forward (FgActivation act, float slope, float *y, gsize n)
{
  float *restrict v = y;
  switch (act)
    {
    case FG_ACT_NONE:
      break;
    case FG_ACT_RELU:
      FG_SIMD_FOR (j, n, v[j] = relu_f (v[j]));
      break;
    case FG_ACT_LEAKY_RELU:
      FG_SIMD_FOR (j, n, const float x = v[j]; v[j] = x > 0.0f ? x : slope * x);
      break;
    case FG_ACT_TANH:
      FG_SIMD_FOR (j, n, v[j] = fg_tanhf (v[j]));
      break;
    case FG_ACT_SIGMOID:
      FG_SIMD_FOR (j, n, v[j] = fg_sigmoidf (v[j]));
      break;
    case FG_ACT_SOFTPLUS:
      FG_SIMD_FOR (j, n, v[j] = fg_softplusf (v[j]));
      break;
    }
}

FG_CLONES void
_fg_act_forward_row (FgActivation act, float slope, float *y, const float *bias,
                     const float *mask, gsize n)
{
  float *restrict v = y;
  const float *restrict b = bias;
  const float *restrict m = mask;
  if (b != NULL)
    switch (act)
      {
      case FG_ACT_NONE:
        FG_SIMD_FOR (j, n, v[j] = v[j] + b[j]);
        break;
      case FG_ACT_RELU:
        FG_SIMD_FOR (j, n, v[j] = relu_f (v[j] + b[j]));
        break;
      case FG_ACT_LEAKY_RELU:
        FG_SIMD_FOR (j, n, const float x = v[j] + b[j]; v[j] = x > 0.0f ? x : slope * x);
        break;
      case FG_ACT_TANH:
        FG_SIMD_FOR (j, n, v[j] = fg_tanhf (v[j] + b[j]));
        break;
      case FG_ACT_SIGMOID:
        FG_SIMD_FOR (j, n, v[j] = fg_sigmoidf (v[j] + b[j]));
        break;
      case FG_ACT_SOFTPLUS:
        FG_SIMD_FOR (j, n, v[j] = fg_softplusf (v[j] + b[j]));
        break;
      }
  else
    _fg_act_forward (act, slope, y, n);
  if (m != NULL)
    FG_SIMD_FOR (j, n, v[j] = v[j] * m[j]);
}

FG_CLONES void
_fg_act_grad_relu_dropout (float *dz, const float *g, const float *ym, float keep, gsize n)
{
  float *restrict d = dz;
  const float *restrict gr = g, *restrict yr = ym;
  FG_SIMD_FOR (j, n, d[j] = mask_f (gr[j] * keep, yr[j] > 0.0f));
}

FG_CLONES void
_fg_act_grad (FgActivation act, float slope, float *dz, const float *g, const float *y, gsize n)
{
  float *restrict d = dz;
  const float *restrict gr = g, *restrict yr = y;
  switch (act)
    {
    case FG_ACT_NONE:
      FG_SIMD_FOR (j, n, d[j] = gr[j]);
      break;
    case FG_ACT_RELU: /* y > 0 exactly where the input was > 0: keep g's bits there, else +0 */
      FG_SIMD_FOR (j, n, d[j] = mask_f (gr[j], yr[j] > 0.0f));
      break;
    case FG_ACT_LEAKY_RELU: /* the same with slope >= 0 */
      FG_SIMD_FOR (j, n, d[j] = gr[j] * (yr[j] > 0.0f ? 1.0f : slope));
      break;
    case FG_ACT_TANH:
      FG_SIMD_FOR (j, n, d[j] = gr[j] * (1.0f - yr[j] * yr[j]));
      break;
    case FG_ACT_SIGMOID:
      FG_SIMD_FOR (j, n, d[j] = gr[j] * yr[j] * (1.0f - yr[j]));
      break;
    case FG_ACT_SOFTPLUS:
      FG_SIMD_FOR (j, n, d[j] = gr[j] * -fg_expm1f (-yr[j]));
      break;
    }
}
