/* SPDX-License-Identifier: MIT */
/* Tests for the seeded generator (core/numeric/rng.c).  Every statistical test uses a fixed seed, so it
 * either always passes or always fails; the bounds are generous (far beyond 5 sigma) yet tight
 * enough to catch a biased method. */
#include "config.h"

#include <flowgmm/rng.h>

#include <math.h>
#include <string.h>

/* Reference outputs of xoshiro256** for the state {1, 2, 3, 4}, from an independent
 * implementation of Blackman & Vigna's reference C code (they agree with the test vectors of
 * Rust's rand_xoshiro). */
static const guint64 xoshiro_1234[10] = {
  G_GUINT64_CONSTANT (11520),
  G_GUINT64_CONSTANT (0),
  G_GUINT64_CONSTANT (1509978240),
  G_GUINT64_CONSTANT (1215971899390074240),
  G_GUINT64_CONSTANT (1216172134540287360),
  G_GUINT64_CONSTANT (607988272756665600),
  G_GUINT64_CONSTANT (16172922978634559625),
  G_GUINT64_CONSTANT (8476171486693032832),
  G_GUINT64_CONSTANT (10595114339597558777),
  G_GUINT64_CONSTANT (2904607092377533576),
};

static void
test_xoshiro_reference (void)
{
  FgRng rng = { .s = { 1, 2, 3, 4 } };

  for (guint i = 0; i < G_N_ELEMENTS (xoshiro_1234); i++)
    g_assert_cmpuint (fg_rng_next_u64 (&rng), ==, xoshiro_1234[i]);
}

/* The seeding is part of reproducibility: an experiment re-run with a new build must draw the
 * same numbers.  These values come from an independent (Python) implementation of the seeding
 * described in rng.c: state word i = SplitMix64_i(seed) XOR Moremur(stream ^ K + (i+1)·G). */
static void
test_seeding_golden (void)
{
  static const struct
  {
    guint64 seed, stream, out[3];
  } cases[] = {
    { 42, 7, { G_GUINT64_CONSTANT (0x7a790138eb3f0d82), G_GUINT64_CONSTANT (0x7a20be874322bc73),
               G_GUINT64_CONSTANT (0xf1bd2b51fd33ac47) } },
    { 7, 42, { G_GUINT64_CONSTANT (0x305320547731b852), G_GUINT64_CONSTANT (0x32b6d33d212715b7),
               G_GUINT64_CONSTANT (0xd3d5a02c9a75b2dc) } },
    { 0, 0, { G_GUINT64_CONSTANT (0xbfd25f46a21b8bfb), G_GUINT64_CONSTANT (0xaf1cde24cf2986ba),
              G_GUINT64_CONSTANT (0xd256cf0f0938927a) } },
  };

  for (guint c = 0; c < G_N_ELEMENTS (cases); c++)
    {
      FgRng rng;
      fg_rng_init (&rng, cases[c].seed, cases[c].stream);
      g_assert_false (rng.has_spare);
      for (guint i = 0; i < 3; i++)
        g_assert_cmphex (fg_rng_next_u64 (&rng), ==, cases[c].out[i]);
    }
}

static void
test_reproducible (void)
{
  FgRng a, b;

  fg_rng_init (&a, 1234, 5);
  fg_rng_init (&b, 1234, 5);
  for (guint i = 0; i < 1000; i++)
    g_assert_cmphex (fg_rng_next_u64 (&a), ==, fg_rng_next_u64 (&b));
  /* Derived draws (including the cached normal spare) stay in lock step too. */
  for (guint i = 0; i < 1001; i++)
    {
      double x = fg_rng_normal (&a), y = fg_rng_normal (&b);
      g_assert_true (memcmp (&x, &y, sizeof x) == 0);
    }
  g_assert_cmpuint (fg_rng_below (&a, 1000003), ==, fg_rng_below (&b, 1000003));

  /* Re-initialising resets the cached spare. */
  fg_rng_init (&a, 1234, 5);
  g_assert_false (a.has_spare);
}

static guint
count_equal_outputs (FgRng *a, FgRng *b, guint n)
{
  guint same = 0;
  for (guint i = 0; i < n; i++)
    same += fg_rng_next_u64 (a) == fg_rng_next_u64 (b);
  return same;
}

