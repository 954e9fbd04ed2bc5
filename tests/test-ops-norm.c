/* SPDX-License-Identifier: MIT */
/* flowgmm tests — the per-channel ops (core/numeric/ops-norm.c) and the small-matrix ops
 * (core/numeric/ops-lu.c): values against naive references in double, gradients against
 * central finite differences (gradcheck.h).
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include <flowgmm/flowgmm.h>

#include "gradcheck.h"

static FgWeight *
add_random (FgWeightSet *set, const char *name, guint ndim, const gsize *shape, FgRng *rng,
            float lo, float hi)
{
  FgWeight *w = fg_weight_set_add (set, name, ndim, shape, FALSE);
  fg_rng_fill_uniform (rng, w->value.data, fg_tensor_numel (&w->value), lo, hi);
  return w;
}

/* ---------------------------------------------------------------------- batch norm */

typedef struct {
  gboolean train;
  FgActivation act;
  FgTensor *rm, *rv;
} BnCase;

static FgVar *
bn_build (FgTape *tape, FgVar *const *in, gpointer data)
{
  BnCase *c = data;
  /* copies of the running statistics, so that training passes do not move them */
  g_autoptr (FgTensor) rm = fg_tensor_copy (c->rm), rv = fg_tensor_copy (c->rv);
  return fg_op_batch_norm2d (tape, in[0], in[1], in[2], rm, rv, 0.1f, 1e-5f, c->train, c->act);
}

static void
test_batch_norm (void)
{
  const gsize N = 3, C = 2, H = 3, W = 2, P = H * W;
  g_autoptr (FgWeightSet) set = fg_weight_set_new ();
  FgRng rng;
  fg_rng_init (&rng, 1, 1);
  FgWeight *x = add_random (set, "x", 4, (gsize[]){ N, C, H, W }, &rng, -2.0f, 3.0f);
  FgWeight *gm = add_random (set, "gamma", 2, (gsize[]){ 1, C }, &rng, 0.5f, 1.5f);
  FgWeight *bt = add_random (set, "beta", 2, (gsize[]){ 1, C }, &rng, -0.5f, 0.5f);
  g_autoptr (FgTensor) rm = fg_tensor_new_2d (1, C), rv = fg_tensor_new_2d (1, C);
  rm->data[0] = 0.3f;
  rm->data[1] = -0.2f;
  rv->data[0] = 1.5f;
  rv->data[1] = 0.7f;

  for (guint train = 0; train < 2; train++)
    for (guint a = 0; a < 2; a++)
      {
        const FgActivation act = a ? FG_ACT_RELU : FG_ACT_NONE;
        g_autoptr (FgTape) tape = fg_tape_new ();
        g_autoptr (FgTensor) m2 = fg_tensor_copy (rm), v2 = fg_tensor_copy (rv);
        FgVar *y = fg_op_batch_norm2d (tape, fg_tape_weight (tape, x), fg_tape_weight (tape, gm),
                                       fg_tape_weight (tape, bt), m2, v2, 0.1f, 1e-5f, train, act);
        g_assert_nonnull (y);
        for (gsize c = 0; c < C; c++)
          {
            double mu = rm->data[c], var = rv->data[c], s = 0, q = 0;
            for (gsize n = 0; n < N; n++)
              for (gsize p = 0; p < P; p++)
                s += x->value.data[(n * C + c) * P + p];
            const double bm = s / (N * P);
            for (gsize n = 0; n < N; n++)
              for (gsize p = 0; p < P; p++)
                q += pow (x->value.data[(n * C + c) * P + p] - bm, 2);
            if (train)
              {
                mu = bm;
                var = q / (N * P);
                /* running statistics: momentum 0.1, unbiased variance */
                g_assert_cmpfloat_with_epsilon (m2->data[c], 0.9 * rm->data[c] + 0.1 * bm, 1e-5);
                g_assert_cmpfloat_with_epsilon (v2->data[c],
                                                0.9 * rv->data[c] + 0.1 * q / (N * P - 1), 1e-5);
              }
            else
              {
                g_assert_cmpfloat (m2->data[c], ==, rm->data[c]);
                g_assert_cmpfloat (v2->data[c], ==, rv->data[c]);
              }
            for (gsize n = 0; n < N; n++)
              for (gsize p = 0; p < P; p++)
                {
                  const gsize e = (n * C + c) * P + p;
                  double want = gm->value.data[c] * (x->value.data[e] - mu) / sqrt (var + 1e-5)
                                + bt->value.data[c];
                  if (act == FG_ACT_RELU)
                    want = MAX (want, 0.0);
                  g_assert_cmpfloat_with_epsilon (y->value.data[e], want, 1e-5);
                }
          }
        BnCase bc = { train, act, rm, rv };
        FgWeight *ins[3] = { x, gm, bt };
        char what[64];
        g_snprintf (what, sizeof what, "batch norm train=%u relu=%u", train, a);
        gc_assert (ins, 3, bn_build, &bc, NULL, what);
      }
}

