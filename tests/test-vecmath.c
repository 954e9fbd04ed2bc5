/* SPDX-License-Identifier: MIT */
/* flowgmm tests — the vectorizable float math of <flowgmm/vecmath.h> against libm.
 *
 * Each function is swept over a wide range of float bit patterns (every 113th to every 257th
 * pattern, about ten million points in all, plus the neighbourhood of the special points and the
 * branch boundaries of each kernel), and compared in units in the last place with the double
 * libm result rounded to float (the correctly rounded value but for rare double roundings).
 * The bound for every function is 2 ulp; the test prints the maximum it measured.  Special
 * values (±0, ±inf, NaN, the domain edges) must match C99 Annex F exactly.
 */
#include "config.h"

#include <float.h>
#include <math.h>

#include <glib.h>

/* The kernels are compiled here as in the core. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize ("no-trapping-math")
#endif
#include <flowgmm/vecmath.h>

/* Distance in ulps between two finite floats of the same sign (or one of them zero). */
static double
ulp_dist (float a, float b)
{
  if (a == b)
    return 0.0;
  gint64 ia = (gint32) _fg_float_to_bits (a), ib = (gint32) _fg_float_to_bits (b);
  /* map the sign-magnitude bit patterns onto a monotone integer line */
  if (ia < 0)
    ia = (gint64) G_MININT32 - ia;
  if (ib < 0)
    ib = (gint64) G_MININT32 - ib;
  return (double) (ia > ib ? ia - ib : ib - ia);
}

typedef float (*FloatFn) (float);
typedef double (*DoubleFn) (double);

typedef struct {
  double max_ulp;
  float worst_x;
  gsize n;
} Sweep;

/* Apply the kernel to a batch (as the core does: a loop gcc vectorizes) and compare. */
static void
check_batch (FloatFn f, DoubleFn ref, const float *x, gsize n, Sweep *s)
{
  float y[256];
  g_assert_cmpuint (n, <=, G_N_ELEMENTS (y));
  for (gsize i = 0; i < n; i++)
    y[i] = f (x[i]);
  for (gsize i = 0; i < n; i++)
    {
      const float want = (float) ref ((double) x[i]);
      if (isnan (want))
        {
          if (!isnan (y[i]))
            g_error ("f(%a) = %a, want NaN", (double) x[i], (double) y[i]);
          continue;
        }
      if (isinf (want) || isinf (y[i]))
        {
          if (y[i] != want)
            g_error ("f(%a) = %a, want %a", (double) x[i], (double) y[i], (double) want);
          continue;
        }
      const double d = ulp_dist (y[i], want);
      if (d > s->max_ulp)
        {
          s->max_ulp = d;
          s->worst_x = x[i];
        }
      s->n++;
    }
}

/* Every `stride`-th float in [lo, hi] (by bit pattern, both signs), plus the 64 floats around
 * each of `extra`. */
static Sweep
sweep (FloatFn f, DoubleFn ref, float lo, float hi, guint32 stride, const float *extra,
       gsize n_extra)
{
  Sweep s = { 0.0, 0.0f, 0 };
  float buf[256];
  gsize nb = 0;
  for (int sign = 0; sign < 2; sign++)
    {
      /* magnitudes 0 .. max(|lo|, |hi|) */
      const float top = MAX (fabsf (lo), fabsf (hi));
      const guint32 end = _fg_float_to_bits (top);
      for (guint64 b = 0; b <= end; b += stride)
        {
          float x = _fg_bits_to_float ((guint32) b);
          if (sign)
            x = -x;
          if (x < lo || x > hi)
            continue;
          buf[nb++] = x;
          if (nb == G_N_ELEMENTS (buf))
            {
              check_batch (f, ref, buf, nb, &s);
              nb = 0;
            }
        }
    }
  for (gsize e = 0; e < n_extra; e++)
    {
      const guint32 b = _fg_float_to_bits (extra[e]);
      for (gint d = -32; d < 32; d++)
        {
          buf[nb++] = _fg_bits_to_float (b + (guint32) d);
          if (nb == G_N_ELEMENTS (buf))
            {
              check_batch (f, ref, buf, nb, &s);
              nb = 0;
            }
        }
    }
  if (nb > 0)
    check_batch (f, ref, buf, nb, &s);
  return s;
}