static void
test_streams_differ (void)
{
  static const guint64 pairs[][2] = { { 1, 0 }, { 1, 1 }, { 0, 1 }, { 2, 0 }, { 0, 0 }, { 1, 2 },
                                      { 2, 1 } };

  for (guint i = 0; i < G_N_ELEMENTS (pairs); i++)
    for (guint j = i + 1; j < G_N_ELEMENTS (pairs); j++)
      {
        FgRng a, b;
        fg_rng_init (&a, pairs[i][0], pairs[i][1]);
        fg_rng_init (&b, pairs[j][0], pairs[j][1]);
        /* Independent 64-bit outputs agree with probability 2^-64 each. */
        g_assert_cmpuint (count_equal_outputs (&a, &b, 256), ==, 0);
      }

  /* Streams of one seed are not shifted copies of each other. */
  {
    FgRng a, b;
    guint64 xs[64];
    fg_rng_init (&a, 99, 0);
    fg_rng_init (&b, 99, 1);
    for (guint i = 0; i < 64; i++)
      xs[i] = fg_rng_next_u64 (&a);
    for (guint i = 0; i < 4096; i++)
      {
        guint64 y = fg_rng_next_u64 (&b);
        for (guint k = 0; k < 64; k++)
          g_assert_cmphex (y, !=, xs[k]);
      }
  }
}

static void
test_fork (void)
{
  FgRng parent, copy, c1, c2, c1again, expected;

  fg_rng_init (&parent, 2024, 0);
  copy = parent;
  fg_rng_fork (&parent, 1, &c1);

  /* The parent advanced by exactly one draw. */
  fg_rng_next_u64 (&copy);
  g_assert_cmpmem (parent.s, sizeof parent.s, copy.s, sizeof copy.s);

  /* The child is init (parent's next output, stream). */
  {
    FgRng p2;
    fg_rng_init (&p2, 2024, 0);
    fg_rng_init (&expected, fg_rng_next_u64 (&p2), 1);
    g_assert_cmpmem (c1.s, sizeof c1.s, expected.s, sizeof expected.s);
  }

  /* Forking the same parent state with another stream gives another child. */
  {
    FgRng p3;
    fg_rng_init (&p3, 2024, 0);
    fg_rng_fork (&p3, 2, &c2);
    fg_rng_init (&p3, 2024, 0);
    fg_rng_fork (&p3, 1, &c1again);
    g_assert_cmpmem (c1.s, sizeof c1.s, c1again.s, sizeof c1again.s);
    g_assert_cmpuint (count_equal_outputs (&c1, &c2, 256), ==, 0);
  }

  /* Parent and child do not share a sequence. */
  fg_rng_init (&parent, 2024, 0);
  fg_rng_fork (&parent, 1, &c1);
  g_assert_cmpuint (count_equal_outputs (&parent, &c1, 256), ==, 0);
}

static void
test_stream_id (void)
{
  /* Published FNV-1a 64 test vectors. */
  g_assert_cmphex (fg_rng_stream_id (""), ==, G_GUINT64_CONSTANT (0xcbf29ce484222325));
  g_assert_cmphex (fg_rng_stream_id ("a"), ==, G_GUINT64_CONSTANT (0xaf63dc4c8601ec8c));
  g_assert_cmphex (fg_rng_stream_id ("foobar"), ==, G_GUINT64_CONSTANT (0x85944171f73967e8));
  g_assert_cmphex (fg_rng_stream_id ("coupling3.net.0.weight"), ==,
                   G_GUINT64_CONSTANT (0xc9ebd16749d85ffa));
  g_assert_cmphex (fg_rng_stream_id ("knn"), !=, fg_rng_stream_id ("kNN"));
}

static void
test_uniform (void)
{
  FgRng rng;
  const guint n = 200000;
  double sum = 0.0, sumf = 0.0;

  fg_rng_init (&rng, 7, 3);
  for (guint i = 0; i < n; i++)
    {
      double u = fg_rng_uniform (&rng);
      float f = fg_rng_uniform_f (&rng);
      g_assert_cmpfloat (u, >=, 0.0);
      g_assert_cmpfloat (u, <, 1.0);
      g_assert_cmpfloat (f, >=, 0.0f);
      g_assert_cmpfloat (f, <, 1.0f);
      sum += u;
      sumf += f;
    }
  /* Standard error of the mean is 1/sqrt(12 n) ≈ 6.5e-4. */
  g_assert_cmpfloat_with_epsilon (sum / n, 0.5, 5e-3);
  g_assert_cmpfloat_with_epsilon (sumf / n, 0.5, 5e-3);

  /* The output is rotl (s[1]·5, 7)·9, so the state {1, 0, 0, 0} first outputs 0: the lower end
   * of [0, 1) is reachable exactly. */
  {
    FgRng r = { .s = { 1, 0, 0, 0 } };
    g_assert_cmpfloat (fg_rng_uniform (&r), ==, 0.0);
  }
}

