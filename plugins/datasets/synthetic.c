/* SPDX-License-Identifier: MIT */
/* flowgmm — the 2-D synthetic data sets of the FlowGMM paper (§5.1, App. C).
 *
 * Four dataset components, each generated from a `seed` with the host's FgRng (never from a
 * global generator):
 *
 *   moons            sklearn's make_moons: two interleaving half circles, 2 classes
 *   circles          sklearn's make_circles: two concentric circles, 2 classes
 *   eight-gaussians  eight Gaussian clusters on a circle grouped into 3 classes
 *   pinwheel         five spiral arms, one class per arm
 *   warped-clusters  many classes in more dimensions: one anisotropic Gaussian cluster per
 *                    class in D dimensions, bent by a fixed random smooth warp (not from the
 *                    paper: a many-class, low-dimensional development set)
 *
 * moons and circles follow sklearn's formulas exactly (sklearn/datasets/_samples_generator.py):
 * the points lie on np.linspace grids, are shuffled, then get isotropic Gaussian noise; only the
 * random stream differs.  eight-gaussians and pinwheel re-create the generators behind the
 * authors' saved sets (data/toy_datasets/{8gauss,pinwheel}.npz of izmailovpavel/flowgmm, which
 * are FFJORD's "8gaussians" and "pinwheel" generators); how their class layout was read off the
 * saved sets is written beside each generator.  Those two can also load the saved sets
 * themselves (`source = authors`, `path = .../8gauss.csv`).
 *
 * Every component makes a training part of `n_train` points and, from an independent stream
 * of the same seed, a test part of `n_test` fresh points with their true labels.  The training
 * part carries the authors' labeled subset (fg_dataset_set_labeled_indices): the first rows of
 * each class, as the authors picked low indices of their shuffled sets, with their counts
 * (moons 5/5, circles 7/4, eight-gaussians 6/6/7, pinwheel 3/2/3/2/3) or `labeled_counts`.  The
 * host's split keys (`labeled`, `labeled_per_class`) override it with a class-balanced draw per
 * cell seed.
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include <flowgmm/flowgmm.h>

typedef enum {
  SYN_MOONS,
  SYN_CIRCLES,
  SYN_EIGHT_GAUSSIANS,
  SYN_PINWHEEL,
  SYN_WARPED,
} SynKind;

#define COMMON_PARAMS                                                                           \
  FG_PARAM_SPEC_INT ("n_train", "1000", 2, 10000000, "training points (labeled + unlabeled)"), \
    FG_PARAM_SPEC_INT ("n_test", "1000", 0, 10000000,                                          \
                       "test points drawn from an independent stream of the same seed "       \
                       "(0: no test part; then set the split key `test`)"),                   \
    FG_PARAM_SPEC_INT ("seed", "0", 0, INFINITY, "seed of the generator (the data, not the split)"), \
    FG_PARAM_SPEC_STRING ("labeled_counts", "",                                                \
                          "labeled training points per class: empty = the authors' counts, "  \
                          "N = N per class, or one count per class 'a,b,...'; the first rows " \
                          "of each class are labeled")

static const FgParamSpec moons_params[] = {
  COMMON_PARAMS,
  FG_PARAM_SPEC_DOUBLE ("noise", "0.05", 0.0, INFINITY,
                        "standard deviation of the Gaussian noise added to every coordinate"),
  FG_PARAM_SPEC_END,
};

static const FgParamSpec circles_params[] = {
  COMMON_PARAMS,
  FG_PARAM_SPEC_DOUBLE ("noise", "0.05", 0.0, INFINITY,
                        "standard deviation of the Gaussian noise added to every coordinate"),
  FG_PARAM_SPEC_DOUBLE ("factor", "0.4", 0.0, 1.0,
                        "radius of the inner circle relative to the outer one, in [0, 1)"),
  FG_PARAM_SPEC_END,
};

#define SOURCE_PARAMS(file)                                                                     \
  FG_PARAM_SPEC_CHOICE ("source", "generate", "generate|authors",                              \
                        "generate: draw the training part from `seed`; authors: read the "     \
                        "authors' saved training set from `path` (test part still generated)"), \
    FG_PARAM_SPEC_PATH ("path", NULL,                                                           \
                        "the authors' set as CSV (header x,y,label; -1 = unlabeled), e.g. "    \
                        "flowgmm-toy/" file "; used with source = authors"),                  \
    FG_PARAM_SPEC_BOOL ("label_unlabeled", "false",                                            \
                        "source = authors: give the unlabeled rows the class of the cluster "  \
                        "or arm they lie on (the generator's layout), so that the split keys " \
                        "and validation draws can use them")

static const FgParamSpec eight_params[] = {
  COMMON_PARAMS,
  FG_PARAM_SPEC_DOUBLE ("radius", "2.828854", 0.0, INFINITY,
                        "distance of the cluster centres from 0 (FFJORD's 4/1.414)"),
  FG_PARAM_SPEC_DOUBLE ("noise", "0.353607", 0.0, INFINITY,
                        "standard deviation of each cluster (FFJORD's 0.5/1.414)"),
  FG_PARAM_SPEC_CHOICE ("classes", "authors", "authors|clusters",
                        "authors: 3 classes of 2/3/3 neighbouring clusters as in the saved set; "
                        "clusters: 8 classes, one per cluster"),
  SOURCE_PARAMS ("8gauss.csv"),
  FG_PARAM_SPEC_END,
};

static const FgParamSpec pinwheel_params[] = {
  COMMON_PARAMS,
  FG_PARAM_SPEC_INT ("arms", "5", 2, 64, "number of spiral arms, one class each"),
  FG_PARAM_SPEC_DOUBLE ("radial_std", "0.3", 0.0, INFINITY,
                        "standard deviation of the radial coordinate (mean 1) before scaling"),
  FG_PARAM_SPEC_DOUBLE ("tangential_std", "0.1", 0.0, INFINITY,
                        "standard deviation of the tangential coordinate before scaling"),
  FG_PARAM_SPEC_DOUBLE ("rate", "0.25", 0.0, 100.0,
                        "twist: a point at radial coordinate r is turned by rate·exp(r)"),
  FG_PARAM_SPEC_DOUBLE ("scale", "2.0", 0.0, INFINITY, "overall scale of the points"),
  SOURCE_PARAMS ("pinwheel.csv"),
  FG_PARAM_SPEC_END,
};

static const FgParamSpec warped_params[] = {
  COMMON_PARAMS,
  FG_PARAM_SPEC_INT ("classes", "20", 2, 1000, "number of classes, one cluster each"),
  FG_PARAM_SPEC_INT ("dim", "12", 1, 1000, "dimension D of the points"),
  FG_PARAM_SPEC_DOUBLE ("separation", "1.0", 0.0, INFINITY,
                        "standard deviation of the cluster centres N(0, s²I) around 0"),
  FG_PARAM_SPEC_DOUBLE ("noise", "1.0", 0.0, INFINITY,
                        "cluster spread: coordinate j of class c has std noise·a_cj, a_cj "
                        "uniform in [0.3, 1.7]"),
  FG_PARAM_SPEC_DOUBLE ("warp", "1.0", 0.0, INFINITY,
                        "strength of the warp: twice x_j ← x_j + warp·sin(Σ_m R_jm x_m + φ_j), "
                        "R_jm ~ N(0, 1/D), φ_j uniform in [0, 2π)"),
  FG_PARAM_SPEC_END,
};

/* ---- generators -------------------------------------------------------------------------- */

