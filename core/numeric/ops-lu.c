/* SPDX-License-Identifier: MIT */
/* flowgmm — small dense square matrices for invertible layers: an LU-parameterised matrix
 * (Glow's invertible 1×1 convolution), triangular solves and log|det|.
 *
 * These matrices are channel × channel (tens to a few hundred rows), so the kernels are plain
 * loops accumulating in double; what matters is that they are exact and differentiable, not
 * fast.
 */
#include "config.h"

#include "numeric/numeric-private.h"

static gboolean
is_square (const FgVar *v, gsize n)
{
  return v != NULL && v->value.ndim == 2 && v->value.shape[0] == n && v->value.shape[1] == n;
}

static inline float
at (const FgTensor *t, gsize i, gsize j)
{
  return fg_tensor_row (t, i)[j];
}

/* ======================================================================================== */
/* W = P · L · (U + diag (sign · exp (log_s)))                                                */
/* ======================================================================================== */

typedef struct {
  gsize n;
  const float *perm; /* n indices as floats, or NULL (identity) */
  const float *sign; /* n signs */
  gboolean has_lower;
} LuSaved;

static void
lu_matrix_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  const LuSaved *s = saved;
  const gsize n = s->n;
  guint k = 0;
  FgVar *lower = s->has_lower ? in[k++] : NULL;
  FgVar *upper = in[k++], *log_s = in[k++];
  FgTensor *dLo = lower ? fg_tape_grad (tape, lower) : NULL;
  FgTensor *dUp = fg_tape_grad (tape, upper);
  FgTensor *dLs = fg_tape_grad (tape, log_s);
  const FgTensor *G = &out->grad;
  double *dA = fg_tape_alloc (tape, 2 * n * n * sizeof (double)), *Uf = dA + n * n;

  /* dA = Pᵀ G: row perm[i] of dA is row i of G. */
  for (gsize i = 0; i < n; i++)
    {
      const gsize r = s->perm ? (gsize) s->perm[i] : i;
      for (gsize j = 0; j < n; j++)
        dA[r * n + j] = at (G, i, j);
    }
  /* U' = U + diag (sign · e^log_s) */
  for (gsize i = 0; i < n; i++)
    for (gsize j = 0; j < n; j++)
      Uf[i * n + j] = j > i    ? at (&upper->value, i, j)
                      : j == i ? s->sign[i] * exp (log_s->value.data[i])
                               : 0.0;
  /* A = L U': dL = dA U'ᵀ (strictly lower part), dU' = Lᵀ dA (upper part with diagonal). */
  if (dLo != NULL)
    for (gsize i = 0; i < n; i++)
      for (gsize j = 0; j < i; j++)
        {
          double acc = 0.0;
          for (gsize m = j; m < n; m++) /* U'[j, m] = 0 for m < j */
            acc += dA[i * n + m] * Uf[j * n + m];
          fg_tensor_row (dLo, i)[j] += (float) acc;
        }
  for (gsize i = 0; i < n; i++)
    for (gsize j = i; j < n; j++)
      {
        /* (Lᵀ dA)[i, j] = Σ_m L[m, i] dA[m, j], L[m, i] = 1 at m = i, lower[m, i] for m > i */
        double acc = dA[i * n + j];
        if (lower != NULL)
          for (gsize m = i + 1; m < n; m++)
            acc += at (&lower->value, m, i) * dA[m * n + j];
        if (j > i && dUp != NULL)
          fg_tensor_row (dUp, i)[j] += (float) acc;
        else if (j == i && dLs != NULL)
          dLs->data[i] += (float) (acc * Uf[i * n + i]);
      }
}

/**
 * fg_op_lu_matrix:
 * @tape: a tape
 * @perm: (nullable): n row indices (as floats, e.g. a non-trainable weight), or NULL for the
 *   identity; row i of W is row perm[i] of L·U'
 * @lower: (nullable): [n, n]; only its strictly lower part is read (L has a unit diagonal), or
 *   NULL for L = I
 * @upper: (nullable): [n, n]; only its strictly upper part is read
 * @sign: n signs (±1) of U's diagonal (constant)
 * @log_s: (nullable): n values: log |U'[i, i]|
 *
 * W = P · L · (U + diag (sign ⊙ exp (log_s))), the LU parameterisation of an invertible matrix
 * (Kingma & Dhariwal 2018), with log |det W| = Σ log_s.  Gradients flow to lower, upper and
 * log_s; the parts of lower and upper that are not read get a zero gradient.
 *
 * Returns: (transfer none) (nullable): W, [n, n].
 */