static double
chi_square (const guint64 *counts, guint bins, double expected)
{
  double chi2 = 0.0;
  for (guint i = 0; i < bins; i++)
    {
      double d = (double) counts[i] - expected;
      chi2 += d * d / expected;
    }
  return chi2;
}

static void
test_below_bounds (void)
{
  static const guint64 bounds[] = {
    1, 2, 3, 7, 10, 1000003, G_GUINT64_CONSTANT (1) << 32, (G_GUINT64_CONSTANT (1) << 63) + 1,
    G_MAXUINT64,
  };
  FgRng rng;

  fg_rng_init (&rng, 11, 0);
  for (guint b = 0; b < G_N_ELEMENTS (bounds); b++)
    for (guint i = 0; i < 20000; i++)
      g_assert_cmpuint (fg_rng_below (&rng, bounds[b]), <, bounds[b]);

  for (guint i = 0; i < 100; i++)
    g_assert_cmpuint (fg_rng_below (&rng, 1), ==, 0);

  /* Small bounds reach every value. */
  {
    gboolean seen[7] = { FALSE };
    for (guint i = 0; i < 1000; i++)
      seen[fg_rng_below (&rng, 7)] = TRUE;
    for (guint v = 0; v < 7; v++)
      g_assert_true (seen[v]);
  }
}

static void
test_below_uniform (void)
{
  FgRng rng;
  const guint n = 100000;

  fg_rng_init (&rng, 12345, 1);

  /* 10 values: chi-square with 9 degrees of freedom; P(chi2 > 50) ≈ 1e-7. */
  {
    guint64 counts[10] = { 0 };
    for (guint i = 0; i < n; i++)
      counts[fg_rng_below (&rng, 10)]++;
    g_assert_cmpfloat (chi_square (counts, 10, n / 10.0), <, 50.0);
  }

  /* A bound of 3·2^62 makes modulo reduction badly biased (the lowest third would get half of
   * the draws); an unbiased method gives three equal thirds. 2 degrees of freedom: P > 40 ≈ 2e-9. */
  {
    const guint64 bound = G_GUINT64_CONSTANT (3) << 62;
    const guint64 third = G_GUINT64_CONSTANT (1) << 62;
    guint64 counts[3] = { 0 };
    for (guint i = 0; i < n; i++)
      {
        guint64 x = fg_rng_below (&rng, bound);
        g_assert_cmpuint (x, <, bound);
        counts[x / third]++;
      }
    g_assert_cmpfloat (chi_square (counts, 3, n / 3.0), <, 40.0);
  }
}

static void
test_normal_moments (void)
{
  FgRng rng;
  const guint n = 400000;
  double sum = 0.0, sum2 = 0.0, sum4 = 0.0;
  guint within1 = 0;

  fg_rng_init (&rng, 31337, 2);
  for (guint i = 0; i < n; i++)
    {
      double x = fg_rng_normal (&rng);
      g_assert_true (isfinite (x));
      sum += x;
      sum2 += x * x;
      sum4 += x * x * x * x;
      within1 += fabs (x) < 1.0;
    }
  {
    double mean = sum / n;
    double var = sum2 / n - mean * mean;
    /* Standard errors: mean 1/sqrt(n) ≈ 1.6e-3; variance sqrt(2/n) ≈ 2.2e-3; kurtosis 3 with
     * sqrt(96/n) ≈ 0.015; P(|x| < 1) = 0.6827 with 7.4e-4. */
    g_assert_cmpfloat_with_epsilon (mean, 0.0, 0.01);
    g_assert_cmpfloat_with_epsilon (var, 1.0, 0.015);
    g_assert_cmpfloat_with_epsilon (sum4 / n, 3.0, 0.1);
    g_assert_cmpfloat_with_epsilon ((double) within1 / n, 0.682689, 0.005);
  }
}

static void
test_normal_spare (void)
{
  FgRng rng;

  fg_rng_init (&rng, 5, 5);
  g_assert_false (rng.has_spare);
  (void) fg_rng_normal (&rng);
  g_assert_true (rng.has_spare);
  {
    double spare = rng.spare_normal;
    double second = fg_rng_normal (&rng);
    g_assert_true (memcmp (&spare, &second, sizeof spare) == 0);
  }
  g_assert_false (rng.has_spare);
}