/* Everything a generator needs, read once from the params. */
typedef struct {
  SynKind kind;
  guint K;
  double noise, factor;          /* moons, circles; noise is the cluster std for 8 gaussians */
  double radius;                 /* 8 gaussians */
  gboolean eight_clusters;       /* 8 gaussians: one class per cluster */
  double radial_std, tangential_std, rate, scale; /* pinwheel */
  gsize dim;                     /* width of a point (2 but for warped-clusters) */
  /* warped-clusters: the layout, drawn once per seed from its own stream */
  double separation, warp;
  double *centres;               /* K × dim */
  double *spread;                /* K × dim: noise · a_cj */
  double *rot;                   /* 2 × dim × dim */
  double *phase;                 /* 2 × dim */
} SynConfig;

/* numpy.linspace (start, stop, n, endpoint) element i: start + i·step, the last one exactly
 * `stop` when endpoint is set. */
static double
linspace_at (double start, double stop, gsize n, gboolean endpoint, gsize i)
{
  gsize div = endpoint ? n - 1 : n;
  if (endpoint && n > 1 && i == n - 1)
    return stop;
  if (div == 0)
    return start;
  return start + (double) i * ((stop - start) / (double) div);
}

/* sklearn's tail of make_moons / make_circles: shuffle the rows (util_shuffle), then add
 * N(0, noise²) to every coordinate in row-major order. */
static void
shuffle_and_add_noise (FgRng *rng, double *xy, gint32 *y, gsize n, double noise)
{
  g_autofree guint32 *perm = g_new (guint32, n);
  g_autofree double *xy2 = g_new (double, 2 * n);
  g_autofree gint32 *y2 = g_new (gint32, n);

  fg_rng_permutation (rng, perm, n);
  for (gsize i = 0; i < n; i++)
    {
      xy2[2 * i] = xy[2 * perm[i]];
      xy2[2 * i + 1] = xy[2 * perm[i] + 1];
      y2[i] = y[perm[i]];
    }
  memcpy (xy, xy2, 2 * n * sizeof *xy);
  memcpy (y, y2, n * sizeof *y);
  if (noise > 0.0)
    for (gsize i = 0; i < 2 * n; i++)
      xy[i] += noise * fg_rng_normal (rng);
}