FgVar *
fg_op_lu_matrix (FgTape *tape, const FgTensor *perm, FgVar *lower, FgVar *upper,
                 const FgTensor *sign, FgVar *log_s)
{
  g_return_val_if_fail (tape != NULL, NULL);
  if (upper == NULL || log_s == NULL || sign == NULL)
    return NULL;
  const gsize n = fg_tensor_rows (&upper->value);
  gboolean ok = is_square (upper, n) && (lower == NULL || is_square (lower, n))
                && fg_tensor_numel (&log_s->value) == n
                && fg_tensor_is_contiguous (&log_s->value) && fg_tensor_numel (sign) == n
                && fg_tensor_is_contiguous (sign)
                && (perm == NULL
                    || (fg_tensor_numel (perm) == n && fg_tensor_is_contiguous (perm)));
  for (gsize i = 0; ok && perm != NULL && i < n; i++)
    ok = perm->data[i] >= 0.0f && perm->data[i] < (float) n;
  if (!ok)
    {
      char b1[64];
      g_critical ("fg_op_lu_matrix: upper %s must be square [n, n], lower the same or NULL, "
                  "sign, log_s and perm n values (perm in [0, n))",
                  _fg_tape_shape_str (&upper->value, b1, sizeof b1));
      return NULL;
    }
  FgVar *inputs[3];
  guint k = 0;
  if (lower != NULL)
    inputs[k++] = lower;
  inputs[k++] = upper;
  inputs[k++] = log_s;
  LuSaved *s;
  const gsize shape[2] = { n, n };
  FgVar *out = fg_tape_op_new (tape, 2, shape, inputs, k, lu_matrix_backward, sizeof *s,
                               (gpointer *) &s);
  s->n = n;
  s->has_lower = lower != NULL;
  s->perm = perm ? perm->data : NULL;
  s->sign = sign->data;
  /* Row r of L·U' is Σ_{m <= r} L[r, m] U'[m, :]; row i of W is row perm[i] of it. */
  for (gsize i = 0; i < n; i++)
    {
      const gsize r = perm ? (gsize) perm->data[i] : i;
      float *w = fg_tensor_row (&out->value, i);
      for (gsize j = 0; j < n; j++)
        {
          double acc = 0.0;
          for (gsize m = 0; m <= MIN (r, j); m++)
            {
              const double l = m == r ? 1.0 : lower ? (double) at (&lower->value, r, m) : 0.0;
              const double u = m == j ? s->sign[m] * exp (log_s->value.data[m])
                                      : (double) at (&upper->value, m, j);
              acc += l * u;
            }
          w[j] = (float) acc;
        }
    }
  return out;
}

/* ======================================================================================== */
/* Triangular solve                                                                           */
/* ======================================================================================== */

typedef struct {
  gboolean lower, unit;
} TriSaved;

/* X = op(A)⁻¹ B in double for an [n, n] triangular A (the triangle given by `lower`, with a unit
 * diagonal when `unit`; op = transpose when `trans`); B and X [n, k] row-major doubles (X may be
 * B). */
static void
tri_solve (const FgTensor *A, gboolean lower, gboolean unit, gboolean trans, double *X, gsize n,
           gsize k)
{
  /* op(A) is lower-triangular when lower != trans: forward substitution, else backward. */
  const gboolean fwd = lower != trans;
  for (gsize step = 0; step < n; step++)
    {
      const gsize i = fwd ? step : n - 1 - step;
      for (gsize c = 0; c < k; c++)
        {
          double acc = X[i * k + c];
          for (gsize m = 0; m < n; m++)
            {
              if (fwd ? m >= i : m <= i)
                continue;
              const double a = trans ? at (A, m, i) : at (A, i, m);
              acc -= a * X[m * k + c];
            }
          X[i * k + c] = unit ? acc : acc / at (A, i, i);
        }
    }
}

