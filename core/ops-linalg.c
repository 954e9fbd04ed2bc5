/* flowgmm — matrix products through cblas_sgemm: matmul, linear, squared distances.
 *
 * Forward and backward are all sgemm calls on the operands in place (their ld is passed
 * through, so strided views need no copy).  A gradient that a product is the first to touch is
 * written with beta = 0 instead of being zeroed and then accumulated.
 */
#include "config.h"

#include <limits.h>
#include <cblas.h>

#include "tape-private.h"

void
_fg_sgemm (gboolean trans_a, gboolean trans_b, gsize m, gsize n, gsize k, float alpha,
           const float *a, gsize lda, const float *b, gsize ldb, float beta, float *c, gsize ldc)
{
  if (m == 0 || n == 0)
    return;
  if (k == 0)
    {
      /* BLAS implementations disagree on k = 0; the product is empty. */
      for (gsize i = 0; i < m; i++)
        for (gsize j = 0; j < n; j++)
          c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
      return;
    }
  g_assert (m <= INT_MAX && n <= INT_MAX && k <= INT_MAX && lda <= INT_MAX && ldb <= INT_MAX
            && ldc <= INT_MAX);
  cblas_sgemm (CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
               trans_b ? CblasTrans : CblasNoTrans, (int) m, (int) n, (int) k, alpha, a,
               (int) MAX (lda, 1), b, (int) MAX (ldb, 1), beta, c, (int) MAX (ldc, 1));
}

/* The ld that BLAS accepts for a row-major rows × cols operand: a single-row view may carry
 * any ld, and BLAS wants ld >= cols. */
static inline gsize
blas_ld (const FgTensor *t)
{
  return MAX (t->ld, fg_tensor_cols (t));
}

/* ---- matmul ------------------------------------------------------------------------------- */

typedef struct {
  gboolean ta, tb;
} MatmulSaved;

static void
matmul_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  const MatmulSaved *ms = saved;
  const FgTensor *A = &in[0]->value, *B = &in[1]->value, *G = &out->grad;
  const gsize M = fg_tensor_rows (G), N = fg_tensor_cols (G);
  const gsize K = ms->ta ? fg_tensor_rows (A) : fg_tensor_cols (A);
  gboolean fresh;

  FgTensor *dA = _fg_tape_grad_fresh (tape, in[0], &fresh);
  if (dA != NULL)
    {
      const float beta = fresh ? 0.0f : 1.0f;
      if (!ms->ta) /* dA[M,K] += G · op(B)ᵀ */
        _fg_sgemm (FALSE, !ms->tb, M, K, N, 1.0f, G->data, G->ld, B->data, blas_ld (B), beta,
                   dA->data, dA->ld);
      else /* A is stored [K,M]: dA += op(B) · Gᵀ */
        _fg_sgemm (ms->tb, TRUE, K, M, N, 1.0f, B->data, blas_ld (B), G->data, G->ld, beta,
                   dA->data, dA->ld);
    }
  FgTensor *dB = _fg_tape_grad_fresh (tape, in[1], &fresh);
  if (dB != NULL)
    {
      const float beta = fresh ? 0.0f : 1.0f;
      if (!ms->tb) /* dB[K,N] += op(A)ᵀ · G */
        _fg_sgemm (!ms->ta, FALSE, K, N, M, 1.0f, A->data, blas_ld (A), G->data, G->ld, beta,
                   dB->data, dB->ld);
      else /* B is stored [N,K]: dB += Gᵀ · op(A) */
        _fg_sgemm (TRUE, ms->ta, N, K, M, 1.0f, G->data, G->ld, A->data, blas_ld (A), beta,
                   dB->data, dB->ld);
    }
}

/**
 * fg_op_matmul:
 * @tape: a tape
 * @a: (nullable): a matrix (a tensor is taken as rows × cols)
 * @b: (nullable): a matrix
 * @trans_a: use @aᵀ
 * @trans_b: use @bᵀ
 *
 * Returns: (transfer none) (nullable): op(a) · op(b), [M, N]; NULL with a critical warning
 * when the inner sizes differ.
 */