/* sklearn make_moons (n, noise): the outer moon (class 0) is (cos t, sin t) for t on
 * linspace(0, π, n//2); the inner moon (class 1) is (1 − cos t, 1 − sin t − 0.5) for t on
 * linspace(0, π, n − n//2). */
static void
gen_moons (const SynConfig *c, FgRng *rng, gsize n, double *xy, gint32 *y)
{
  gsize n_out = n / 2, n_in = n - n_out;
  for (gsize i = 0; i < n_out; i++)
    {
      double t = linspace_at (0.0, G_PI, n_out, TRUE, i);
      xy[2 * i] = cos (t);
      xy[2 * i + 1] = sin (t);
      y[i] = 0;
    }
  for (gsize i = 0; i < n_in; i++)
    {
      double t = linspace_at (0.0, G_PI, n_in, TRUE, i);
      xy[2 * (n_out + i)] = 1.0 - cos (t);
      xy[2 * (n_out + i) + 1] = 1.0 - sin (t) - 0.5;
      y[n_out + i] = 1;
    }
  shuffle_and_add_noise (rng, xy, y, n, c->noise);
}

/* sklearn make_circles (n, noise, factor): the outer circle (class 0) has n//2 points at
 * angles linspace(0, 2π, n//2, endpoint=False); the inner one (class 1) the other n − n//2
 * points at radius `factor`. */
static void
gen_circles (const SynConfig *c, FgRng *rng, gsize n, double *xy, gint32 *y)
{
  gsize n_out = n / 2, n_in = n - n_out;
  for (gsize i = 0; i < n_out; i++)
    {
      double t = linspace_at (0.0, 2.0 * G_PI, n_out, FALSE, i);
      xy[2 * i] = cos (t);
      xy[2 * i + 1] = sin (t);
      y[i] = 0;
    }
  for (gsize i = 0; i < n_in; i++)
    {
      double t = linspace_at (0.0, 2.0 * G_PI, n_in, FALSE, i);
      xy[2 * (n_out + i)] = cos (t) * c->factor;
      xy[2 * (n_out + i) + 1] = sin (t) * c->factor;
      y[n_out + i] = 1;
    }
  shuffle_and_add_noise (rng, xy, y, n, c->noise);
}

/* Eight Gaussians (FFJORD's "8gaussians", which the saved 8gauss.npz matches: cluster centres at
 * radius 4/1.414 = 2.83 and angles j·45°, std 0.5/1.414 = 0.354 per coordinate, each point's
 * cluster drawn uniformly — the saved set has 111..146 points per cluster).  Its three classes
 * are groups of neighbouring clusters, read off the 19 labeled points of the saved set (every
 * labeled point lies in one of these sectors): class 0 = clusters at 180° and 225°, class 1 =
 * 270°, 315° and 0°, class 2 = 45°, 90° and 135°. */
static const gint32 eight_cluster_class[8] = { 1, 2, 2, 2, 0, 0, 1, 1 };

static void
gen_eight_gaussians (const SynConfig *c, FgRng *rng, gsize n, double *xy, gint32 *y)
{
  for (gsize i = 0; i < n; i++)
    {
      guint j = (guint) fg_rng_below (rng, 8);
      double a = (double) j * G_PI / 4.0;
      xy[2 * i] = c->radius * cos (a) + c->noise * fg_rng_normal (rng);
      xy[2 * i + 1] = c->radius * sin (a) + c->noise * fg_rng_normal (rng);
      y[i] = c->eight_clusters ? (gint32) j : eight_cluster_class[j];
    }
}

/* The class of a point of the eight-Gaussians layout: its nearest cluster's. */
static gint32
eight_classify (const SynConfig *c, double x, double y)
{
  double a = atan2 (y, x);
  gint j = (gint) lround (a / (G_PI / 4.0));
  j = ((j % 8) + 8) % 8;
  return c->eight_clusters ? j : eight_cluster_class[j];
}

/* Pinwheel (FFJORD's "pinwheel", which the saved pinwheel.npz matches).  Arm c: draw
 * r = 1 + radial_std·N, t = tangential_std·N, turn (r, t) by the angle 2πc/K − rate·exp(r) and
 * multiply by `scale`.  The saved set has 200 points per arm, and its labels count the arms
 * counter-clockwise from the one at −39° (every labeled point agrees, and the residual angles
 * of all 1000 points give r ≈ 1.00 ± 0.30, t ≈ 0.01 ± 0.10).  Points are generated arm by arm
 * (n/K each, the remainder to the first arms) and then shuffled. */