static void
solve_triangular_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  const TriSaved *s = saved;
  const FgTensor *A = &in[0]->value, *X = &out->value, *G = &out->grad;
  const gsize n = fg_tensor_rows (A), k = fg_tensor_cols (X);
  FgTensor *dA = fg_tape_grad (tape, in[0]);
  FgTensor *dB = fg_tape_grad (tape, in[1]);
  double *gb = fg_tape_alloc (tape, MAX (n * k, 1) * sizeof (double));
  /* dB = A⁻ᵀ G */
  for (gsize i = 0; i < n; i++)
    for (gsize c = 0; c < k; c++)
      gb[i * k + c] = at (G, i, c);
  tri_solve (A, s->lower, s->unit, TRUE, gb, n, k);
  if (dB != NULL)
    for (gsize i = 0; i < n; i++)
      for (gsize c = 0; c < k; c++)
        fg_tensor_row (dB, i)[c] += (float) gb[i * k + c];
  /* dA = −dB Xᵀ on the triangle that is read */
  if (dA != NULL)
    for (gsize i = 0; i < n; i++)
      for (gsize j = 0; j < n; j++)
        {
          if ((s->lower ? j > i : j < i) || (s->unit && i == j))
            continue;
          double acc = 0.0;
          for (gsize c = 0; c < k; c++)
            acc += gb[i * k + c] * at (X, j, c);
          fg_tensor_row (dA, i)[j] -= (float) acc;
        }
}

/**
 * fg_op_solve_triangular:
 * @tape: a tape
 * @a: (nullable): [n, n]; only the lower (or upper) triangle is read, and not the diagonal
 *   when @unit_diag
 * @b: (nullable): [n, k]
 * @lower: read the lower triangle of @a (else the upper one)
 * @unit_diag: treat the diagonal of @a as ones
 *
 * X = A⁻¹ B by substitution in double.  Gradients: dB = A⁻ᵀ G and dA = −dB Xᵀ on the triangle
 * that is read.  A zero on a (non-unit) diagonal gives inf/NaN, as for any singular matrix.
 *
 * Returns: (transfer none) (nullable): X, [n, k].
 */
FgVar *
fg_op_solve_triangular (FgTape *tape, FgVar *a, FgVar *b, gboolean lower, gboolean unit_diag)
{
  g_return_val_if_fail (tape != NULL, NULL);
  if (a == NULL || b == NULL)
    return NULL;
  const gsize n = fg_tensor_rows (&a->value);
  if (!is_square (a, n) || b->value.ndim != 2 || fg_tensor_rows (&b->value) != n)
    {
      char b1[64], b2[64];
      g_critical ("fg_op_solve_triangular: a %s must be [n, n] and b [n, k], b is %s",
                  _fg_tape_shape_str (&a->value, b1, sizeof b1),
                  _fg_tape_shape_str (&b->value, b2, sizeof b2));
      return NULL;
    }
  const gsize k = fg_tensor_cols (&b->value);
  FgVar *inputs[2] = { a, b };
  TriSaved *s;
  const gsize shape[2] = { n, k };
  FgVar *out = fg_tape_op_new (tape, 2, shape, inputs, 2, solve_triangular_backward, sizeof *s,
                               (gpointer *) &s);
  s->lower = lower;
  s->unit = unit_diag;
  double *x = fg_tape_alloc (tape, MAX (n * k, 1) * sizeof (double));
  for (gsize i = 0; i < n; i++)
    for (gsize c = 0; c < k; c++)
      x[i * k + c] = at (&b->value, i, c);
  tri_solve (&a->value, lower, unit_diag, FALSE, x, n, k);
  for (gsize i = 0; i < n; i++)
    for (gsize c = 0; c < k; c++)
      fg_tensor_row (&out->value, i)[c] = (float) x[i * k + c];
  return out;
}

/* ======================================================================================== */
/* log |det A|                                                                                */
/* ======================================================================================== */

/**
 * fg_lu_factor:
 * @lu: (inout): an n × n row-major matrix A, replaced by its factors: the strictly lower part
 *   holds L (unit diagonal implied), the rest U
 * @n: its size
 * @piv: (out): n entries; at step k rows k and piv[k] were swapped (LAPACK's convention), so
 *   that P A = L U with P those swaps applied in order
 *
 * LU decomposition with partial pivoting in double (not a tape op).  Stops at a zero pivot.
 *
 * Returns: log |det A|, or −inf when A is singular.
 */
