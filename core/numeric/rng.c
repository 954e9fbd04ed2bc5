/* SPDX-License-Identifier: MIT */
/* flowgmm — the one seeded random number generator: xoshiro256** (Blackman & Vigna 2018).
 *
 * Seeding: the four state words are SplitMix64 outputs of the seed, each XORed with a
 * differently mixed (Moremur finaliser) function of the stream id, so every (seed, stream) pair
 * gets its own well-spread state and (s, t) and (t, s) are different generators.
 */
#include "config.h"

#include <flowgmm/rng.h>

#include <math.h>

static inline guint64
rotl64 (guint64 x, int k)
{
  return (x << k) | (x >> (64 - k));
}

/* SplitMix64 (Steele, Lea & Flood 2014): advances *x and returns its mixed value. */
static inline guint64
splitmix64_next (guint64 *x)
{
  guint64 z = (*x += G_GUINT64_CONSTANT (0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * G_GUINT64_CONSTANT (0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * G_GUINT64_CONSTANT (0x94d049bb133111eb);
  return z ^ (z >> 31);
}

/* Pelle Evensen's "Moremur" 64-bit finaliser: a bijection with constants unrelated to
 * SplitMix64's, so the seed and stream are mixed by different functions. */
static inline guint64
moremur (guint64 x)
{
  x ^= x >> 27;
  x *= G_GUINT64_CONSTANT (0x3c79ac492ba7b653);
  x ^= x >> 33;
  x *= G_GUINT64_CONSTANT (0x1c69b3f74ac4ae35);
  x ^= x >> 27;
  return x;
}

/**
 * fg_rng_init:
 * @rng: (out caller-allocates): the generator
 * @seed: the seed (e.g. from the experiment file)
 * @stream: the stream (e.g. a cell index or fg_rng_stream_id () of a component name)
 *
 * Initialises @rng from (@seed, @stream).  Generators with different streams of one seed are
 * statistically independent, and the sequence depends only on the pair.
 */
void
fg_rng_init (FgRng *rng, guint64 seed, guint64 stream)
{
  guint64 x = seed;
  /* A second, odd-stepped counter through a different mixer for the stream. */
  guint64 y = stream ^ G_GUINT64_CONSTANT (0x6a09e667f3bcc909);

  g_return_if_fail (rng != NULL);

  for (int i = 0; i < 4; i++)
    {
      y += G_GUINT64_CONSTANT (0xd1b54a32d192ed03);
      rng->s[i] = splitmix64_next (&x) ^ moremur (y);
    }
  /* The all-zero state is the one fixed point of xoshiro; it has probability 2^-256 here,
   * but a generator must never be able to get stuck. */
  if (G_UNLIKELY ((rng->s[0] | rng->s[1] | rng->s[2] | rng->s[3]) == 0))
    rng->s[0] = G_GUINT64_CONSTANT (0x9e3779b97f4a7c15);
  rng->spare_normal = 0.0;
  rng->has_spare = FALSE;
}

/**
 * fg_rng_fork:
 * @parent: a generator; advanced by one draw
 * @stream: the child's stream
 * @child: (out caller-allocates): the child generator
 *
 * Derives an independent child generator, seeded by the parent's next output and @stream.
 * Forking the same parent state twice with different streams gives different children.
 */
void
fg_rng_fork (FgRng *parent, guint64 stream, FgRng *child)
{
  guint64 seed;

  g_return_if_fail (parent != NULL);
  g_return_if_fail (child != NULL);

  seed = fg_rng_next_u64 (parent);
  fg_rng_init (child, seed, stream);
}

/**
 * fg_rng_stream_id:
 * @name: a string, e.g. a component name
 *
 * Hashes @name with 64-bit FNV-1a, a stable function of the bytes (independent of GLib's
 * g_str_hash, which may change), to use as a stream id.
 *
 * Returns: the hash.
 */
guint64
fg_rng_stream_id (const char *name)
{
  guint64 h = G_GUINT64_CONSTANT (0xcbf29ce484222325);

  g_return_val_if_fail (name != NULL, 0);

  for (const guchar *p = (const guchar *) name; *p != '\0'; p++)
    {
      h ^= *p;
      h *= G_GUINT64_CONSTANT (0x100000001b3);
    }
  return h;
}

/**
 * fg_rng_next_u64:
 * @rng: a generator
 *
 * Returns: the next 64 random bits (xoshiro256**).
 */
guint64
fg_rng_next_u64 (FgRng *rng)
{
  guint64 *s = rng->s;
  const guint64 result = rotl64 (s[1] * 5, 7) * 9;
  const guint64 t = s[1] << 17;

  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl64 (s[3], 45);
  return result;
}

/**
 * fg_rng_uniform:
 * @rng: a generator
 *
 * Returns: a uniform double in [0, 1) with 53 random bits.
 */
double
fg_rng_uniform (FgRng *rng)
{
  return (double) (fg_rng_next_u64 (rng) >> 11) * 0x1.0p-53;
}

/**
 * fg_rng_uniform_f:
 * @rng: a generator
 *
 * Returns: a uniform float in [0, 1) with 24 random bits.
 */
float
fg_rng_uniform_f (FgRng *rng)
{
  return (float) (fg_rng_next_u64 (rng) >> 40) * 0x1.0p-24f;
}

/**
 * fg_rng_below:
 * @rng: a generator
 * @n: the bound, > 0
 *
 * An unbiased integer in [0, @n) by Lemire's multiply-and-reject method ("Fast random integer
 * generation in an interval", 2019): one multiplication, and a division only on the rare
 * rejection path.
 *
 * Returns: the integer.
 */
guint64
fg_rng_below (FgRng *rng, guint64 n)
{
  g_return_val_if_fail (rng != NULL, 0);
  g_return_val_if_fail (n > 0, 0);

#ifdef __SIZEOF_INT128__
  {
    unsigned __int128 m = (unsigned __int128) fg_rng_next_u64 (rng) * n;
    guint64 low = (guint64) m;
    if (G_UNLIKELY (low < n))
      {
        const guint64 threshold = (0 - n) % n; /* 2^64 mod n */
        while (low < threshold)
          {
            m = (unsigned __int128) fg_rng_next_u64 (rng) * n;
            low = (guint64) m;
          }
      }
    return (guint64) (m >> 64);
  }
#else
  {
    /* Plain rejection: accept draws below the largest multiple of n, then reduce. */
    const guint64 threshold = (0 - n) % n;
    guint64 x;
    do
      x = fg_rng_next_u64 (rng);
    while (x < threshold);
    return x % n;
  }
#endif
}

/**
 * fg_rng_normal:
 * @rng: a generator
 *
 * A standard normal deviate by Marsaglia's polar method in double precision.  Each accepted pair
 * gives two deviates; the second is cached in @rng and returned by the next call.
 *
 * Returns: the deviate.
 */
double
fg_rng_normal (FgRng *rng)
{
  double u, v, s, f;

  g_return_val_if_fail (rng != NULL, 0.0);

  if (rng->has_spare)
    {
      rng->has_spare = FALSE;
      return rng->spare_normal;
    }
  do
    {
      u = 2.0 * fg_rng_uniform (rng) - 1.0;
      v = 2.0 * fg_rng_uniform (rng) - 1.0;
      s = u * u + v * v;
    }
  while (s >= 1.0 || s == 0.0);
  f = sqrt (-2.0 * log (s) / s);
  rng->spare_normal = v * f;
  rng->has_spare = TRUE;
  return u * f;
}

/**
 * fg_rng_fill_normal:
 * @rng: a generator
 * @out: (array length=n): destination
 * @n: number of values
 * @mean: mean
 * @std: standard deviation
 *
 * Fills @out with normal deviates N(@mean, @std²), computed in double and rounded once.
 */
void
fg_rng_fill_normal (FgRng *rng, float *out, gsize n, float mean, float std)
{
  g_return_if_fail (rng != NULL);
  g_return_if_fail (out != NULL || n == 0);

  for (gsize i = 0; i < n; i++)
    out[i] = (float) ((double) mean + (double) std * fg_rng_normal (rng));
}

/**
 * fg_rng_fill_uniform:
 * @rng: a generator
 * @out: (array length=n): destination
 * @n: number of values
 * @lo: lower bound (inclusive)
 * @hi: upper bound (exclusive), >= @lo
 *
 * Fills @out with uniform values in [@lo, @hi), computed in double; a value that would round up
 * to @hi is replaced by the largest float below it.  With @lo == @hi every value is @lo.
 */
void
fg_rng_fill_uniform (FgRng *rng, float *out, gsize n, float lo, float hi)
{
  const double width = (double) hi - (double) lo;
  const float below_hi = nextafterf (hi, -INFINITY);

  g_return_if_fail (rng != NULL);
  g_return_if_fail (out != NULL || n == 0);
  g_return_if_fail (lo <= hi);

  for (gsize i = 0; i < n; i++)
    {
      float x = (float) ((double) lo + width * fg_rng_uniform (rng));
      if (G_UNLIKELY (x >= hi) && lo < hi)
        x = below_hi; /* >= lo, since lo is a float below hi */
      out[i] = x;
    }
}

/**
 * fg_rng_shuffle:
 * @rng: a generator
 * @items: (array length=n): the items, permuted in place
 * @n: number of items
 *
 * Shuffles @items uniformly (Fisher–Yates, with unbiased fg_rng_below ()).
 */
void
fg_rng_shuffle (FgRng *rng, guint32 *items, gsize n)
{
  g_return_if_fail (rng != NULL);
  g_return_if_fail (items != NULL || n == 0);

  for (gsize i = n; i > 1; i--)
    {
      gsize j = (gsize) fg_rng_below (rng, i);
      guint32 tmp = items[i - 1];
      items[i - 1] = items[j];
      items[j] = tmp;
    }
}

/**
 * fg_rng_permutation:
 * @rng: a generator
 * @out: (array length=n): destination
 * @n: number of items, at most 2^32
 *
 * Fills @out with a uniformly random permutation of 0 .. @n − 1.
 */
void
fg_rng_permutation (FgRng *rng, guint32 *out, gsize n)
{
  g_return_if_fail (rng != NULL);
  g_return_if_fail (out != NULL || n == 0);
  g_return_if_fail ((guint64) n <= (guint64) G_MAXUINT32 + 1);

  for (gsize i = 0; i < n; i++)
    out[i] = (guint32) i;
  fg_rng_shuffle (rng, out, n);
}