static void
gen_pinwheel (const SynConfig *c, FgRng *rng, gsize n, double *xy, gint32 *y)
{
  g_autofree double *tmp = g_new (double, 2 * n);
  g_autofree gint32 *lab = g_new (gint32, n);
  g_autofree guint32 *perm = g_new (guint32, n);
  gsize i = 0;

  for (guint k = 0; k < c->K; k++)
    {
      gsize count = n / c->K + (k < n % c->K ? 1 : 0);
      for (gsize m = 0; m < count; m++, i++)
        {
          double r = 1.0 + c->radial_std * fg_rng_normal (rng);
          double t = c->tangential_std * fg_rng_normal (rng);
          double a = 2.0 * G_PI * k / c->K - c->rate * exp (r);
          tmp[2 * i] = c->scale * (r * cos (a) - t * sin (a));
          tmp[2 * i + 1] = c->scale * (r * sin (a) + t * cos (a));
          lab[i] = (gint32) k;
        }
    }
  fg_rng_permutation (rng, perm, n);
  for (i = 0; i < n; i++)
    {
      xy[2 * i] = tmp[2 * perm[i]];
      xy[2 * i + 1] = tmp[2 * perm[i] + 1];
      y[i] = lab[perm[i]];
    }
}

/* The arm of a pinwheel point: the one whose centre line r ↦ 2πc/K − rate·exp(r) passes
 * closest in angle at the point's radius (t is small). */
static gint32
pinwheel_classify (const SynConfig *c, double x, double y)
{
  double r = hypot (x, y) / c->scale, phi = atan2 (y, x);
  double best = INFINITY;
  gint32 arg = 0;
  for (guint k = 0; k < c->K; k++)
    {
      double d = phi - (2.0 * G_PI * k / c->K - c->rate * exp (r));
      d = fabs (remainder (d, 2.0 * G_PI));
      if (d < best)
        best = d, arg = (gint32) k;
    }
  return arg;
}

/* warped-clusters' layout (centres, spreads, warp) from the seed's "synthetic/layout" stream,
 * shared by the training and the test parts. */
static void
warped_layout (SynConfig *c, guint64 seed)
{
  const gsize D = c->dim;
  FgRng rng;
  fg_rng_init (&rng, seed, fg_rng_stream_id ("synthetic/layout"));
  c->centres = g_new (double, c->K * D);
  c->spread = g_new (double, c->K * D);
  c->rot = g_new (double, 2 * D * D);
  c->phase = g_new (double, 2 * D);
  for (gsize i = 0; i < c->K * D; i++)
    c->centres[i] = c->separation * fg_rng_normal (&rng);
  for (gsize i = 0; i < c->K * D; i++)
    c->spread[i] = c->noise * (0.3 + 1.4 * fg_rng_uniform (&rng));
  for (gsize i = 0; i < 2 * D * D; i++)
    c->rot[i] = fg_rng_normal (&rng) / sqrt ((double) D);
  for (gsize i = 0; i < 2 * D; i++)
    c->phase[i] = 2.0 * G_PI * fg_rng_uniform (&rng);
}

static void
warped_layout_clear (SynConfig *c)
{
  g_clear_pointer (&c->centres, g_free);
  g_clear_pointer (&c->spread, g_free);
  g_clear_pointer (&c->rot, g_free);
  g_clear_pointer (&c->phase, g_free);
}

/* Class c uniform per point; u = μ_c + spread_c ⊙ ε; then two warps
 * x_j ← x_j + warp·sin(Σ_m R_jm x_m + φ_j) (each from the previous x). */
static void
gen_warped (const SynConfig *c, FgRng *rng, gsize n, double *x, gint32 *y)
{
  const gsize D = c->dim;
  g_autofree double *t = g_new (double, D);
  for (gsize i = 0; i < n; i++)
    {
      const guint k = (guint) fg_rng_below (rng, c->K);
      double *xi = x + i * D;
      y[i] = (gint32) k;
      for (gsize j = 0; j < D; j++)
        xi[j] = c->centres[k * D + j] + c->spread[k * D + j] * fg_rng_normal (rng);
      for (guint l = 0; l < 2; l++)
        {
          const double *R = c->rot + l * D * D;
          for (gsize j = 0; j < D; j++)
            {
              double a = c->phase[l * D + j];
              for (gsize m = 0; m < D; m++)
                a += R[j * D + m] * xi[m];
              t[j] = xi[j] + c->warp * sin (a);
            }
          memcpy (xi, t, D * sizeof (double));
        }
    }
}

static void
generate (const SynConfig *c, FgRng *rng, gsize n, double *xy, gint32 *y)
{
  switch (c->kind)
    {
    case SYN_MOONS:
      gen_moons (c, rng, n, xy, y);
      break;
    case SYN_CIRCLES:
      gen_circles (c, rng, n, xy, y);
      break;
    case SYN_EIGHT_GAUSSIANS:
      gen_eight_gaussians (c, rng, n, xy, y);
      break;
    case SYN_PINWHEEL:
      gen_pinwheel (c, rng, n, xy, y);
      break;
    case SYN_WARPED:
      gen_warped (c, rng, n, xy, y);
      break;
    }
}

/* ---- loading ----------------------------------------------------------------------------- */