FgVar *
fg_op_matmul (FgTape *tape, FgVar *a, FgVar *b, gboolean trans_a, gboolean trans_b)
{
  g_return_val_if_fail (tape != NULL, NULL);
  if (a == NULL || b == NULL)
    return NULL;
  const FgTensor *A = &a->value, *B = &b->value;
  const gsize M = trans_a ? fg_tensor_cols (A) : fg_tensor_rows (A);
  const gsize K = trans_a ? fg_tensor_rows (A) : fg_tensor_cols (A);
  const gsize Kb = trans_b ? fg_tensor_cols (B) : fg_tensor_rows (B);
  const gsize N = trans_b ? fg_tensor_rows (B) : fg_tensor_cols (B);
  if (K != Kb)
    {
      char b1[64], b2[64];
      g_critical ("fg_op_matmul: inner sizes differ: %s%s · %s%s",
                  _fg_tape_shape_str (A, b1, sizeof b1), trans_a ? "ᵀ" : "",
                  _fg_tape_shape_str (B, b2, sizeof b2), trans_b ? "ᵀ" : "");
      return NULL;
    }
  gsize shape[2] = { M, N };
  FgVar *inputs[2] = { a, b };
  MatmulSaved *ms;
  FgVar *out = fg_tape_op_new (tape, 2, shape, inputs, 2, matmul_backward, sizeof *ms,
                               (gpointer *) &ms);
  ms->ta = !!trans_a;
  ms->tb = !!trans_b;
  _fg_sgemm (ms->ta, ms->tb, M, N, K, 1.0f, A->data, blas_ld (A), B->data, blas_ld (B), 0.0f,
             out->value.data, N);
  return out;
}

/* ---- linear, linear_act --------------------------------------------------------------------- */

typedef struct {
  gboolean has_bias;
  FgActivation act;
  float slope;
} LinearSaved;

static void
linear_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  const LinearSaved *ls = saved;
  const FgTensor *X = &in[0]->value, *W = &in[1]->value, *G = &out->grad;
  const gsize N = fg_tensor_rows (X), n_in = fg_tensor_cols (X), n_out = fg_tensor_cols (W);
  gboolean x_fresh, w_fresh, b_fresh = FALSE;
  FgTensor *dX = _fg_tape_grad_fresh (tape, in[0], &x_fresh);
  FgTensor *dW = _fg_tape_grad_fresh (tape, in[1], &w_fresh);
  FgTensor *db = ls->has_bias ? _fg_tape_grad_fresh (tape, in[2], &b_fresh) : NULL;

  if (ls->act == FG_ACT_NONE)
    {
      /* dX[N,in] += G[N,out] · Wᵀ;  dW[in,out] += Xᵀ · G;  db += Σ_rows G */
      if (dX != NULL)
        _fg_sgemm (FALSE, TRUE, N, n_in, n_out, 1.0f, G->data, G->ld, W->data, blas_ld (W),
                   x_fresh ? 0.0f : 1.0f, dX->data, dX->ld);
      if (dW != NULL)
        _fg_sgemm (TRUE, FALSE, n_in, n_out, N, 1.0f, X->data, blas_ld (X), G->data, G->ld,
                   w_fresh ? 0.0f : 1.0f, dW->data, dW->ld);
      if (db != NULL)
        _fg_colsum (db->data, !b_fresh, G, fg_tape_alloc (tape, n_out * sizeof (double)));
      return;
    }

  /* Block by block: dZ = G ⊙ act'(Y) into a cache-sized scratch, then the three products. */
  const gsize chunk = MIN (N, FG_CHUNK_ROWS);
  float *dz = fg_tape_alloc_floats (tape, MAX (chunk, 1) * n_out);
  double *acc = NULL;
  if (db != NULL)
    {
      acc = fg_tape_alloc (tape, MAX (n_out, 1) * sizeof (double));
      memset (acc, 0, n_out * sizeof (double));
    }
  for (gsize r0 = 0; r0 < N; r0 += FG_CHUNK_ROWS)
    {
      const gsize m = MIN (FG_CHUNK_ROWS, N - r0);
      _fg_act_grad (ls->act, ls->slope, dz, G->data + r0 * G->ld, out->value.data + r0 * n_out,
                    m * n_out);
      if (dX != NULL)
        _fg_sgemm (FALSE, TRUE, m, n_in, n_out, 1.0f, dz, n_out, W->data, blas_ld (W),
                   x_fresh ? 0.0f : 1.0f, dX->data + r0 * dX->ld, dX->ld);
      if (dW != NULL)
        _fg_sgemm (TRUE, FALSE, n_in, n_out, m, 1.0f, X->data + r0 * X->ld, blas_ld (X), dz,
                   n_out, (w_fresh && r0 == 0) ? 0.0f : 1.0f, dW->data, dW->ld);
      if (acc != NULL)
        {
          FgTensor dzt = fg_tensor_wrap_2d (dz, m, n_out);
          _fg_colsum_acc (acc, &dzt);
        }
    }
  if (dW != NULL && w_fresh && N == 0) /* an empty batch still owes a zero gradient */
    memset (dW->data, 0, fg_tensor_numel (dW) * sizeof (float));
  if (db != NULL)
    for (gsize j = 0; j < n_out; j++)
      db->data[j] = (float) ((b_fresh ? 0.0 : db->data[j]) + acc[j]);
}

