/* SPDX-License-Identifier: MIT */
/* flowgmm — matrix products through cblas_sgemm: matmul, linear, squared distances.
 *
 * Forward and backward are all sgemm calls on the operands in place (their ld is passed
 * through, so strided views need no copy).  A gradient that a product is the first to touch is
 * written with beta = 0 instead of being zeroed and then accumulated.
 */
#include "config.h"

#include <limits.h>
#include <cblas.h>

#include <flowgmm/vecmath.h>

#include "numeric/numeric-private.h"

/* One cblas_sgemm on the calling thread (OpenBLAS itself is single-threaded while the core's
 * pool exists). */
static void
sgemm1 (gboolean trans_a, gboolean trans_b, gsize m, gsize n, gsize k, float alpha,
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

/* The forward product is split by columns only when the output is at least this many times
 * wider than the batch is tall.  Below that, row blocks are faster even though every task then
 * packs all of W: on the d768 benchmark (batch 256, outputs 512 and 768) row blocks made the
 * whole training step 1.2 % faster, measured with the two splits alternating step by step in
 * one process. */
#define FWD_COLS_RATIO 4

/* Boundaries of split products fall on multiples of this many rows or columns. */
#define SPLIT_ALIGN 16

typedef struct {
  gboolean ta, tb, by_rows;
  gsize m, n, k;
  float alpha, beta;
  const float *a, *b;
  float *c;
  gsize lda, ldb, ldc;
} GemmJob;

/* A slice of C: rows of op(A) (row r of Aᵀ is column r of A), or columns of op(B). */
static void
gemm_task (gpointer data, guint t, guint n_tasks)
{
  const GemmJob *j = data;
  gsize r0, r1;
  if (j->by_rows)
    {
      _fg_pool_range (j->m, t, n_tasks, SPLIT_ALIGN, &r0, &r1);
      sgemm1 (j->ta, j->tb, r1 - r0, j->n, j->k, j->alpha, j->ta ? j->a + r0 : j->a + r0 * j->lda,
              j->lda, j->b, j->ldb, j->beta, j->c + r0 * j->ldc, j->ldc);
    }
  else
    {
      _fg_pool_range (j->n, t, n_tasks, SPLIT_ALIGN, &r0, &r1);
      sgemm1 (j->ta, j->tb, j->m, r1 - r0, j->k, j->alpha, j->a, j->lda,
              j->tb ? j->b + r0 * j->ldb : j->b + r0, j->ldb, j->beta, j->c + r0, j->ldc);
    }
}

/* Tasks for splitting `len` rows or columns of a kernel of `ns`: at most one per SPLIT_ALIGN. */
static guint
split_tasks (double ns, gsize len)
{
  const guint t = _fg_pool_tasks (ns);
  return (guint) MAX (1, MIN ((gsize) t, len / SPLIT_ALIGN));
}

/* With a thread budget above one, the product is cut into row blocks of C (or column blocks,
 * when C is wider than tall) and each block is a single-threaded sgemm on one of the core's
 * threads: on the skinny shapes of a tabular flow this runs at up to twice OpenBLAS's own
 * two-thread split (doc/performance.md, "Own threading").  Every element of C is still one dot product over k in
 * OpenBLAS's order, so the split changes no result beyond the kernel's own blocking. */
void
_fg_sgemm (gboolean trans_a, gboolean trans_b, gsize m, gsize n, gsize k, float alpha,
           const float *a, gsize lda, const float *b, gsize ldb, float beta, float *c, gsize ldc)
{
  if (m == 0 || n == 0)
    return;
  const gboolean by_rows = m >= n;
  const guint tasks = split_tasks (2.0 * (double) m * (double) n * (double) k
                                     * FG_POOL_NS_PER_FLOP,
                                   by_rows ? m : n);
  if (tasks <= 1)
    {
      sgemm1 (trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
      return;
    }
  GemmJob job = { !!trans_a, !!trans_b, by_rows, m, n, k, alpha, beta, a, b, c,
                  lda, ldb, ldc };
  _fg_pool_run (tasks, gemm_task, &job);
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
  gboolean dropout; /* relu then dropout, fused: the output is relu(z)·mask */
  FgDropout drop;
} LinearSaved;

/* ---- the threaded pieces of linear and linear_act --------------------------------------- */

/* Relative cost of an activation per element, in streaming passes (for sizing splits). */
static double
act_cost (FgActivation act)
{
  switch (act)
    {
    case FG_ACT_NONE:
      return 0.0;
    case FG_ACT_RELU:
    case FG_ACT_LEAKY_RELU:
      return 1.0;
    case FG_ACT_TANH:
    case FG_ACT_SIGMOID:
    case FG_ACT_SOFTPLUS:
    default:
      return 4.0;
    }
}

typedef struct {
  const float *x, *w, *bias;
  gsize ldx, ldw;
  float *y;
  gsize N, n_in, n_out, step;
  FgActivation act;
  float slope;
  const FgDropout *drop; /* or NULL */
  float *mask;           /* per task: n_out floats (dropout) */
  guint32 *lanes;        /* per task: n_out entries (dropout) */
  gboolean by_cols;      /* tasks take column blocks (else row blocks) */
} LinearFwdJob;

/* One task's part of y = act(x·W + b) (⊙ mask): a block of rows, or of columns when the output
 * is much wider than the batch is tall (each task then packs only its share of W, the larger
 * operand, instead of all of it), `step` rows at a time; each block is multiplied, then biased,
 * activated and masked in one pass while it is still in cache. */
static void
linear_fwd_task (gpointer data, guint t, guint n_tasks)
{
  const LinearFwdJob *j = data;
  const gboolean row_pass = j->bias != NULL || j->act != FG_ACT_NONE || j->drop != NULL;
  float *mask = j->drop != NULL ? j->mask + t * j->n_out : NULL;
  gsize r0 = 0, r1 = j->N, c0 = 0, c1 = j->n_out;
  if (j->by_cols)
    _fg_pool_range (j->n_out, t, n_tasks, SPLIT_ALIGN, &c0, &c1);
  else
    _fg_pool_range (j->N, t, n_tasks, SPLIT_ALIGN, &r0, &r1);
  if (c1 <= c0)
    return;
  const gsize w = c1 - c0;
  for (gsize b0 = r0; b0 < r1; b0 += j->step)
    {
      const gsize m = MIN (j->step, r1 - b0);
      float *yc = j->y + b0 * j->n_out + c0;
      sgemm1 (FALSE, FALSE, m, w, j->n_in, 1.0f, j->x + b0 * j->ldx, j->ldx, j->w + c0, j->ldw,
              0.0f, yc, j->n_out);
      for (gsize i = 0; row_pass && i < m; i++)
        {
          if (mask != NULL)
            _fg_dropout_fill (j->drop, (b0 + i) * j->n_out + c0, w, mask,
                              j->lanes + t * j->n_out);
          _fg_act_forward_row (j->act, j->slope, yc + i * j->n_out,
                               j->bias != NULL ? j->bias + c0 : NULL, mask, w);
        }
    }
}

typedef struct {
  FgActivation act;
  float slope;
  gsize n_in, n_out;
  const FgTensor *X, *W, *G;
  const float *Y;      /* the activated output, contiguous */
  float keep;          /* > 0: relu + dropout fused, Y is the masked output */
  FgTensor *dX, *dW;
  gboolean x_fresh, w_fresh;
  guint nx, nw;        /* phase B: tasks on dX (row blocks), then on dW (column blocks) */
  double *acc;         /* bias gradient column sums, or NULL */
  FgWeight *w_final;   /* the weight whose gradient dW this chunk finishes, or NULL */
  double w_sumsq;      /* its _fg_weight_grad_sumsq, taken by the one dW task */
  float *dz;           /* chunk scratch (rows × n_out), NULL when dZ is G itself */
  gsize r0, m;         /* the chunk */
} LinearBwdJob;

/* dZ of the chunk (G itself without activation, else G ⊙ act'(Y) into the scratch). */
static inline const float *
bwd_dz (const LinearBwdJob *j, gsize *ld)
{
  if (j->dz != NULL)
    {
      *ld = j->n_out;
      return j->dz;
    }
  *ld = j->G->ld;
  return j->G->data + j->r0 * j->G->ld;
}

/* Phase A, columns [c0, c1) of the chunk: dZ and the bias gradient's column sums. */
static void
linear_bwd_cols (gpointer data, guint t, guint n_tasks)
{
  const LinearBwdJob *j = data;
  gsize c0, c1, lddz;
  _fg_pool_range (j->n_out, t, n_tasks, SPLIT_ALIGN, &c0, &c1);
  if (c1 <= c0)
    return;
  if (j->dz != NULL)
    for (gsize i = 0; i < j->m; i++)
      {
        float *dz = j->dz + i * j->n_out + c0;
        const float *g = j->G->data + (j->r0 + i) * j->G->ld + c0;
        const float *y = j->Y + (j->r0 + i) * j->n_out + c0;
        if (j->keep > 0.0f)
          _fg_act_grad_relu_dropout (dz, g, y, j->keep, c1 - c0);
        else
          _fg_act_grad (j->act, j->slope, dz, g, y, c1 - c0);
      }
  const float *dz = bwd_dz (j, &lddz);
  if (j->acc != NULL)
    {
      FgTensor v = fg_tensor_wrap_2d ((float *) dz + c0, j->m, c1 - c0);
      v.ld = lddz;
      _fg_colsum_acc (j->acc + c0, &v);
    }
}

/* Phase B: tasks [0, nx) take row blocks of dX = dZ · Wᵀ, tasks [nx, nx + nw) column blocks
 * of dW (+)= Xᵀ · dZ.  The two products are independent and equally long, so with two threads
 * each runs whole on its own thread: nothing is packed twice, as it is when one product is
 * cut in two. */
static void
linear_bwd_products (gpointer data, guint t, guint n_tasks)
{
  LinearBwdJob *j = data;
  gsize a, b, lddz;
  const float *dz = bwd_dz (j, &lddz);
  if (t < j->nx)
    {
      _fg_pool_range (j->m, t, j->nx, SPLIT_ALIGN, &a, &b);
      sgemm1 (FALSE, TRUE, b - a, j->n_in, j->n_out, 1.0f, dz + a * lddz, lddz, j->W->data,
              blas_ld (j->W), j->x_fresh ? 0.0f : 1.0f, j->dX->data + (j->r0 + a) * j->dX->ld,
              j->dX->ld);
      return;
    }
  t -= j->nx;
  /* column blocks of dW, or row blocks when dW is taller than wide */
  const gboolean by_rows = j->n_in > j->n_out;
  _fg_pool_range (by_rows ? j->n_in : j->n_out, t, j->nw, SPLIT_ALIGN, &a, &b);
  if (b <= a)
    return;
  const float beta = (j->w_fresh && j->r0 == 0) ? 0.0f : 1.0f;
  const float *X = j->X->data + j->r0 * j->X->ld;
  if (by_rows)
    sgemm1 (TRUE, FALSE, b - a, j->n_out, j->m, 1.0f, X + a, blas_ld (j->X), dz, lddz, beta,
            j->dW->data + a * j->dW->ld, j->dW->ld);
  else
    sgemm1 (TRUE, FALSE, j->n_in, b - a, j->m, 1.0f, X, blas_ld (j->X), dz + a, lddz, beta,
            j->dW->data + a, j->dW->ld);
  /* The task that made all of a final dW takes its Σ g² now: dW is in cache, and dX, the
   * other thread's product, takes a little longer (nt is slower than tn), so this mostly
   * fills time that thread would wait anyway. */
  if (j->w_final != NULL)
    j->w_sumsq = _fg_weight_grad_sumsq (j->w_final);
}

/* How phase B shares `tasks` between dX and dW (either may be absent). */
static void
bwd_share (LinearBwdJob *j, guint tasks, gboolean has_dx, gboolean has_dw)
{
  if (has_dx && has_dw)
    {
      j->nx = MAX (1, tasks / 2);
      j->nw = MAX (1, tasks - j->nx);
    }
  else
    {
      j->nx = has_dx ? tasks : 0;
      j->nw = has_dw ? tasks : 0;
    }
}

/* dX (+)= dZ·Wᵀ, dW (+)= Xᵀ·dZ, db (+)= Σ_rows dZ with dZ = G ⊙ act'(Y), block by block of
 * FG_CHUNK_ROWS rows (without activation, dZ = G in one block).  Each block runs in two
 * parallel phases: by columns of dZ (dZ itself and the bias sums: no two tasks write the same
 * element), then the two products side by side (linear_bwd_products). */
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
  const gsize chunk = ls->act == FG_ACT_NONE ? MAX (N, 1) : MIN (MAX (N, 1), FG_CHUNK_ROWS);
  LinearBwdJob j;

  memset (&j, 0, sizeof j);
  j.act = ls->act;
  j.slope = ls->slope;
  j.n_in = n_in;
  j.n_out = n_out;
  j.X = X;
  j.W = W;
  j.G = G;
  j.Y = out->value.data;
  j.keep = ls->dropout ? ls->drop.keep : 0.0f;
  j.dX = dX;
  j.dW = dW;
  j.x_fresh = x_fresh;
  j.w_fresh = w_fresh;
  if (ls->act != FG_ACT_NONE)
    j.dz = fg_tape_alloc_floats (tape, chunk * n_out);
  if (db != NULL)
    {
      j.acc = fg_tape_alloc (tape, MAX (n_out, 1) * sizeof (double));
      memset (j.acc, 0, n_out * sizeof (double));
    }
  for (gsize r0 = 0; r0 < N; r0 += chunk)
    {
      j.r0 = r0;
      j.m = MIN (chunk, N - r0);
      const double gemm_ns = 2.0 * n_in * n_out * j.m * FG_POOL_NS_PER_FLOP;
      const double elt_ns = (double) j.m * n_out * FG_POOL_NS_PER_ELEMENT
                            * (act_cost (ls->act) + (j.acc != NULL ? 1.0 : 0.0));
      if (j.dz != NULL || j.acc != NULL)
        _fg_pool_run (split_tasks (elt_ns, n_out), linear_bwd_cols, &j);
      const guint tb = _fg_pool_tasks (gemm_ns * ((dX != NULL) + (dW != NULL)));
      bwd_share (&j, tb, dX != NULL, dW != NULL);
      /* no block thinner than SPLIT_ALIGN rows or columns */
      j.nx = MIN (j.nx, (guint) MAX (j.m / SPLIT_ALIGN, 1));
      j.nw = MIN (j.nw, (guint) MAX (MAX (n_in, n_out) / SPLIT_ALIGN, 1));
      if (dX == NULL)
        j.nx = 0;
      if (dW == NULL)
        j.nw = 0;
      j.w_final = j.nw == 1 && r0 + j.m >= N && _fg_tape_grad_final (tape, in[1])
                    ? _fg_node (in[1])->weight
                    : NULL;
      if (tb > 1)
        _fg_pool_run (j.nx + j.nw, linear_bwd_products, &j);
      else
        for (guint t = 0; t < j.nx + j.nw; t++)
          linear_bwd_products (&j, t, j.nx + j.nw);
    }
  if (dW != NULL && w_fresh && N == 0) /* an empty batch still owes a zero gradient */
    memset (dW->data, 0, fg_tensor_numel (dW) * sizeof (float));
  if (j.w_final != NULL)
    _fg_tape_set_grad_sumsq (tape, in[1], j.w_sumsq);
  if (db != NULL)
    for (gsize c = 0; c < n_out; c++)
      db->data[c] = (float) ((b_fresh ? 0.0 : db->data[c]) + j.acc[c]);
}

/* x[N, in] · W[in, out] + b[1, out] (b may be NULL); a programmer error (critical) otherwise. */
static gboolean
linear_shapes_fit (const char *name, const FgTensor *X, const FgTensor *W, const FgVar *b)
{
  const gsize n_in = fg_tensor_cols (X), n_out = fg_tensor_cols (W);
  if (fg_tensor_rows (W) == n_in
      && (b == NULL || (fg_tensor_rows (&b->value) == 1 && fg_tensor_cols (&b->value) == n_out)))
    return TRUE;
  char b1[64], b2[64], b3[64];
  g_critical ("%s: x %s, W %s and b %s do not fit x[N, in] · W[in, out] + b[1, out]", name,
              _fg_tape_shape_str (X, b1, sizeof b1), _fg_tape_shape_str (W, b2, sizeof b2),
              b ? _fg_tape_shape_str (&b->value, b3, sizeof b3) : "(none)");
  return FALSE;
}

static FgVar *
linear_impl (FgTape *tape, const char *name, FgVar *x, FgVar *w, FgVar *b, FgActivation act,
             float slope, float p, FgRng *rng)
{
  g_return_val_if_fail (tape != NULL, NULL);
  if (x == NULL || w == NULL)
    return NULL;
  const FgTensor *X = &x->value, *W = &w->value;
  const gsize N = fg_tensor_rows (X), n_in = fg_tensor_cols (X), n_out = fg_tensor_cols (W);
  if (!linear_shapes_fit (name, X, W, b))
    return NULL;
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
  ls->dropout = p > 0.0f;
  if (ls->dropout)
    _fg_dropout_init (&ls->drop, p, rng);

  /* Row blocks over the pool's threads; within a task, FG_CHUNK_ROWS at a time when a pass
   * over the block follows its product (bias, activation, mask). */
  const gboolean row_pass = b != NULL || act != FG_ACT_NONE || ls->dropout;
  LinearFwdJob j = { X->data, W->data, b != NULL ? b->value.data : NULL, blas_ld (X), blas_ld (W),
                     out->value.data, N, n_in, n_out,
                     row_pass ? FG_CHUNK_ROWS : MAX (N, 1), act, slope,
                     ls->dropout ? &ls->drop : NULL, NULL, NULL, n_out >= FWD_COLS_RATIO * N };
  const double ns = 2.0 * N * n_in * n_out * FG_POOL_NS_PER_FLOP
                    + (double) N * n_out * FG_POOL_NS_PER_ELEMENT
                        * (1.0 + act_cost (act) + (ls->dropout ? 1.0 : 0.0));
  const guint tasks = split_tasks (ns, j.by_cols ? n_out : N);
  if (ls->dropout)
    {
      j.mask = fg_tape_alloc_floats (tape, tasks * n_out);
      j.lanes = fg_tape_alloc (tape, tasks * n_out * sizeof (guint32));
    }
  _fg_pool_run (tasks, linear_fwd_task, &j);
  return out;
}

/**
 * fg_op_linear:
 * @tape: a tape
 * @x: (nullable): [N, in] (any tensor, taken as rows × cols)
 * @w: (nullable): [in, out]
 * @b: (nullable): [1, out], or NULL for no bias
 *
 * The bias is added to each block of 256 rows right after its product, while the block is in
 * cache; its gradient is a column sum in double.  With a thread budget above one the rows (and
 * in the backward pass the columns, then the rows) are split over the core's pool.
 *
 * Returns: (transfer none) (nullable): x · W + b, [N, out].
 */
FgVar *
fg_op_linear (FgTape *tape, FgVar *x, FgVar *w, FgVar *b)
{
  return linear_impl (tape, "fg_op_linear", x, w, b, FG_ACT_NONE, 0.0f, 0.0f, NULL);
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
  return linear_impl (tape, "fg_op_linear_act", x, w, b, act, slope, 0.0f, NULL);
}

/**
 * fg_op_linear_act_dropout:
 * @tape: a tape
 * @x: (nullable): [N, in]
 * @w: (nullable): [in, out]
 * @b: (nullable): [1, out], or NULL for no bias
 * @act: the activation
 * @slope: the negative-side slope for %FG_ACT_LEAKY_RELU
 * @p: drop probability, 0 <= p < 1
 * @rng: the generator of the mask (one 64-bit draw, as fg_op_dropout())
 * @train: FALSE at evaluation (no dropout, no draw)
 *
 * fg_op_dropout (fg_op_linear_act (x, w, b, act, slope), p, rng, train): the same values, the
 * same mask and the same draw from @rng.  With %FG_ACT_RELU it is one node: the mask is made and
 * applied in the pass that adds the bias and activates, and the backward pass needs neither the
 * mask nor the unmasked output (dropout(relu(z)) is positive exactly where z > 0 and the element
 * was kept), which saves two passes over the activation each way.  Other activations are the
 * two ops.
 *
 * Returns: (transfer none) (nullable): [N, out].
 */
FgVar *
fg_op_linear_act_dropout (FgTape *tape, FgVar *x, FgVar *w, FgVar *b, FgActivation act,
                          float slope, float p, FgRng *rng, gboolean train)
{
  g_return_val_if_fail (tape != NULL, NULL);
  g_return_val_if_fail (p >= 0.0f && p < 1.0f, NULL);
  if (!train || p == 0.0f)
    return fg_op_linear_act (tape, x, w, b, act, slope);
  g_return_val_if_fail (rng != NULL, NULL);
  if (act != FG_ACT_RELU)
    return fg_op_dropout (tape, fg_op_linear_act (tape, x, w, b, act, slope), p, rng, TRUE);
  return linear_impl (tape, "fg_op_linear_act_dropout", x, w, b, act, slope, p, rng);
}

/* ---- linear_cols ---------------------------------------------------------------------------- */

typedef struct {
  const guint32 *cols;
  gsize n_cols;
  gboolean has_bias;
  float *wc;        /* W[:, cols] compacted ([in, n_cols]) when the runs are short, else NULL */
} LinearColsSaved;

/* Runs shorter than this are multiplied through a compact copy of their columns: one product
 * with k = n_cols instead of several thin ones (the copy is in × n_cols floats). */
#define COLS_MIN_RUN 64

/* Length of the run of consecutive indices starting at cols[c]. */
static inline gsize
cols_run (const guint32 *cols, gsize c, gsize n)
{
  gsize r = 1;
  while (c + r < n && cols[c + r] == cols[c] + r)
    r++;
  return r;
}

typedef struct {
  const LinearColsSaved *ls;
  const FgTensor *X, *W, *G;
  FgTensor *dX, *dW, *db;
  gboolean x_fresh;
  double *acc;
} LinearColsBwdJob;

/* Task 0: dX (+)= G · W[:, cols]ᵀ (through the compact copy, or run by run).  Task 1 (or task
 * 0 alone): dW[:, run] += Xᵀ · G[:, run cols] and db[run] += Σ_rows G, run by run, in place.
 * The two halves are independent and equally long: with two threads nothing is packed twice. */
static void
linear_cols_bwd_task (gpointer data, guint t, guint n_tasks)
{
  const LinearColsBwdJob *j = data;
  const LinearColsSaved *ls = j->ls;
  const FgTensor *X = j->X, *W = j->W, *G = j->G;
  const gsize N = fg_tensor_rows (X), n_in = fg_tensor_cols (X);
  if (t == 0 && j->dX != NULL)
    {
      if (ls->wc != NULL)
        sgemm1 (FALSE, TRUE, N, n_in, ls->n_cols, 1.0f, G->data, G->ld, ls->wc, ls->n_cols,
                j->x_fresh ? 0.0f : 1.0f, j->dX->data, j->dX->ld);
      else
        for (gsize c = 0; c < ls->n_cols;)
          {
            const gsize r = cols_run (ls->cols, c, ls->n_cols), col = ls->cols[c];
            sgemm1 (FALSE, TRUE, N, n_in, r, 1.0f, G->data + c, G->ld, W->data + col,
                    blas_ld (W), (j->x_fresh && c == 0) ? 0.0f : 1.0f, j->dX->data, j->dX->ld);
            c += r;
          }
      if (j->x_fresh && ls->n_cols == 0)
        memset (j->dX->data, 0, fg_tensor_numel (j->dX) * sizeof (float));
    }
  if (t + 1 < n_tasks)
    return;
  for (gsize c = 0; c < ls->n_cols;)
    {
      const gsize r = cols_run (ls->cols, c, ls->n_cols), col = ls->cols[c];
      if (j->dW != NULL)
        sgemm1 (TRUE, FALSE, n_in, r, N, 1.0f, X->data, blas_ld (X), G->data + c, G->ld, 1.0f,
                j->dW->data + col, j->dW->ld);
      if (j->db != NULL)
        {
          FgTensor v = fg_tensor_wrap_2d (G->data + c, N, r);
          v.ld = G->ld;
          memset (j->acc, 0, r * sizeof (double));
          _fg_colsum_acc (j->acc, &v);
          for (gsize q = 0; q < r; q++)
            j->db->data[col + q] = (float) (j->db->data[col + q] + j->acc[q]);
        }
      c += r;
    }
}

static void
linear_cols_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  const LinearColsSaved *ls = saved;
  LinearColsBwdJob j;
  j.ls = ls;
  j.X = &in[0]->value;
  j.W = &in[1]->value;
  j.G = &out->grad;
  j.dX = _fg_tape_grad_fresh (tape, in[0], &j.x_fresh);
  /* Only some columns of W and b receive a gradient: an unwritten buffer is zeroed first. */
  j.dW = fg_tape_grad (tape, in[1]);
  j.db = ls->has_bias ? fg_tape_grad (tape, in[2]) : NULL;
  j.acc = j.db != NULL ? fg_tape_alloc (tape, MAX (ls->n_cols, 1) * sizeof (double)) : NULL;
  const double ns = 2.0 * fg_tensor_rows (j.X) * fg_tensor_cols (j.X) * ls->n_cols
                    * FG_POOL_NS_PER_FLOP;
  const guint tasks = j.dX != NULL && j.dW != NULL && _fg_pool_tasks (2.0 * ns) > 1 ? 2 : 1;
  if (tasks > 1)
    _fg_pool_run (2, linear_cols_bwd_task, &j);
  else
    linear_cols_bwd_task (&j, 0, 1);
}