static const char *
kind_name (SynKind kind)
{
  static const char *const names[] = { "moons", "circles", "eight-gaussians", "pinwheel",
                                       "warped-clusters" };
  return names[kind];
}

/* The authors' labeled counts per class (REFERENCE §4); NULL when the layout is not theirs. */
static const guint *
authors_counts (const SynConfig *c)
{
  static const guint moons[] = { 5, 5 }, circles[] = { 7, 4 }, eight[] = { 6, 6, 7 },
                     pinwheel[] = { 3, 2, 3, 2, 3 };
  switch (c->kind)
    {
    case SYN_MOONS:
      return moons;
    case SYN_CIRCLES:
      return circles;
    case SYN_EIGHT_GAUSSIANS:
      return c->eight_clusters ? NULL : eight;
    case SYN_PINWHEEL:
      return c->K == 5 ? pinwheel : NULL;
    case SYN_WARPED:
      return NULL;
    }
  return NULL;
}

/* Parse `labeled_counts` into K counts. */
static gboolean
parse_counts (const SynConfig *c, const char *text, guint *counts, GError **error)
{
  g_auto (GStrv) fields = NULL;
  guint n_fields;
  const guint *def = authors_counts (c);

  while (text != NULL && g_ascii_isspace (*text))
    text++;
  if (text == NULL || *text == '\0')
    {
      for (guint k = 0; k < c->K; k++)
        counts[k] = def ? def[k] : 3;
      return TRUE;
    }
  fields = g_strsplit (text, ",", -1);
  n_fields = g_strv_length (fields);
  if (n_fields != 1 && n_fields != c->K)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                   "%s: labeled_counts '%s': give one count, or one per class (%u)",
                   kind_name (c->kind), text, c->K);
      return FALSE;
    }
  for (guint k = 0; k < n_fields; k++)
    {
      guint64 v;
      g_strstrip (fields[k]);
      if (!g_ascii_string_to_unsigned (fields[k], 10, 1, G_MAXUINT32, &v, NULL))
        {
          g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                       "%s: labeled_counts '%s': '%s' is not a positive integer",
                       kind_name (c->kind), text, fields[k]);
          return FALSE;
        }
      counts[k] = (guint) v;
    }
  if (n_fields == 1)
    for (guint k = 1; k < c->K; k++)
      counts[k] = counts[0];
  return TRUE;
}

/* The first counts[k] rows of each class k (the rows are in random order already). */
static guint32 *
first_rows_per_class (const SynConfig *c, const gint32 *y, gsize n, const guint *counts,
                      gsize *n_out, GError **error)
{
  g_autofree guint *taken = g_new0 (guint, c->K);
  g_autoptr (GArray) idx = g_array_new (FALSE, FALSE, sizeof (guint32));
  gsize want = 0;

  for (guint k = 0; k < c->K; k++)
    want += counts[k];
  for (gsize i = 0; i < n && idx->len < want; i++)
    if (y[i] >= 0 && taken[y[i]] < counts[y[i]])
      {
        guint32 row = (guint32) i;
        taken[y[i]]++;
        g_array_append_val (idx, row);
      }
  for (guint k = 0; k < c->K; k++)
    if (taken[k] < counts[k])
      {
        g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                     "%s: labeled_counts asks for %u points of class %u, but the training part "
                     "has only %u",
                     kind_name (c->kind), counts[k], k, taken[k]);
        return NULL;
      }
  *n_out = idx->len;
  return (guint32 *) g_array_free (g_steal_pointer (&idx), FALSE);
}

