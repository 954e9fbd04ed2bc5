/* SPDX-License-Identifier: MIT */
/* flowgmm — float exp, expm1, log, log1p and tanh that gcc can vectorize (header only).
 *
 * glibc's scalar tanhf costs 10–17 ns an element and no libm call vectorizes at -O2, so the
 * elementwise kernels (activations, their derivatives, unary ops, and plugins' fused ops such
 * as realnvp-mlp's coupling) use these instead: range
 * reduction and the Cephes single-precision polynomials, written without branches (every path
 * is computed and one is selected) so that a loop over an array becomes SIMD code.  Special
 * values follow C99 Annex F: NaN propagates, exp(−inf) = 0, exp(+inf) = +inf, log(0) = −inf,
 * log(x < 0) = NaN, log1p(−1) = −inf, tanh(±inf) = ±1; results that underflow are subnormal
 * or 0 as in libm.
 *
 * Accuracy against glibc (tests/test-vecmath.c sweeps every float in wide ranges): at most
 * 2 ulp for exp, expm1, log, log1p and tanh (measured maxima are printed by the
 * test).
 *
 * Selects are written as C conditionals; a file that includes this header should compile with
 * -fno-trapping-math, which lets gcc if-convert them into SIMD code; without it the results are
 * the same, scalar.  With a `#pragma GCC optimize (...)`, include this header after the pragma:
 * gcc does not inline a function into callers compiled with other optimization options, and a
 * call per element is several times slower than the inlined vector code.
 * Nothing in flowgmm reads the floating-point exception flags.
 */
#pragma once

#include <math.h>
#include <string.h>
#include <glib.h>

static inline float
_fg_bits_to_float (guint32 b)
{
  float f;
  memcpy (&f, &b, sizeof f);
  return f;
}

static inline guint32
_fg_float_to_bits (float f)
{
  guint32 b;
  memcpy (&b, &f, sizeof b);
  return b;
}

/* e^x.  x = n·ln2 + r, |r| ≤ ln2/2 (Cody–Waite two-part ln 2), e^r by the Cephes degree-7
 * polynomial, 2^n applied as two factors so that results down to the smallest subnormal are
 * rounded once. */
static inline float
fg_expf (float x)
{
  /* Beyond these e^x is +inf or rounds to 0; NaN passes both tests unchanged. */
  const float xc = x > 88.8f ? 88.8f : (x < -104.0f ? -104.0f : x);
  float fn = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round (x / ln 2) */
  const float r = (xc - fn * 0.693359375f) + fn * 2.12194440e-4f;
  const float r2 = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r2 + r + 1.0f;
  fn = fn > 128.0f ? 128.0f : (fn < -150.0f ? -150.0f : fn); /* NaN: any n will do */
  const gint32 n = (gint32) (fn == fn ? fn : 0.0f);
  const gint32 n1 = n / 2, n2 = n - n1;
  const float s1 = _fg_bits_to_float ((guint32) (n1 + 127) << 23);
  const float s2 = _fg_bits_to_float ((guint32) (n2 + 127) << 23);
  return p * s1 * s2;
}

/* e^x − 1, accurate near 0: x = n·ln2 + r as in fg_expf, e^r − 1 by its Taylor polynomial
 * to r⁹ (|r| ≤ 0.35: truncation below 1e-9 relative), then e^x − 1 = (2^n − 1) + 2^n·(e^r − 1),
 * where 2^n − 1 is exact for |n| ≤ 24; beyond, e^x − 1 rounds like e^x (or like −1). */
static inline float
fg_expm1f (float x)
{
  const float xc = x > 88.8f ? 88.8f : (x < -88.0f ? -88.0f : x);
  float fn = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = (xc - fn * 0.693359375f) + fn * 2.12194440e-4f;
  float q = 1.0f / 362880.0f;
  q = q * r + 1.0f / 40320.0f;
  q = q * r + 1.0f / 5040.0f;
  q = q * r + 1.0f / 720.0f;
  q = q * r + 1.0f / 120.0f;
  q = q * r + 1.0f / 24.0f;
  q = q * r + 1.0f / 6.0f;
  q = q * r + 0.5f;
  q = r + (r * r) * q; /* e^r − 1 */
  fn = fn > 24.0f ? 24.0f : (fn < -24.0f ? -24.0f : fn);
  const gint32 n = (gint32) (fn == fn ? fn : 0.0f);
  const float s = _fg_bits_to_float ((guint32) (n + 127) << 23);
  const float mid = (s - 1.0f) + s * q;
  const float big = fg_expf (x) - 1.0f;
  return fabsf (xc) < 16.5f || x != x ? mid : big;
}