/**
 * fg_op_linear_cols:
 * @tape: a tape
 * @x: (nullable): [N, in]
 * @w: (nullable): [in, out]
 * @b: (nullable): [1, out], or NULL for no bias
 * @cols: (array length=n_cols): the output columns to compute, indices below out; must stay
 *   valid until the tape is reset
 * @n_cols: their number
 *
 * The columns @cols of x · W + b, i.e. fg_op_linear () of x with the gathered columns of W and
 * b, without gathering: each run of consecutive indices is one sgemm on W in place, and the
 * gradients of W and b accumulate straight into those columns (a layer whose other outputs
 * would be masked away, as the last layer of a RealNVP coupling, costs only what it computes).
 * When some run is shorter than 64 columns, the forward product and dX go through one compact
 * copy of W[:, cols] instead (thin products are slow); dW still accumulates run by run in
 * place.
 *
 * Returns: (transfer none) (nullable): [N, n_cols].
 */
FgVar *
fg_op_linear_cols (FgTape *tape, FgVar *x, FgVar *w, FgVar *b, const guint32 *cols, gsize n_cols)
{
  g_return_val_if_fail (tape != NULL, NULL);
  g_return_val_if_fail (cols != NULL || n_cols == 0, NULL);
  if (x == NULL || w == NULL)
    return NULL;
  const FgTensor *X = &x->value, *W = &w->value;
  const gsize N = fg_tensor_rows (X), n_in = fg_tensor_cols (X), n_out = fg_tensor_cols (W);
  if (!linear_shapes_fit ("fg_op_linear_cols", X, W, b))
    return NULL;
  for (gsize c = 0; c < n_cols; c++)
    if (cols[c] >= n_out)
      {
        g_critical ("fg_op_linear_cols: column %u of a %" G_GSIZE_FORMAT "-column layer",
                    cols[c], n_out);
        return NULL;
      }
  gsize shape[2] = { N, n_cols };
  FgVar *inputs[3] = { x, w, b };
  LinearColsSaved *ls;
  FgVar *out = fg_tape_op_new (tape, 2, shape, inputs, b ? 3 : 2, linear_cols_backward,
                               sizeof *ls, (gpointer *) &ls);
  ls->cols = cols;
  ls->n_cols = n_cols;
  ls->has_bias = b != NULL;
  ls->wc = NULL;
  gsize n_runs = 0, shortest = G_MAXSIZE;
  for (gsize c = 0; c < n_cols;)
    {
      const gsize r = cols_run (cols, c, n_cols);
      n_runs++;
      shortest = MIN (shortest, r);
      c += r;
    }
  float *y = out->value.data;
  if (b != NULL)
    {
      /* the bias row once (runs copied as blocks), then every row from it */
      float *brow = fg_tape_alloc_floats (tape, MAX (n_cols, 1));
      for (gsize c = 0; c < n_cols;)
        {
          const gsize r = cols_run (cols, c, n_cols);
          memcpy (brow + c, b->value.data + cols[c], r * sizeof (float));
          c += r;
        }
      for (gsize i = 0; i < N; i++)
        memcpy (y + i * n_cols, brow, n_cols * sizeof (float));
    }
  if (n_runs > 1 && shortest < COLS_MIN_RUN)
    {
      /* Short runs: W[:, cols] copied once, kept for the backward pass (W does not change in
       * between). */
      ls->wc = fg_tape_alloc_floats (tape, MAX (n_in * n_cols, 1));
      for (gsize i = 0; i < n_in; i++)
        {
          const float *wr = fg_tensor_row (W, i);
          float *dst = ls->wc + i * n_cols;
          for (gsize c = 0; c < n_cols; c++)
            dst[c] = wr[cols[c]];
        }
      _fg_sgemm (FALSE, FALSE, N, n_cols, n_in, 1.0f, X->data, blas_ld (X), ls->wc, n_cols,
                 b != NULL ? 1.0f : 0.0f, y, n_cols);
      return out;
    }
  for (gsize c = 0; c < n_cols;)
    {
      const gsize r = cols_run (cols, c, n_cols), j = cols[c];
      _fg_sgemm (FALSE, FALSE, N, r, n_in, 1.0f, X->data, blas_ld (X), W->data + j, blas_ld (W),
                 b != NULL ? 1.0f : 0.0f, y + c, n_cols);
      c += r;
    }
  return out;
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
          const float rs = 2.0f * (float) fg_sum_f64 (fg_tensor_row (G, i), K);
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