/* ---------------------------------------------------------------------- weight norm */

static FgVar *
wn_build (FgTape *tape, FgVar *const *in, gpointer data)
{
  (void) data;
  return fg_op_weight_norm (tape, in[0], in[1]);
}

static void
test_weight_norm (void)
{
  g_autoptr (FgWeightSet) set = fg_weight_set_new ();
  FgRng rng;
  fg_rng_init (&rng, 2, 1);
  FgWeight *v = add_random (set, "v", 4, (gsize[]){ 3, 2, 3, 3 }, &rng, -1.0f, 1.0f);
  FgWeight *g = add_random (set, "g", 2, (gsize[]){ 3, 1 }, &rng, 0.5f, 2.0f);
  g_autoptr (FgTape) tape = fg_tape_new ();
  FgVar *w = fg_op_weight_norm (tape, fg_tape_weight (tape, v), fg_tape_weight (tape, g));
  for (gsize o = 0; o < 3; o++)
    {
      double s = 0;
      for (gsize j = 0; j < 18; j++)
        s += pow (v->value.data[o * 18 + j], 2);
      for (gsize j = 0; j < 18; j++)
        g_assert_cmpfloat_with_epsilon (w->value.data[o * 18 + j],
                                        g->value.data[o] * v->value.data[o * 18 + j] / sqrt (s),
                                        1e-6);
    }
  FgWeight *ins[2] = { v, g };
  gc_assert (ins, 2, wn_build, NULL, NULL, "weight norm");
}

/* ---------------------------------------------------------------------- channel affine */

static FgVar *
ca_build (FgTape *tape, FgVar *const *in, gpointer data)
{
  (void) data;
  return fg_op_channel_affine (tape, in[0], in[1], in[2]);
}

static void
test_channel_affine (void)
{
  g_autoptr (FgWeightSet) set = fg_weight_set_new ();
  FgRng rng;
  fg_rng_init (&rng, 3, 1);
  FgWeight *x = add_random (set, "x", 4, (gsize[]){ 2, 3, 2, 2 }, &rng, -1.0f, 1.0f);
  FgWeight *a = add_random (set, "a", 2, (gsize[]){ 1, 3 }, &rng, -2.0f, 2.0f);
  FgWeight *b = add_random (set, "b", 2, (gsize[]){ 1, 3 }, &rng, -1.0f, 1.0f);
  g_autoptr (FgTape) tape = fg_tape_new ();
  FgVar *y = fg_op_channel_affine (tape, fg_tape_weight (tape, x), fg_tape_weight (tape, a),
                                   fg_tape_weight (tape, b));
  for (gsize e = 0; e < 24; e++)
    {
      const gsize c = (e / 4) % 3;
      g_assert_cmpfloat_with_epsilon (y->value.data[e],
                                      x->value.data[e] * a->value.data[c] + b->value.data[c], 1e-6);
    }
  FgWeight *ins[3] = { x, a, b };
  gc_assert (ins, 3, ca_build, NULL, NULL, "channel affine");
  /* constant nodes */
  FgVar *z = fg_op_zeros (tape, 3, (gsize[]){ 2, 3, 4 });
  FgVar *f = fg_op_full (tape, 2, (gsize[]){ 5, 1 }, 2.5f);
  g_assert_false (z->requires_grad);
  for (gsize i = 0; i < 24; i++)
    g_assert_cmpfloat (z->value.data[i], ==, 0.0f);
  for (gsize i = 0; i < 5; i++)
    g_assert_cmpfloat (f->value.data[i], ==, 2.5f);
}