static FgVar *
linear_impl (FgTape *tape, const char *name, FgVar *x, FgVar *w, FgVar *b, FgActivation act,
             float slope)
{
  g_return_val_if_fail (tape != NULL, NULL);
  if (x == NULL || w == NULL)
    return NULL;
  const FgTensor *X = &x->value, *W = &w->value;
  const gsize N = fg_tensor_rows (X), n_in = fg_tensor_cols (X), n_out = fg_tensor_cols (W);
  if (fg_tensor_rows (W) != n_in
      || (b != NULL && (fg_tensor_rows (&b->value) != 1 || fg_tensor_cols (&b->value) != n_out)))
    {
      char b1[64], b2[64], b3[64];
      g_critical ("%s: x %s, W %s and b %s do not fit x[N, in] · W[in, out] + b[1, out]", name,
                  _fg_tape_shape_str (X, b1, sizeof b1), _fg_tape_shape_str (W, b2, sizeof b2),
                  b ? _fg_tape_shape_str (&b->value, b3, sizeof b3) : "(none)");
      return NULL;
    }
  if (act > FG_ACT_SOFTPLUS || (act == FG_ACT_LEAKY_RELU && !(slope >= 0.0f)))
    {
      g_critical ("%s: unknown activation %d or negative leaky slope %g", name, (int) act,
                  (double) slope);
      return NULL;
    }
  gsize shape[2] = { N, n_out };
  FgVar *inputs[3] = { x, w, b };
  LinearSaved *ls;
  FgVar *out = fg_tape_op_new (tape, 2, shape, inputs, b ? 3 : 2, linear_backward, sizeof *ls,
                               (gpointer *) &ls);
  ls->has_bias = b != NULL;
  ls->act = act;
  ls->slope = slope;

  /* The bias is written first and sgemm accumulates onto it (beta = 1): no extra pass. */
  float *y = out->value.data;
  const gsize step = act == FG_ACT_NONE ? MAX (N, 1) : FG_CHUNK_ROWS;
  for (gsize r0 = 0; r0 < N; r0 += step)
    {
      const gsize m = MIN (step, N - r0);
      FgTensor yc = fg_tensor_wrap_2d (y + r0 * n_out, m, n_out);
      if (b != NULL)
        _fg_fill_rows (&yc, b->value.data);
      _fg_sgemm (FALSE, FALSE, m, n_out, n_in, 1.0f, X->data + r0 * X->ld, blas_ld (X), W->data,
                 blas_ld (W), b ? 1.0f : 0.0f, yc.data, n_out);
      _fg_act_forward (act, slope, yc.data, m * n_out);
    }
  return out;
}

/**
 * fg_op_linear:
 * @tape: a tape
 * @x: (nullable): [N, in] (any tensor, taken as rows × cols)
 * @w: (nullable): [in, out]
 * @b: (nullable): [1, out], or NULL for no bias
 *
 * The bias is written into the output first and sgemm accumulates onto it, so the bias costs
 * no extra pass; its gradient is a column sum in double.
 *
 * Returns: (transfer none) (nullable): x · W + b, [N, out].
 */
FgVar *
fg_op_linear (FgTape *tape, FgVar *x, FgVar *w, FgVar *b)
{
  return linear_impl (tape, "fg_op_linear", x, w, b, FG_ACT_NONE, 0.0f);
}

/**
 * fg_op_linear_act:
 * @tape: a tape
 * @x: (nullable): [N, in]
 * @w: (nullable): [in, out]
 * @b: (nullable): [1, out], or NULL for no bias
 * @act: the activation
 * @slope: the negative-side slope for %FG_ACT_LEAKY_RELU (>= 0), ignored otherwise
 *
 * act(x · W + b) as one node: each block of 256 rows is multiplied and activated while it is
 * in cache, only the activated output is kept (every supported activation's derivative is a
 * function of its output), and the backward pass forms dZ block by block in a small scratch.
 * The values equal those of fg_op_linear() followed by the activation op.
 *
 * Returns: (transfer none) (nullable): [N, out].
 */