static void
test_fill (void)
{
  FgRng rng;
  const gsize n = 100001;
  g_autofree float *x = g_new (float, n);
  double sum = 0.0, sum2 = 0.0;

  fg_rng_init (&rng, 77, 0);
  fg_rng_fill_uniform (&rng, x, n, -2.0f, 3.0f);
  for (gsize i = 0; i < n; i++)
    {
      g_assert_cmpfloat (x[i], >=, -2.0f);
      g_assert_cmpfloat (x[i], <, 3.0f);
      sum += x[i];
    }
  g_assert_cmpfloat_with_epsilon (sum / n, 0.5, 0.03);

  /* Degenerate and tiny ranges. */
  fg_rng_fill_uniform (&rng, x, 100, 4.0f, 4.0f);
  for (gsize i = 0; i < 100; i++)
    g_assert_cmpfloat (x[i], ==, 4.0f);
  {
    const float lo = 1.0f, hi = nextafterf (1.0f, 2.0f);
    fg_rng_fill_uniform (&rng, x, 1000, lo, hi);
    for (gsize i = 0; i < 1000; i++)
      g_assert_cmpfloat (x[i], ==, lo);
  }

  fg_rng_fill_normal (&rng, x, n, 3.0f, 2.0f);
  sum = 0.0;
  for (gsize i = 0; i < n; i++)
    {
      sum += x[i];
      sum2 += (double) x[i] * x[i];
    }
  {
    double mean = sum / n, var = sum2 / n - mean * mean;
    g_assert_cmpfloat_with_epsilon (mean, 3.0, 0.03);
    g_assert_cmpfloat_with_epsilon (sqrt (var), 2.0, 0.03);
  }
}

static void
test_shuffle_permutation (void)
{
  FgRng rng;
  const gsize n = 1000;
  guint32 perm[1000];
  gboolean seen[1000] = { FALSE };
  guint fixed = 0;

  fg_rng_init (&rng, 8, 8);
  fg_rng_permutation (&rng, perm, n);
  for (gsize i = 0; i < n; i++)
    {
      g_assert_cmpuint (perm[i], <, n);
      g_assert_false (seen[perm[i]]);
      seen[perm[i]] = TRUE;
      fixed += perm[i] == i;
    }
  /* A random permutation has on average one fixed point; P(more than 10) is tiny. */
  g_assert_cmpuint (fixed, <, 10);

  /* Shuffling keeps the multiset of items. */
  {
    guint32 items[50];
    guint64 sum = 0, sum_after = 0;
    for (guint i = 0; i < 50; i++)
      {
        items[i] = (i * 37u) % 11u; /* with repeats */
        sum += items[i] * 1000003u + items[i] * items[i];
      }
    fg_rng_shuffle (&rng, items, 50);
    for (guint i = 0; i < 50; i++)
      sum_after += items[i] * 1000003u + items[i] * items[i];
    g_assert_cmpuint (sum, ==, sum_after);
  }

  /* Empty and single-item shuffles are no-ops. */
  fg_rng_shuffle (&rng, perm, 0);
  perm[0] = 42;
  fg_rng_shuffle (&rng, perm, 1);
  g_assert_cmpuint (perm[0], ==, 42);

  /* All 6 orders of 3 items are equally likely: chi-square, 5 degrees of freedom,
   * P(chi2 > 40) ≈ 1.5e-7. */
  {
    guint64 counts[6] = { 0 };
    const guint trials = 60000;
    for (guint t = 0; t < trials; t++)
      {
        guint32 p[3];
        fg_rng_permutation (&rng, p, 3);
        /* Lehmer code of the permutation → 0..5 */
        guint code = p[0] * 2 + (p[1] > p[2] ? 1 : 0);
        counts[code]++;
      }
    g_assert_cmpfloat (chi_square (counts, 6, trials / 6.0), <, 40.0);
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/rng/xoshiro-reference", test_xoshiro_reference);
  g_test_add_func ("/rng/seeding-golden", test_seeding_golden);
  g_test_add_func ("/rng/reproducible", test_reproducible);
  g_test_add_func ("/rng/streams-differ", test_streams_differ);
  g_test_add_func ("/rng/fork", test_fork);
  g_test_add_func ("/rng/stream-id", test_stream_id);
  g_test_add_func ("/rng/uniform", test_uniform);
  g_test_add_func ("/rng/below-bounds", test_below_bounds);
  g_test_add_func ("/rng/below-uniform", test_below_uniform);
  g_test_add_func ("/rng/normal-moments", test_normal_moments);
  g_test_add_func ("/rng/normal-spare", test_normal_spare);
  g_test_add_func ("/rng/fill", test_fill);
  g_test_add_func ("/rng/shuffle-permutation", test_shuffle_permutation);

  return g_test_run ();
}
