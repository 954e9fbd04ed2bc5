/* SPDX-License-Identifier: MIT */
/* flowgmm tests — gradient checking against central finite differences.
 *
 * The function under test is built on a tape from leaves of FgWeights (so analytic gradients
 * accumulate into w->grad).  The scalar checked is the random projection
 *   L = Σ r ⊙ out
 * with a fixed random r of out's shape, so every output element contributes.  The analytic
 * gradient comes from fg_tape_backward_seed (seed = r); the numeric one perturbs each input
 * element by ±h, h = eps · max(1, |x|), rebuilds with gradients disabled and evaluates L in
 * double.  The analytic pass runs on an arena poisoned with NaN bytes (after a warm-up pass),
 * so a kernel reading memory it never wrote shows up.  An element passes when
 *   |analytic − numeric| <= atol + rtol · max(|analytic|, |numeric|).
 */
#pragma once

#include <flowgmm/flowgmm.h>

G_BEGIN_DECLS

/* Build the op(s) under test from `inputs` (one leaf per weight, same order).  Must be
 * deterministic: it is called once with gradients on and twice per perturbed element. */
typedef FgVar *(*GcBuildFunc) (FgTape *tape, FgVar *const *inputs, gpointer user_data);

typedef struct {
  double eps;    /* relative step */
  double atol;   /* absolute tolerance on each gradient element */
  double rtol;   /* relative tolerance */
  guint64 seed;  /* for r */
} GcOptions;

#define GC_DEFAULT_EPS 1e-2
#define GC_DEFAULT_ATOL 2e-4
#define GC_DEFAULT_RTOL 5e-3

typedef struct {
  gsize n_checked;     /* gradient elements compared */
  gsize n_failed;      /* outside the tolerance */
  double max_abs_err;  /* largest |analytic − numeric| */
  double max_ratio;    /* largest |analytic − numeric| / (atol + rtol · max(|a|, |n|)); <= 1 passes */
  char worst[160];     /* where max_ratio happened */
} GcResult;

void gc_options_init (GcOptions *opts);

/* Returns TRUE when every element of every trainable input passes.  Weights' grads are zeroed
 * first and hold the analytic gradient afterwards. */
gboolean gc_check (FgWeight *const *inputs, guint n_inputs, GcBuildFunc build,
                   gpointer user_data, const GcOptions *opts, GcResult *result);

/* Like gc_check, but prints the result with g_test_message and asserts it passed. */
void gc_assert (FgWeight *const *inputs, guint n_inputs, GcBuildFunc build, gpointer user_data,
                const GcOptions *opts, const char *what);

/* log|det A| of the n × n row-major matrix a (overwritten) by Gaussian elimination with partial
 * pivoting in double: the tests' own reference, independent of the core's LU. */
double gc_log_abs_det (double *a, gsize n);

/* Σ r ⊙ t in double over t's rows × cols (t may be strided; r is contiguous). */
double gc_project (const FgTensor *t, const float *r);

G_END_DECLS