/* ---------------------------------------------------------------------- small matrices */

/* log|det A| by the tests' own LU (gc_log_abs_det works in place). */
static double
ref_logabsdet (const double *a0, gsize n)
{
  double a[64];
  memcpy (a, a0, n * n * sizeof (double));
  return gc_log_abs_det (a, n);
}

typedef struct {
  FgTensor *perm, *sign;
} LuCase;

static FgVar *
lu_build (FgTape *tape, FgVar *const *in, gpointer data)
{
  LuCase *c = data;
  return fg_op_lu_matrix (tape, c->perm, in[0], in[1], c->sign, in[2]);
}

static void
test_lu_matrix (void)
{
  const gsize n = 4;
  g_autoptr (FgWeightSet) set = fg_weight_set_new ();
  FgRng rng;
  fg_rng_init (&rng, 4, 1);
  FgWeight *lo = add_random (set, "lower", 2, (gsize[]){ n, n }, &rng, -1.0f, 1.0f);
  FgWeight *up = add_random (set, "upper", 2, (gsize[]){ n, n }, &rng, -1.0f, 1.0f);
  FgWeight *ls = add_random (set, "log_s", 2, (gsize[]){ 1, n }, &rng, -0.5f, 0.5f);
  g_autoptr (FgTensor) perm = fg_tensor_new_2d (1, n), sign = fg_tensor_new_2d (1, n);
  const float pv[4] = { 2, 0, 3, 1 }, sv[4] = { 1, -1, -1, 1 };
  memcpy (perm->data, pv, sizeof pv);
  memcpy (sign->data, sv, sizeof sv);
  g_autoptr (FgTape) tape = fg_tape_new ();
  FgVar *W = fg_op_lu_matrix (tape, perm, fg_tape_weight (tape, lo), fg_tape_weight (tape, up),
                              sign, fg_tape_weight (tape, ls));
  double Wd[16];
  for (gsize i = 0; i < n; i++)
    for (gsize j = 0; j < n; j++)
      {
        const gsize r = (gsize) pv[i];
        double acc = 0;
        for (gsize m = 0; m < n; m++)
          {
            const double l = m == r ? 1 : m < r ? lo->value.data[r * n + m] : 0;
            const double u = m == j ? sv[m] * exp (ls->value.data[m]) : m < j ? up->value.data[m * n + j] : 0;
            acc += l * u;
          }
        Wd[i * n + j] = acc;
        g_assert_cmpfloat_with_epsilon (W->value.data[i * n + j], acc, 1e-5);
      }
  /* log|det W| = Σ log_s, and fg_op_logabsdet agrees */
  double sum = 0;
  for (gsize i = 0; i < n; i++)
    sum += ls->value.data[i];
  g_assert_cmpfloat_with_epsilon (ref_logabsdet (Wd, n), sum, 1e-5);
  FgVar *ld = fg_op_logabsdet (tape, W);
  g_assert_cmpfloat_with_epsilon (ld->value.data[0], sum, 1e-5);
  LuCase lc = { perm, sign };
  FgWeight *ins[3] = { lo, up, ls };
  gc_assert (ins, 3, lu_build, &lc, NULL, "lu matrix");
  lc.perm = NULL;
  gc_assert (ins, 3, lu_build, &lc, NULL, "lu matrix, identity permutation");
}