double
fg_lu_factor (double *lu, gsize n, gsize *piv)
{
  double logdet = 0.0;
  for (gsize k = 0; k < n; k++)
    {
      gsize p = k;
      for (gsize i = k + 1; i < n; i++)
        if (fabs (lu[i * n + k]) > fabs (lu[p * n + k]))
          p = i;
      piv[k] = p;
      if (p != k)
        for (gsize j = 0; j < n; j++)
          {
            const double t = lu[k * n + j];
            lu[k * n + j] = lu[p * n + j];
            lu[p * n + j] = t;
          }
      const double d = lu[k * n + k];
      if (d == 0.0)
        return -INFINITY;
      logdet += log (fabs (d));
      for (gsize i = k + 1; i < n; i++)
        {
          const double f = lu[i * n + k] / d;
          lu[i * n + k] = f;
          for (gsize j = k + 1; j < n; j++)
            lu[i * n + j] -= f * lu[k * n + j];
        }
    }
  return logdet;
}

typedef struct {
  double *lu;
  gsize *piv;
} LogAbsDetSaved;

static void
logabsdet_backward (FgTape *tape, FgVar *out, FgVar *const *in, gpointer saved)
{
  const LogAbsDetSaved *s = saved;
  const gsize n = fg_tensor_rows (&in[0]->value);
  FgTensor *dA = fg_tape_grad (tape, in[0]);
  const double g = out->grad.data[0];
  double *col = fg_tape_alloc (tape, MAX (n, 1) * sizeof (double));
  if (dA == NULL)
    return;
  /* d log|det A| / dA = A⁻ᵀ: column j of A⁻¹ is row j of A⁻ᵀ.  With P A = L U,
   * A⁻¹ e_j = U⁻¹ L⁻¹ P e_j. */
  for (gsize j = 0; j < n; j++)
    {
      for (gsize i = 0; i < n; i++)
        col[i] = i == j ? 1.0 : 0.0;
      for (gsize k = 0; k < n; k++) /* apply the row swaps in order */
        if (s->piv[k] != k)
          {
            const double t = col[k];
            col[k] = col[s->piv[k]];
            col[s->piv[k]] = t;
          }
      for (gsize i = 0; i < n; i++) /* L y = P e_j, unit lower */
        for (gsize m = 0; m < i; m++)
          col[i] -= s->lu[i * n + m] * col[m];
      for (gsize i = n; i-- > 0;) /* U x = y */
        {
          for (gsize m = i + 1; m < n; m++)
            col[i] -= s->lu[i * n + m] * col[m];
          col[i] /= s->lu[i * n + i];
        }
      /* col = A⁻¹ e_j, column j of A⁻¹, which is row j of A⁻ᵀ. */
      float *d = fg_tensor_row (dA, j);
      for (gsize i = 0; i < n; i++)
        d[i] += (float) (g * col[i]);
    }
}

/**
 * fg_op_logabsdet:
 * @tape: a tape
 * @a: (nullable): [n, n]
 *
 * log |det A| by LU with partial pivoting in double; the gradient is A⁻ᵀ.  A singular matrix
 * gives −inf (and a non-finite gradient).
 *
 * Returns: (transfer none) (nullable): [1, 1].
 */
FgVar *
fg_op_logabsdet (FgTape *tape, FgVar *a)
{
  g_return_val_if_fail (tape != NULL, NULL);
  if (a == NULL)
    return NULL;
  const gsize n = fg_tensor_rows (&a->value);
  if (!is_square (a, n))
    {
      char b1[64];
      g_critical ("fg_op_logabsdet: a %s is not square",
                  _fg_tape_shape_str (&a->value, b1, sizeof b1));
      return NULL;
    }
  LogAbsDetSaved *s;
  const gsize shape[2] = { 1, 1 };
  FgVar *out = fg_tape_op_new (tape, 2, shape, &a, 1, logabsdet_backward, sizeof *s,
                               (gpointer *) &s);
  s->lu = fg_tape_alloc (tape, MAX (n * n, 1) * sizeof (double));
  s->piv = fg_tape_alloc (tape, MAX (n, 1) * sizeof (gsize));
  for (gsize i = 0; i < n; i++)
    for (gsize j = 0; j < n; j++)
      s->lu[i * n + j] = at (&a->value, i, j);
  out->value.data[0] = (float) fg_lu_factor (s->lu, n, s->piv);
  return out;
}