/* Read the authors' CSV (header "x,y,label", one row per point, label -1 = unlabeled). */
static gboolean
read_authors_csv (const SynConfig *c, const char *path, FgTensor **x_out, gint32 **y_out,
                  GError **error)
{
  g_autofree char *contents = NULL;
  g_auto (GStrv) lines = NULL;
  g_autoptr (GArray) xy = g_array_new (FALSE, FALSE, sizeof (float));
  g_autoptr (GArray) lab = g_array_new (FALSE, FALSE, sizeof (gint32));
  gsize length;
  FgTensor *x;

  if (!fg_file_read_all (path, 64 << 20, &contents, &length, error))
    return FALSE;
  lines = g_strsplit (contents, "\n", -1);
  for (guint l = 0; lines[l] != NULL; l++)
    {
      g_auto (GStrv) f = NULL;
      double v[3];
      char *line = g_strstrip (lines[l]);
      if (*line == '\0')
        continue;
      if (l == 0)
        {
          if (g_ascii_strncasecmp (line, "x,y,label", 9) != 0)
            {
              g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                           "%s:1: expected the header 'x,y,label', found '%s'", path, line);
              return FALSE;
            }
          continue;
        }
      f = g_strsplit (line, ",", -1);
      if (g_strv_length (f) != 3)
        {
          g_set_error (error, FG_ERROR, FG_ERROR_DATA, "%s:%u: expected 3 fields, found %u", path,
                       l + 1, g_strv_length (f));
          return FALSE;
        }
      for (int j = 0; j < 3; j++)
        {
          char *end = NULL;
          v[j] = g_ascii_strtod (g_strstrip (f[j]), &end);
          if (end == f[j] || *end != '\0' || !isfinite (v[j]))
            {
              g_set_error (error, FG_ERROR, FG_ERROR_DATA, "%s:%u: field %d '%s' is not a number",
                           path, l + 1, j + 1, f[j]);
              return FALSE;
            }
        }
      if (v[2] != floor (v[2]) || v[2] < -1 || v[2] >= c->K)
        {
          g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                       "%s:%u: label %g is not -1 or a class in 0..%u", path, l + 1, v[2],
                       c->K - 1);
          return FALSE;
        }
      {
        float p[2] = { (float) v[0], (float) v[1] };
        gint32 yy = (gint32) v[2];
        g_array_append_vals (xy, p, 2);
        g_array_append_val (lab, yy);
      }
    }
  if (lab->len < 2)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA, "%s: fewer than two data rows", path);
      return FALSE;
    }
  x = fg_tensor_new_2d (lab->len, 2);
  memcpy (x->data, xy->data, xy->len * sizeof (float));
  *x_out = x;
  *y_out = (gint32 *) g_array_free (g_steal_pointer (&lab), FALSE);
  return TRUE;
}

static FgTensor *
to_tensor (const double *xy, gsize n, gsize dim)
{
  FgTensor *x = fg_tensor_new_2d (n, dim);
  for (gsize i = 0; i < n; i++)
    {
      float *row = fg_tensor_row (x, i);
      for (gsize j = 0; j < dim; j++)
        row[j] = (float) xy[dim * i + j];
    }
  return x;
}

static gboolean
set_part_or_free (FgDataset *ds, FgPart part, FgTensor *x, gint32 *y, GError **error)
{
  if (fg_dataset_set_part (ds, part, x, y, error))
    return TRUE;
  fg_tensor_free (x); /* not taken on error */
  g_free (y);
  return FALSE;
}

/* The shape parameters of `c->kind` into `c`, and a note that says what the classes are. */
static gboolean
read_shape (SynConfig *c, const FgParams *params, GString *note, GError **error)
{
  switch (c->kind)
    {
    case SYN_MOONS:
      c->noise = fg_params_get_double (params, "noise");
      g_string_printf (note, "sklearn make_moons (noise %g): class 0 = upper moon, class 1 = "
                             "lower moon", c->noise);
      break;
    case SYN_CIRCLES:
      c->noise = fg_params_get_double (params, "noise");
      c->factor = fg_params_get_double (params, "factor");
      if (c->factor >= 1.0)
        {
          g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                       "circles: factor = %g: the inner circle must be smaller (factor < 1)",
                       c->factor);
          return FALSE;
        }
      g_string_printf (note, "sklearn make_circles (noise %g, factor %g): class 0 = outer "
                             "circle, class 1 = inner circle", c->noise, c->factor);
      break;
    case SYN_EIGHT_GAUSSIANS:
      c->radius = fg_params_get_double (params, "radius");
      c->noise = fg_params_get_double (params, "noise");
      c->eight_clusters = g_strcmp0 (fg_params_get_string (params, "classes"), "clusters") == 0;
      c->K = c->eight_clusters ? 8 : 3;
      g_string_printf (note, "8 Gaussians at radius %g (std %g), angles j·45°: %s", c->radius,
                       c->noise,
                       c->eight_clusters ? "class j = cluster j"
                                         : "class 0 = clusters at 180°,225°; class 1 = 270°,315°,"
                                           "0°; class 2 = 45°,90°,135°");
      break;
    case SYN_PINWHEEL:
      c->K = (guint) fg_params_get_int (params, "arms");
      c->radial_std = fg_params_get_double (params, "radial_std");
      c->tangential_std = fg_params_get_double (params, "tangential_std");
      c->rate = fg_params_get_double (params, "rate");
      c->scale = fg_params_get_double (params, "scale");
      if (c->scale <= 0.0)
        {
          g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                       "pinwheel: scale must be positive");
          return FALSE;
        }
      g_string_printf (note, "pinwheel, %u arms: class c = arm at angle 2πc/%u − %g·exp(r)",
                       c->K, c->K, c->rate);
      break;
    case SYN_WARPED:
      c->K = (guint) fg_params_get_int (params, "classes");
      c->dim = (gsize) fg_params_get_int (params, "dim");
      c->separation = fg_params_get_double (params, "separation");
      c->noise = fg_params_get_double (params, "noise");
      c->warp = fg_params_get_double (params, "warp");
      g_string_printf (note, "%u anisotropic Gaussian clusters in %" G_GSIZE_FORMAT
                       " dimensions (centres N(0, %g²I), spread %g), warped twice by "
                       "x + %g·sin(Rx + φ): class c = cluster c",
                       c->K, c->dim, c->separation, c->noise, c->warp);
      break;
    }
  return TRUE;
}