static void
report (const char *name, const Sweep *s, double bound)
{
  g_test_message ("%s: %" G_GSIZE_FORMAT " points, max %.0f ulp at %a (%.9g)", name, s->n,
                  s->max_ulp, (double) s->worst_x, (double) s->worst_x);
  if (g_test_verbose ())
    g_printerr ("%s: %" G_GSIZE_FORMAT " points, max %.0f ulp at %.9g\n", name, s->n, s->max_ulp,
                (double) s->worst_x);
  g_assert_cmpfloat (s->max_ulp, <=, bound);
  g_assert_cmpuint (s->n, >, 100000);
}

/* The functions, and their references, as plain functions (the inline kernels are expanded
 * into the batch loop of check_batch by the compiler either way). */
static float f_exp (float x) { return fg_expf (x); }
static float f_expm1 (float x) { return fg_expm1f (x); }
static float f_log (float x) { return fg_logf (x); }
static float f_log1p (float x) { return fg_log1pf (x); }
static float f_tanh (float x) { return fg_tanhf (x); }
static float f_sigmoid (float x) { return fg_sigmoidf (x); }
static float f_softplus (float x) { return fg_softplusf (x); }
static double r_sigmoid (double x) { return 1.0 / (1.0 + exp (-x)); }
static double r_softplus (double x) { return x > 0 ? x + log1p (exp (-x)) : log1p (exp (x)); }

static void
test_exp (void)
{
  /* the ends of the reduction's range, the subnormal and overflow thresholds */
  const float extra[] = { 0.0f, 0.34657359f, -0.34657359f, 88.7228394f, -87.3365479f,
                          -103.278931f, -103.972076f, 1e-8f, -1e-8f, 1.0f, -1.0f, 80.0f };
  Sweep s = sweep (f_exp, exp, -110.0f, 90.0f, 173, extra, G_N_ELEMENTS (extra));
  report ("expf", &s, 2.0);
  g_assert_cmpfloat (fg_expf (0.0f), ==, 1.0f);
  g_assert_cmpfloat (fg_expf (-INFINITY), ==, 0.0f);
  g_assert_true (isinf (fg_expf (INFINITY)) && fg_expf (INFINITY) > 0);
  g_assert_true (isinf (fg_expf (89.0f)));
  g_assert_cmpfloat (fg_expf (-200.0f), ==, 0.0f);
  g_assert_true (isnan (fg_expf (NAN)));
}

static void
test_expm1 (void)
{
  const float extra[] = { 0.0f, 0.34657359f, -0.34657359f, 0.5f, -0.5f, 0.69314718f,
                          -0.69314718f, 16.5f, -16.5f, 1e-30f, -1e-30f, FLT_MIN, -FLT_MIN,
                          1e-40f, 88.7f };
  Sweep s = sweep (f_expm1, expm1, -100.0f, 89.0f, 151, extra, G_N_ELEMENTS (extra));
  report ("expm1f", &s, 2.0);
  g_assert_cmpfloat (fg_expm1f (0.0f), ==, 0.0f);
  g_assert_cmpfloat (fg_expm1f (1e-30f), ==, 1e-30f);
  g_assert_cmpfloat (fg_expm1f (-INFINITY), ==, -1.0f);
  g_assert_true (isinf (fg_expm1f (INFINITY)));
  g_assert_true (isnan (fg_expm1f (NAN)));
}