typedef struct {
  gboolean lower, unit;
} TriCase;

static FgVar *
tri_build (FgTape *tape, FgVar *const *in, gpointer data)
{
  TriCase *c = data;
  return fg_op_solve_triangular (tape, in[0], in[1], c->lower, c->unit);
}

static void
test_solve_triangular (void)
{
  const gsize n = 4, k = 3;
  g_autoptr (FgWeightSet) set = fg_weight_set_new ();
  FgRng rng;
  fg_rng_init (&rng, 5, 1);
  FgWeight *a = add_random (set, "a", 2, (gsize[]){ n, n }, &rng, -1.0f, 1.0f);
  FgWeight *b = add_random (set, "b", 2, (gsize[]){ n, k }, &rng, -1.0f, 1.0f);
  for (gsize i = 0; i < n; i++) /* a well-conditioned diagonal */
    a->value.data[i * n + i] = (i % 2 ? -1.0f : 1.0f) * (1.5f + 0.3f * i);
  for (guint lower = 0; lower < 2; lower++)
    for (guint unit = 0; unit < 2; unit++)
      {
        g_autoptr (FgTape) tape = fg_tape_new ();
        FgVar *X = fg_op_solve_triangular (tape, fg_tape_weight (tape, a), fg_tape_weight (tape, b),
                                           lower, unit);
        /* op(A) X = B with the triangle that is read */
        for (gsize i = 0; i < n; i++)
          for (gsize c = 0; c < k; c++)
            {
              double acc = 0;
              for (gsize m = 0; m < n; m++)
                {
                  double am = a->value.data[i * n + m];
                  if (m == i && unit)
                    am = 1;
                  else if (lower ? m > i : m < i)
                    am = 0;
                  acc += am * X->value.data[m * k + c];
                }
              g_assert_cmpfloat_with_epsilon (acc, b->value.data[i * k + c], 1e-5);
            }
        TriCase tc = { lower, unit };
        FgWeight *ins[2] = { a, b };
        char what[64];
        g_snprintf (what, sizeof what, "solve triangular lower=%u unit=%u", lower, unit);
        gc_assert (ins, 2, tri_build, &tc, NULL, what);
      }
}

static FgVar *
lad_build (FgTape *tape, FgVar *const *in, gpointer data)
{
  (void) data;
  return fg_op_logabsdet (tape, in[0]);
}

static void
test_logabsdet (void)
{
  const gsize n = 5;
  g_autoptr (FgWeightSet) set = fg_weight_set_new ();
  FgRng rng;
  fg_rng_init (&rng, 6, 1);
  FgWeight *a = add_random (set, "a", 2, (gsize[]){ n, n }, &rng, -1.0f, 1.0f);
  double ad[25];
  for (gsize i = 0; i < n * n; i++)
    ad[i] = a->value.data[i];
  g_autoptr (FgTape) tape = fg_tape_new ();
  FgVar *ld = fg_op_logabsdet (tape, fg_tape_weight (tape, a));
  g_assert_cmpfloat_with_epsilon (ld->value.data[0], ref_logabsdet (ad, n), 1e-5);
  FgWeight *ins[1] = { a };
  gc_assert (ins, 1, lad_build, NULL, NULL, "logabsdet");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/ops-norm/batch-norm", test_batch_norm);
  g_test_add_func ("/ops-norm/weight-norm", test_weight_norm);
  g_test_add_func ("/ops-norm/channel-affine", test_channel_affine);
  g_test_add_func ("/ops-lu/lu-matrix", test_lu_matrix);
  g_test_add_func ("/ops-lu/solve-triangular", test_solve_triangular);
  g_test_add_func ("/ops-lu/logabsdet", test_logabsdet);
  return g_test_run ();
}