/* Where the training part comes from: generated, or the authors' file (eight-gaussians and
 * pinwheel only), whose layout fixes the keys that do not apply to it. */
typedef struct {
  gboolean    from_authors;
  const char *path;            /* the authors' file */
  gboolean    label_unlabeled; /* label its unlabeled rows by the layout */
} SynSource;

static gboolean
read_source (const SynConfig *c, const FgParams *params, SynSource *src, GError **error)
{
  const char *file = c->kind == SYN_PINWHEEL ? "pinwheel.csv" : "8gauss.csv";
  memset (src, 0, sizeof *src);
  if (c->kind != SYN_EIGHT_GAUSSIANS && c->kind != SYN_PINWHEEL)
    return TRUE;
  src->from_authors = g_strcmp0 (fg_params_get_string (params, "source"), "authors") == 0;
  src->path = fg_params_get_string (params, "path");
  src->label_unlabeled = fg_params_get_bool (params, "label_unlabeled");
  if (!src->from_authors)
    return TRUE;
  if (src->path == NULL)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                   "%s: source = authors needs `path` (the authors' %s, e.g. "
                   "shared/data/flowgmm-toy/%s)",
                   kind_name (c->kind), file, file);
      return FALSE;
    }
  if (c->kind == SYN_PINWHEEL && c->K != 5)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                   "pinwheel: the authors' set has 5 arms; arms = %u needs source = generate",
                   c->K);
      return FALSE;
    }
  if (c->eight_clusters)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                   "eight-gaussians: the authors' set has 3 classes; classes = clusters "
                   "needs source = generate");
      return FALSE;
    }
  if (!fg_params_is_default (params, "labeled_counts"))
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                   "%s: labeled_counts does not apply to source = authors (its labeled "
                   "points are fixed; use the split keys with label_unlabeled = true)",
                   kind_name (c->kind));
      return FALSE;
    }
  return TRUE;
}

/* The training part from the authors' file; its labeled subset is what the file labels,
 * before any labels inferred from the layout. */
static gboolean
load_authors_train (const SynConfig *c, const SynSource *src, FgDataset *ds, GString *note,
                    GError **error)
{
  FgTensor *x = NULL;
  gint32 *y = NULL;
  g_autoptr (GArray) idx = g_array_new (FALSE, FALSE, sizeof (guint32));
  if (!read_authors_csv (c, src->path, &x, &y, error))
    return FALSE;
  for (gsize i = 0; i < fg_tensor_rows (x); i++)
    if (y[i] >= 0)
      {
        guint32 row = (guint32) i;
        g_array_append_val (idx, row);
      }
  if (src->label_unlabeled)
    for (gsize i = 0; i < fg_tensor_rows (x); i++)
      if (y[i] < 0)
        {
          const float *row = fg_tensor_row (x, i);
          y[i] = c->kind == SYN_PINWHEEL ? pinwheel_classify (c, row[0], row[1])
                                         : eight_classify (c, row[0], row[1]);
        }
  if (!set_part_or_free (ds, FG_PART_TRAIN, x, y, error))
    {
      g_prefix_error (error, "%s: ", src->path);
      return FALSE;
    }
  fg_dataset_set_labeled_indices (ds, (const guint32 *) idx->data, idx->len);
  g_string_append_printf (note, "; training part: the authors' set %s%s", src->path,
                          src->label_unlabeled ? " (unlabeled rows labeled by the layout)" : "");
  return TRUE;
}

/* `n` fresh points with their true labels from the seed's stream `stream` as `part`. */
static gboolean
generate_part (const SynConfig *c, guint64 seed, const char *stream, gsize n, FgDataset *ds,
               FgPart part, GError **error)
{
  g_autofree double *xy = g_new (double, c->dim * n);
  gint32 *y = g_new (gint32, n);
  FgRng rng;
  fg_rng_init (&rng, seed, fg_rng_stream_id (stream));
  generate (c, &rng, n, xy, y);
  return set_part_or_free (ds, part, to_tensor (xy, n, c->dim), y, error);
}

/* A generated training part; its labeled subset is the first labeled_counts[k] points of each
 * class k. */
static gboolean
generate_train (const SynConfig *c, const FgParams *params, guint64 seed, FgDataset *ds,
                GError **error)
{
  gsize n_train = (gsize) fg_params_get_int (params, "n_train");
  g_autofree guint *counts = g_new0 (guint, c->K);
  g_autofree guint32 *labeled = NULL;
  const FgDataPart *train;
  gsize n_labeled = 0;
  if (!parse_counts (c, fg_params_get_string (params, "labeled_counts"), counts, error)
      || !generate_part (c, seed, "synthetic/train", n_train, ds, FG_PART_TRAIN, error))
    return FALSE;
  train = fg_dataset_get_part (ds, FG_PART_TRAIN);
  labeled = first_rows_per_class (c, train->y, train->n, counts, &n_labeled, error);
  if (labeled == NULL)
    return FALSE;
  fg_dataset_set_labeled_indices (ds, labeled, n_labeled);
  return TRUE;
}

