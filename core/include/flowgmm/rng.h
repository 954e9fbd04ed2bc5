/* SPDX-License-Identifier: MIT */
/* flowgmm — the one seeded random number generator.
 *
 * xoshiro256** (Blackman & Vigna).  A generator is fully determined by (seed, stream): the state
 * is the SplitMix64 expansion of both, so every cell, worker and component draws from its own
 * independent stream and a result is bit-reproducible from its experiment file and seed.
 */
#pragma once

#include <glib.h>
#include <flowgmm/error.h>

G_BEGIN_DECLS

typedef struct {
  guint64 s[4];
  double spare_normal;
  gboolean has_spare;
} FgRng;

FG_API void    fg_rng_init (FgRng *rng, guint64 seed, guint64 stream);
/* A child generator for `stream`, derived from the parent's current state (advances the parent). */
FG_API void    fg_rng_fork (FgRng *parent, guint64 stream, FgRng *child);
/* Stream id from a string (FNV-1a 64), e.g. a component name. */
FG_API guint64 fg_rng_stream_id (const char *name);

FG_API guint64 fg_rng_next_u64 (FgRng *rng);
FG_API double  fg_rng_uniform (FgRng *rng);                 /* [0, 1), 53 bits */
FG_API float   fg_rng_uniform_f (FgRng *rng);               /* [0, 1), 24 bits */
FG_API guint64 fg_rng_below (FgRng *rng, guint64 n);        /* uniform in [0, n), unbiased */
FG_API double  fg_rng_normal (FgRng *rng);                  /* standard normal */
FG_API void    fg_rng_fill_normal (FgRng *rng, float *out, gsize n, float mean, float std);
FG_API void    fg_rng_fill_uniform (FgRng *rng, float *out, gsize n, float lo, float hi);
FG_API void    fg_rng_shuffle (FgRng *rng, guint32 *items, gsize n);      /* Fisher–Yates */
FG_API void    fg_rng_permutation (FgRng *rng, guint32 *out, gsize n);    /* shuffled 0..n-1 */

G_END_DECLS