static void
test_log (void)
{
  const float extra[] = { 1.0f, 0.70710678f, 1.41421356f, FLT_MIN, 1e-40f, FLT_MAX, 2.0f,
                          0.5f, 1e-45f };
  Sweep s = sweep (f_log, log, 0.0f, FLT_MAX, 113, extra, G_N_ELEMENTS (extra));
  report ("logf", &s, 2.0);
  g_assert_cmpfloat (fg_logf (1.0f), ==, 0.0f);
  g_assert_true (isinf (fg_logf (0.0f)) && fg_logf (0.0f) < 0);
  g_assert_true (isinf (fg_logf (-0.0f)) && fg_logf (-0.0f) < 0);
  g_assert_true (isinf (fg_logf (INFINITY)) && fg_logf (INFINITY) > 0);
  g_assert_true (isnan (fg_logf (-1.0f)));
  g_assert_true (isnan (fg_logf (-INFINITY)));
  g_assert_true (isnan (fg_logf (NAN)));
}

static void
test_log1p (void)
{
  const float extra[] = { 0.0f, -0.29289322f, 0.41421356f, -0.5f, 1.0f, 1e-8f, -1e-8f,
                          -0.99999994f, FLT_MIN, 1e-40f, 16777216.0f, 1e30f };
  Sweep s = sweep (f_log1p, log1p, -1.0f, 1e38f, 127, extra, G_N_ELEMENTS (extra));
  report ("log1pf", &s, 2.0);
  g_assert_cmpfloat (fg_log1pf (0.0f), ==, 0.0f);
  g_assert_cmpfloat (fg_log1pf (1e-30f), ==, 1e-30f);
  g_assert_true (isinf (fg_log1pf (-1.0f)) && fg_log1pf (-1.0f) < 0);
  g_assert_true (isinf (fg_log1pf (INFINITY)) && fg_log1pf (INFINITY) > 0);
  g_assert_true (isnan (fg_log1pf (-2.0f)));
  g_assert_true (isnan (fg_log1pf (NAN)));
}

static void
test_tanh (void)
{
  const float extra[] = { 0.0f, 0.625f, -0.625f, 1e-8f, 1e-30f, 9.0f, -9.0f, 44.0f, 1.0f };
  Sweep s = sweep (f_tanh, tanh, -100.0f, 100.0f, 131, extra, G_N_ELEMENTS (extra));
  report ("tanhf", &s, 2.0);
  g_assert_cmpfloat (fg_tanhf (0.0f), ==, 0.0f);
  g_assert_cmpfloat (fg_tanhf (INFINITY), ==, 1.0f);
  g_assert_cmpfloat (fg_tanhf (-INFINITY), ==, -1.0f);
  g_assert_cmpfloat (fg_tanhf (1e-30f), ==, 1e-30f);
  g_assert_true (isnan (fg_tanhf (NAN)));
}

/* sigmoid and softplus are compositions: a few ulp, checked at 4. */
static void
test_sigmoid_softplus (void)
{
  const float extra[] = { 0.0f, 1.0f, -1.0f, 20.0f, -20.0f, 80.0f, -80.0f };
  Sweep s = sweep (f_sigmoid, r_sigmoid, -100.0f, 100.0f, 257, extra, G_N_ELEMENTS (extra));
  report ("sigmoid", &s, 4.0);
  s = sweep (f_softplus, r_softplus, -100.0f, 100.0f, 257, extra, G_N_ELEMENTS (extra));
  report ("softplus", &s, 4.0);
  g_assert_cmpfloat (fg_sigmoidf (-INFINITY), ==, 0.0f);
  g_assert_cmpfloat (fg_sigmoidf (INFINITY), ==, 1.0f);
  g_assert_cmpfloat (fg_softplusf (-INFINITY), ==, 0.0f);
  g_assert_true (isinf (fg_softplusf (INFINITY)));
  g_assert_true (isnan (fg_softplusf (NAN)));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/vecmath/exp", test_exp);
  g_test_add_func ("/vecmath/expm1", test_expm1);
  g_test_add_func ("/vecmath/log", test_log);
  g_test_add_func ("/vecmath/log1p", test_log1p);
  g_test_add_func ("/vecmath/tanh", test_tanh);
  g_test_add_func ("/vecmath/sigmoid-softplus", test_sigmoid_softplus);
  return g_test_run ();
}