static FgDataset *
synthetic_load (SynKind kind, const FgParams *params, GError **error)
{
  SynConfig c = { kind, 2 };
  SynSource src;
  FgDataset *out = NULL;
  gsize n_test = (gsize) fg_params_get_int (params, "n_test");
  guint64 seed = (guint64) fg_params_get_int (params, "seed");
  g_autoptr (FgDataset) ds = fg_dataset_new (kind_name (kind));
  g_autoptr (GString) note = g_string_new (NULL);

  c.dim = 2;
  if (!read_shape (&c, params, note, error) || !read_source (&c, params, &src, error))
    return NULL;
  if (kind == SYN_WARPED)
    warped_layout (&c, seed);
  fg_dataset_set_classes (ds, c.K, NULL);
  if (kind == SYN_MOONS)
    fg_dataset_set_classes (ds, 2, (const char *const[]){ "upper", "lower" });
  else if (kind == SYN_CIRCLES)
    fg_dataset_set_classes (ds, 2, (const char *const[]){ "outer", "inner" });
  if (src.from_authors ? !load_authors_train (&c, &src, ds, note, error)
                       : !generate_train (&c, params, seed, ds, error))
    goto out;
  /* Test part: fresh points with true labels, from their own stream. */
  if (n_test > 0 && !generate_part (&c, seed, "synthetic/test", n_test, ds, FG_PART_TEST, error))
    goto out;
  fg_dataset_set_note (ds, note->str);
  if (!fg_dataset_finish (ds, error))
    goto out;
  out = g_steal_pointer (&ds);
out:
  warped_layout_clear (&c);
  return out;
}

static FgDataset *
moons_load (const FgParams *params, const FgLoadContext *ctx, GError **error)
{
  return synthetic_load (SYN_MOONS, params, error);
}

static FgDataset *
circles_load (const FgParams *params, const FgLoadContext *ctx, GError **error)
{
  return synthetic_load (SYN_CIRCLES, params, error);
}

static FgDataset *
eight_load (const FgParams *params, const FgLoadContext *ctx, GError **error)
{
  return synthetic_load (SYN_EIGHT_GAUSSIANS, params, error);
}

static FgDataset *
pinwheel_load (const FgParams *params, const FgLoadContext *ctx, GError **error)
{
  return synthetic_load (SYN_PINWHEEL, params, error);
}

static FgDataset *
warped_load (const FgParams *params, const FgLoadContext *ctx, GError **error)
{
  return synthetic_load (SYN_WARPED, params, error);
}

static const FgDatasetVTable warped_vtable = { sizeof (FgDatasetVTable), warped_load };
static const FgDatasetVTable moons_vtable = { sizeof (FgDatasetVTable), moons_load };
static const FgDatasetVTable circles_vtable = { sizeof (FgDatasetVTable), circles_load };
static const FgDatasetVTable eight_vtable = { sizeof (FgDatasetVTable), eight_load };
static const FgDatasetVTable pinwheel_vtable = { sizeof (FgDatasetVTable), pinwheel_load };

static const FgComponent synthetic_components[] = {
  { FG_KIND_DATASET, "moons", "two interleaving half circles (sklearn make_moons), 2 classes",
    moons_params, &moons_vtable, { 0 } },
  { FG_KIND_DATASET, "circles",
    "two concentric circles (sklearn make_circles), 2 classes", circles_params, &circles_vtable,
    { 0 } },
  { FG_KIND_DATASET, "eight-gaussians",
    "eight Gaussian clusters on a circle in 3 classes (the FlowGMM authors' 8gauss)",
    eight_params, &eight_vtable, { 0 } },
  { FG_KIND_DATASET, "pinwheel", "five spiral arms, one class each (the FlowGMM authors' pinwheel)",
    pinwheel_params, &pinwheel_vtable, { 0 } },
  { FG_KIND_DATASET, "warped-clusters",
    "many classes in D dimensions: one anisotropic Gaussian cluster per class, smoothly warped",
    warped_params, &warped_vtable, { 0 } },
  { 0 },
};

static const FgPluginInfo synthetic_info = {
  .abi_version = FG_PLUGIN_ABI_VERSION,
  .struct_size = sizeof (FgPluginInfo),
  .name = "synthetic",
  .version = PACKAGE_VERSION,
  .license = "MIT",
  .description = "The 2-D synthetic data sets of the FlowGMM paper: moons, circles, eight "
                 "Gaussians, pinwheel; and warped-clusters, a many-class set in D dimensions",
  .components = synthetic_components,
};

FG_PLUGIN_DEFINE (synthetic_info)