FgVar *
fg_op_linear_act (FgTape *tape, FgVar *x, FgVar *w, FgVar *b, FgActivation act, float slope)
{
  return linear_impl (tape, "fg_op_linear_act", x, w, b, act, slope);
}

/* ---- sq_dist ------------------------------------------------------------------------------ */

static void
sq_dist_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  const FgTensor *A = &in[0]->value, *B = &in[1]->value, *G = &out->grad;
  const gsize N = fg_tensor_rows (A), K = fg_tensor_rows (B), D = fg_tensor_cols (A);
  gboolean fresh;

  /* d/da_i Σ_k g_ik ‖a_i − b_k‖² = 2 (Σ_k g_ik) a_i − 2 Σ_k g_ik b_k, and symmetrically. */
  FgTensor *dA = _fg_tape_grad_fresh (tape, in[0], &fresh);
  if (dA != NULL)
    {
      _fg_sgemm (FALSE, FALSE, N, D, K, -2.0f, G->data, G->ld, B->data, blas_ld (B),
                 fresh ? 0.0f : 1.0f, dA->data, dA->ld);
      for (gsize i = 0; i < N; i++)
        {
          const float rs = 2.0f * (float) _fg_sum_f64 (fg_tensor_row (G, i), K);
          const float *restrict a = fg_tensor_row (A, i);
          float *restrict d = fg_tensor_row (dA, i);
          FG_SIMD_FOR (j, D, d[j] += rs * a[j]);
        }
    }
  FgTensor *dB = _fg_tape_grad_fresh (tape, in[1], &fresh);
  if (dB != NULL)
    {
      _fg_sgemm (TRUE, FALSE, K, D, N, -2.0f, G->data, G->ld, A->data, blas_ld (A),
                 fresh ? 0.0f : 1.0f, dB->data, dB->ld);
      float *cs = fg_tape_alloc_floats (tape, K);
      _fg_colsum (cs, FALSE, G, fg_tape_alloc (tape, K * sizeof (double)));
      for (gsize k = 0; k < K; k++)
        {
          const float c = 2.0f * cs[k];
          const float *restrict b = fg_tensor_row (B, k);
          float *restrict d = fg_tensor_row (dB, k);
          FG_SIMD_FOR (j, D, d[j] += c * b[j]);
        }
    }
}

/**
 * fg_op_sq_dist:
 * @tape: a tape
 * @a: (nullable): [N, D]
 * @b: (nullable): [K, D]
 *
 * ‖a_i − b_k‖² as ‖a_i‖² + ‖b_k‖² − 2 a_i·b_k (one sgemm; norms in double), clamped at 0
 * against rounding.  The absolute error is about 1e-7 · (‖a_i‖² + ‖b_k‖²).
 *
 * Returns: (transfer none) (nullable): [N, K].
 */
FgVar *
fg_op_sq_dist (FgTape *tape, FgVar *a, FgVar *b)
{
  g_return_val_if_fail (tape != NULL, NULL);
  if (a == NULL || b == NULL)
    return NULL;
  const FgTensor *A = &a->value, *B = &b->value;
  const gsize N = fg_tensor_rows (A), K = fg_tensor_rows (B), D = fg_tensor_cols (A);
  if (fg_tensor_cols (B) != D)
    {
      char b1[64], b2[64];
      g_critical ("fg_op_sq_dist: rows of %s and %s differ in length",
                  _fg_tape_shape_str (A, b1, sizeof b1), _fg_tape_shape_str (B, b2, sizeof b2));
      return NULL;
    }
  gsize shape[2] = { N, K };
  FgVar *inputs[2] = { a, b };
  FgVar *out = fg_tape_op_new (tape, 2, shape, inputs, 2, sq_dist_backward, 0, NULL);
  float *y = out->value.data;
  _fg_sgemm (FALSE, TRUE, N, K, D, -2.0f, A->data, blas_ld (A), B->data, blas_ld (B), 0.0f, y, K);
  double *nb = fg_tape_alloc (tape, MAX (K, 1) * sizeof (double));
  for (gsize k = 0; k < K; k++)
    {
      const float *r = fg_tensor_row (B, k);
      nb[k] = _fg_dot_f64 (r, r, D);
    }
  for (gsize i = 0; i < N; i++)
    {
      const float *r = fg_tensor_row (A, i);
      const double na = _fg_dot_f64 (r, r, D);
      float *yr = y + i * K;
      for (gsize k = 0; k < K; k++)
        {
          const double v = na + nb[k] + yr[k];
          yr[k] = v > 0.0 ? (float) v : 0.0f;
        }
    }
  return out;
}