/* log of a positive normal u = 2^e·m with m in [√½, √2), f = m − 1: the Cephes logf
 * polynomial, plus `corr` (a small term added before the final rounding). */
static inline float
_fg_log_core (float u, float corr)
{
  const guint32 bits = _fg_float_to_bits (u);
  /* e such that u / 2^e lies in [√½, √2): subtract the bits of √½ before taking the exponent. */
  const gint32 e = ((gint32) (bits - 0x3f3504f3u)) >> 23;
  const float m = _fg_bits_to_float (bits - ((guint32) e << 23));
  const float f = m - 1.0f;
  const float z = f * f;
  float y = 7.0376836292e-2f;
  y = y * f - 1.1514610310e-1f;
  y = y * f + 1.1676998740e-1f;
  y = y * f - 1.2420140846e-1f;
  y = y * f + 1.4249322787e-1f;
  y = y * f - 1.6668057665e-1f;
  y = y * f + 2.0000714765e-1f;
  y = y * f - 2.4999993993e-1f;
  y = y * f + 3.3333331174e-1f;
  y = y * f * z;
  const float fe = (float) e;
  y += fe * -2.12194440e-4f;
  y += -0.5f * z;
  y += corr;
  return (f + y) + fe * 0.693359375f;
}

/* log x; subnormal inputs are scaled by 2^23 first. */
static inline float
fg_logf (float x)
{
  const gboolean sub = x < 1.17549435e-38f;
  const float u = sub ? x * 8388608.0f : x;
  float r = _fg_log_core (u > 0.0f ? u : 1.0f, 0.0f) - (sub ? 15.9423851528787f : 0.0f);
  r = x == INFINITY ? INFINITY : r;
  r = x == 0.0f ? -INFINITY : r;
  return x < 0.0f || x != x ? (x - x) / (x - x) : r; /* NaN (quiet) for x < 0 and NaN */
}

/* log(1 + x): u = 1 + x rounded, log u, and the rounding error of u, (x − (u − 1)) / u, added
 * back (first order, enough in float). */
static inline float
fg_log1pf (float x)
{
  const float u = 1.0f + x;
  const float corr = (x - (u - 1.0f)) / (u > 0.0f ? u : 1.0f);
  float r = _fg_log_core (u > 0.0f && u < INFINITY ? u : 1.0f, corr);
  r = x == INFINITY ? INFINITY : r;
  r = x == -1.0f ? -INFINITY : r;
  return x < -1.0f || x != x ? (x - x) / (x - x) : r;
}

/* tanh x: the Cephes odd polynomial for |x| < 0.625, 1 − 2/(e^{2|x|} + 1) with the sign of x
 * beyond (e^{2|x|} overflows to +inf for |x| > 44, giving exactly ±1). */
static inline float
fg_tanhf (float x)
{
  const float ax = fabsf (x);
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = p * z * x + x;
  const float big = copysignf (1.0f - 2.0f / (fg_expf (2.0f * ax) + 1.0f), x);
  return ax < 0.625f ? small : big;
}

/* 1 / (1 + e^−x), as t / (1 + t) with t = e^x for x < 0 so that tiny results keep their
 * precision (down to the subnormals). */
static inline float
fg_sigmoidf (float x)
{
  const float t = fg_expf (-fabsf (x));
  const float inv = 1.0f / (1.0f + t);
  return x >= 0.0f ? inv : t * inv;
}

/* log(1 + e^x) as max(x, 0) + log1p(e^−|x|): never overflows. */
static inline float
fg_softplusf (float x)
{
  return (x > 0.0f ? x : 0.0f) + fg_log1pf (fg_expf (-fabsf (x)));
}

/* Σ x[0..n) in double with eight independent partial sums, added in a fixed order (the same
 * bits whatever the vector width); the eight chains keep the adds from waiting on each other. */
static inline double
fg_sum_f64 (const float *x, gsize n)
{
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
  gsize i = 0;
  for (; i + 8 <= n; i += 8)
    {
      s0 += x[i];
      s1 += x[i + 1];
      s2 += x[i + 2];
      s3 += x[i + 3];
      s4 += x[i + 4];
      s5 += x[i + 5];
      s6 += x[i + 6];
      s7 += x[i + 7];
    }
  for (; i < n; i++)
    s0 += x[i];
  return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7));
}
