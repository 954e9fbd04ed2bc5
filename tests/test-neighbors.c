/* SPDX-License-Identifier: MIT */
/* flowgmm tests — exact nearest neighbours (core/method/neighbors.c) against a naive double reference. */
#include "config.h"

#include <math.h>
#include <string.h>

#include <flowgmm/flowgmm.h>

/* Random rows; with `grid` > 0 the values are integers in [0, grid) so that exact ties in
 * distance are common (as with the digits data set), and rows `dup` apart repeat. */
static FgTensor *
random_rows (guint64 seed, gsize n, gsize d, int grid, gsize dup)
{
  FgRng rng;
  FgTensor *t = fg_tensor_new_2d (n, d);
  fg_rng_init (&rng, seed, 1);
  for (gsize i = 0; i < n; i++)
    {
      float *r = fg_tensor_row (t, i);
      if (dup > 0 && i >= dup && i % 7 == 0)
        {
          memcpy (r, fg_tensor_row (t, i - dup), d * sizeof (float));
          continue;
        }
      for (gsize j = 0; j < d; j++)
        r[j] = grid > 0 ? (float) fg_rng_below (&rng, (guint64) grid)
                        : (float) fg_rng_normal (&rng);
    }
  return t;
}

typedef struct {
  double d;
  guint32 i;
} Ref;

static int
ref_compare (const void *pa, const void *pb)
{
  const Ref *a = pa, *b = pb;
  if (a->d != b->d)
    return a->d < b->d ? -1 : 1;
  return a->i < b->i ? -1 : a->i > b->i;
}

/* Naive distance in double, the same normalisation as the index (rows rounded to float after
 * normalisation, as the index stores them). */
static double
naive_dist (const float *a, const float *b, gsize d, FgDistance metric)
{
  g_autofree float *ua = g_memdup (a, d * sizeof (float));
  g_autofree float *ub = g_memdup (b, d * sizeof (float));
  double s = 0;
  if (metric == FG_DISTANCE_COSINE)
    {
      FgTensor ta = fg_tensor_wrap_2d (ua, 1, d), tb = fg_tensor_wrap_2d (ub, 1, d);
      fg_normalize_rows (&ta);
      fg_normalize_rows (&tb);
    }
  for (gsize j = 0; j < d; j++)
    s += ((double) ua[j] - ub[j]) * ((double) ua[j] - ub[j]);
  return s;
}

static void
check_against_naive (const FgTensor *ref, const FgTensor *q, gsize k, FgDistance metric)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (FgNeighborIndex) index = fg_neighbor_index_new (ref, metric, &error);
  gsize n = fg_tensor_rows (ref), m = fg_tensor_rows (q), d = fg_tensor_cols (ref);
  g_autofree guint32 *idx = g_new (guint32, m * k);
  g_autofree float *dist = g_new (float, m * k);
  g_autofree Ref *all = g_new (Ref, n);

  g_assert_no_error (error);
  g_assert_true (fg_neighbor_index_query (index, q, k, idx, dist, &error));
  g_assert_no_error (error);
  for (gsize i = 0; i < m; i++)
    {
      for (gsize j = 0; j < n; j++)
        {
          all[j].i = (guint32) j;
          all[j].d = naive_dist (fg_tensor_row (q, i), fg_tensor_row (ref, j), d, metric);
        }
      qsort (all, n, sizeof *all, ref_compare);
      for (gsize c = 0; c < k; c++)
        {
          /* the same distance; the same index unless the naive distances tie differently in
           * the last bit of float normalisation */
          g_assert_cmpfloat_with_epsilon (dist[i * k + c], all[c].d, 1e-5 * (1 + all[c].d));
          if (metric == FG_DISTANCE_L2)
            g_assert_cmpuint (idx[i * k + c], ==, all[c].i);
        }
    }
}

static void
test_query_l2 (void)
{
  g_autoptr (FgTensor) ref = random_rows (1, 1500, 37, 0, 0); /* > one reference block */
  g_autoptr (FgTensor) q = random_rows (2, 600, 37, 0, 0);    /* > two query blocks */
  check_against_naive (ref, q, 1, FG_DISTANCE_L2);
  check_against_naive (ref, q, 7, FG_DISTANCE_L2);
  check_against_naive (ref, q, 40, FG_DISTANCE_L2);
}

static void
test_query_ties (void)
{
  /* integer data with duplicated rows: many exact ties, which must go to the smaller index */
  g_autoptr (FgTensor) ref = random_rows (3, 1100, 5, 3, 13);
  g_autoptr (FgTensor) q = random_rows (4, 300, 5, 3, 0);
  check_against_naive (ref, q, 1, FG_DISTANCE_L2);
  check_against_naive (ref, q, 10, FG_DISTANCE_L2);
  check_against_naive (ref, ref, 3, FG_DISTANCE_L2);

  /* more exact ties than candidates kept: the exhaustive path, still smallest index first */
  {
    g_autoptr (FgTensor) same = random_rows (5, 60, 4, 3, 0);
    g_autoptr (FgTensor) q1 = random_rows (6, 2, 4, 3, 0);
    for (gsize i = 1; i < 50; i++)
      memcpy (fg_tensor_row (same, i), fg_tensor_row (same, 0), 4 * sizeof (float));
    memcpy (fg_tensor_row (q1, 0), fg_tensor_row (same, 0), 4 * sizeof (float));
    fg_tensor_row (q1, 0)[0] += 0.5f; /* the 50 duplicates are all at distance 0.25 */
    check_against_naive (same, q1, 5, FG_DISTANCE_L2);
    check_against_naive (same, q1, 20, FG_DISTANCE_L2);
  }
}

static void
test_query_cosine (void)
{
  g_autoptr (FgTensor) ref = random_rows (5, 800, 20, 0, 0);
  g_autoptr (FgTensor) q = random_rows (6, 300, 20, 0, 0);
  g_autoptr (GError) error = NULL;
  g_autoptr (FgNeighborIndex) index = NULL;
  guint32 idx[3];
  float dist[3];
  float a[4] = { 1, 0, 0, 0 }, b[4] = { 0, 5, 0, 0 };

  check_against_naive (ref, q, 5, FG_DISTANCE_COSINE);

  /* scale does not matter; d = 2 (1 − cos); an all-zero row is at distance 1 from unit rows */
  {
    float r[3 * 4] = { 10, 0, 0, 0, /* same direction as a, far away */
                       0.9f, 0.1f, 0, 0, 0, 0, 0, 0 /* zero row */ };
    FgTensor tr = fg_tensor_wrap_2d (r, 3, 4), ta = fg_tensor_wrap_2d (a, 1, 4),
             tb = fg_tensor_wrap_2d (b, 1, 4);
    index = fg_neighbor_index_new (&tr, FG_DISTANCE_COSINE, &error);
    g_assert_no_error (error);
    g_assert_true (fg_neighbor_index_query (index, &ta, 3, idx, dist, &error));
    g_assert_cmpuint (idx[0], ==, 0);
    g_assert_cmpuint (idx[1], ==, 1);
    g_assert_cmpuint (idx[2], ==, 2);
    g_assert_cmpfloat_with_epsilon (dist[0], 0.0, 1e-6);
    g_assert_cmpfloat_with_epsilon (dist[2], 1.0, 1e-6);
    g_assert_true (fg_neighbor_index_query (index, &tb, 3, idx, dist, &error));
    /* b ⟂ row 0: 2 (1 − 0) = 2; zero row: 1; row 1: 2 (1 − 0.1/‖(0.9, 0.1)‖) */
    g_assert_cmpuint (idx[0], ==, 2);
    g_assert_cmpfloat_with_epsilon (dist[0], 1.0, 1e-6);
    g_assert_cmpfloat_with_epsilon (dist[1], 2.0 * (1.0 - 0.1 / sqrt (0.82)), 1e-5);
    g_assert_cmpfloat_with_epsilon (dist[2], 2.0, 1e-6);
  }
}

static void
test_distances (void)
{
  g_autoptr (FgTensor) ref = random_rows (7, 700, 16, 0, 0);
  g_autoptr (FgTensor) q = random_rows (8, 300, 16, 0, 0);
  for (int m = 0; m < 2; m++)
    {
      FgDistance metric = m ? FG_DISTANCE_COSINE : FG_DISTANCE_L2;
      g_autoptr (GError) error = NULL;
      g_autoptr (FgNeighborIndex) index = fg_neighbor_index_new (ref, metric, &error);
      gsize ld = 705;
      g_autofree float *out = g_new (float, 300 * ld);
      g_assert_true (fg_neighbor_index_distances (index, q, out, ld, &error));
      g_assert_no_error (error);
      for (gsize i = 0; i < 300; i += 13)
        for (gsize j = 0; j < 700; j += 7)
          {
            double want = naive_dist (fg_tensor_row (q, i), fg_tensor_row (ref, j), 16, metric);
            g_assert_cmpfloat_with_epsilon (out[i * ld + j], want, 1e-4 * (1 + want));
          }
    }
}

static void
test_threads_reproducible (void)
{
  g_autoptr (FgTensor) ref = random_rows (9, 2100, 24, 4, 11);
  g_autoptr (FgTensor) q = random_rows (10, 1000, 24, 4, 0);
  g_autoptr (FgNeighborIndex) index = fg_neighbor_index_new (ref, FG_DISTANCE_L2, NULL);
  gsize k = 9;
  g_autofree guint32 *i1 = g_new (guint32, 1000 * k), *i2 = g_new (guint32, 1000 * k);
  g_autofree float *d1 = g_new (float, 1000 * k), *d2 = g_new (float, 1000 * k);
  guint saved = fg_get_num_threads ();

  fg_set_num_threads (1);
  g_assert_true (fg_neighbor_index_query (index, q, k, i1, d1, NULL));
  fg_set_num_threads (3);
  g_assert_true (fg_neighbor_index_query (index, q, k, i2, d2, NULL));
  fg_set_num_threads (saved);
  g_assert_cmpmem (i1, 1000 * k * sizeof (guint32), i2, 1000 * k * sizeof (guint32));
  g_assert_cmpmem (d1, 1000 * k * sizeof (float), d2, 1000 * k * sizeof (float));
}

/* The kNN graph of the index's own rows: the same neighbours as querying them, any threads. */
static void
test_query_self (void)
{
  for (int m = 0; m < 2; m++)
    {
      FgDistance metric = m ? FG_DISTANCE_COSINE : FG_DISTANCE_L2;
      g_autoptr (FgTensor) ref = random_rows (13 + m, 700, 6, 4, 9); /* ties and duplicates */
      g_autoptr (FgNeighborIndex) index = fg_neighbor_index_new (ref, metric, NULL);
      const gsize n = 700, k = 7;
      g_autofree guint32 *want = g_new (guint32, n * k), *got = g_new (guint32, n * k);
      g_autofree float *dwant = g_new (float, n * k), *dgot = g_new (float, n * k);
      guint saved = fg_get_num_threads ();
      g_autoptr (GError) error = NULL;

      g_assert_true (fg_neighbor_index_query (index, ref, k, want, dwant, &error));
      for (guint threads = 1; threads <= 2; threads++)
        {
          fg_set_num_threads (threads);
          g_assert_true (fg_neighbor_index_query_self (index, k, got, dgot, &error));
          g_assert_no_error (error);
          g_assert_cmpmem (want, n * k * sizeof (guint32), got, n * k * sizeof (guint32));
          for (gsize i = 0; i < n * k; i++)
            g_assert_cmpfloat_with_epsilon (dgot[i], dwant[i], 1e-5 * (1 + dwant[i]));
        }
      fg_set_num_threads (saved);
      if (metric == FG_DISTANCE_L2)
        check_against_naive (ref, ref, k, metric);
      g_assert_false (fg_neighbor_index_query_self (index, n + 1, got, NULL, &error));
      g_assert_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM);
    }
}

static void
test_errors (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (FgTensor) ref = random_rows (11, 10, 3, 0, 0);
  g_autoptr (FgTensor) wide = random_rows (12, 2, 4, 0, 0);
  g_autoptr (FgNeighborIndex) index = fg_neighbor_index_new (ref, FG_DISTANCE_L2, NULL);
  guint32 idx[22];
  FgDistance dist;
  FgTensor empty = fg_tensor_wrap_2d (NULL, 0, 3);

  g_assert_null (fg_neighbor_index_new (&empty, FG_DISTANCE_L2, &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_DATA);
  g_clear_error (&error);

  g_assert_false (fg_neighbor_index_query (index, ref, 0, idx, NULL, &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM);
  g_clear_error (&error);
  g_assert_false (fg_neighbor_index_query (index, ref, 11, idx, NULL, &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM);
  g_assert_nonnull (strstr (error->message, "k = 11"));
  g_clear_error (&error);
  g_assert_false (fg_neighbor_index_query (index, wide, 1, idx, NULL, &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_DATA);
  g_clear_error (&error);

  fg_tensor_row (wide, 1)[2] = NAN;
  g_assert_null (fg_neighbor_index_new (wide, FG_DISTANCE_L2, &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_DATA);
  g_assert_nonnull (strstr (error->message, "row 1 column 2"));
  g_clear_error (&error);

  g_assert_true (fg_distance_from_string ("cosine", &dist));
  g_assert_cmpint (dist, ==, FG_DISTANCE_COSINE);
  g_assert_true (fg_distance_from_string ("l2", &dist));
  g_assert_cmpint (dist, ==, FG_DISTANCE_L2);
  g_assert_false (fg_distance_from_string ("manhattan", &dist));
  g_assert_cmpstr (fg_distance_to_string (FG_DISTANCE_COSINE), ==, "cosine");
}

static void
test_normalize_rows (void)
{
  float x[2 * 3] = { 3, 4, 0, 0, 0, 0 };
  FgTensor t = fg_tensor_wrap_2d (x, 2, 3);
  fg_normalize_rows (&t);
  g_assert_cmpfloat_with_epsilon (x[0], 0.6, 1e-7);
  g_assert_cmpfloat_with_epsilon (x[1], 0.8, 1e-7);
  g_assert_cmpfloat (x[3], ==, 0.0f);
  g_assert_cmpfloat (x[5], ==, 0.0f);
}

/* The kNN graph against brute force in double, and its smoothing against a dense naive
 * iteration F ← α S F + (1 − α) F0 with S = D^{-1/2} W D^{-1/2}, W = max(A, Aᵀ). */
static void
knn_graph_naive (FgKnnWeight weight)
{
  const gsize n = 40, d = 3, k = 4;
  const guint K = 3, iters = 7;
  const double alpha = 0.8;
  g_autoptr (FgTensor) x = random_rows (11, n, d, 0, 0);
  g_autoptr (GError) error = NULL;
  g_autoptr (FgKnnGraph) g = fg_knn_graph_new (x, k, weight, &error);
  g_autofree double *W = g_new0 (double, n * n), *deg = g_new0 (double, n);
  g_autofree double *sig = g_new0 (double, n);
  double qw[4];
  float qd[4];
  g_autofree double *F = g_new (double, n * K), *Fn = g_new (double, n * K);
  g_autofree float *f0 = g_new (float, n * K), *out = g_new (float, n * K);
  g_autofree guint8 *clamp = g_new0 (guint8, n);
  FgRng rng;
  g_assert_no_error (error);
  g_assert_cmpuint (fg_knn_graph_get_n (g), ==, n);
  g_assert_cmpuint (fg_knn_graph_get_k (g), ==, k);
  for (gsize i = 0; i < n; i++)
    {
      Ref r[64];
      gsize m = 0;
      const guint32 *nb = fg_knn_graph_get_neighbors (g, i);
      for (gsize j = 0; j < n; j++)
        if (j != i)
          {
            r[m].d = naive_dist (fg_tensor_row (x, i), fg_tensor_row (x, j), d, FG_DISTANCE_L2);
            r[m++].i = (guint32) j;
          }
      qsort (r, m, sizeof *r, ref_compare);
      for (gsize j = 0; j < k; j++)
        {
          g_assert_cmpuint (nb[j], ==, r[j].i);
          W[i * n + r[j].i] = W[r[j].i * n + i] = 1.0;
        }
      sig[i] = sqrt (r[k - 1].d);
    }
  if (weight == FG_KNN_WEIGHT_LOCAL)
    for (gsize i = 0; i < n; i++)
      for (gsize j = 0; j < n; j++)
        if (W[i * n + j] > 0)
          W[i * n + j] = exp (-naive_dist (fg_tensor_row (x, i), fg_tensor_row (x, j), d,
                                           FG_DISTANCE_L2)
                              / (sig[i] * sig[j]));
  /* a new row's weights: row 0 seen from outside, its neighbours and distances as given */
  for (gsize j = 0; j < k; j++)
    qd[j] = (float) naive_dist (fg_tensor_row (x, 0),
                                fg_tensor_row (x, fg_knn_graph_get_neighbors (g, 0)[j]), d,
                                FG_DISTANCE_L2);
  fg_knn_graph_query_weights (g, qd, fg_knn_graph_get_neighbors (g, 0), qw);
  for (gsize j = 0; j < k; j++)
    g_assert_cmpfloat_with_epsilon (qw[j], W[fg_knn_graph_get_neighbors (g, 0)[j]], 1e-5);
  for (gsize i = 0; i < n; i++)
    for (gsize j = 0; j < n; j++)
      deg[i] += W[i * n + j];
  fg_rng_init (&rng, 5, 1);
  for (gsize i = 0; i < n * K; i++)
    f0[i] = (float) fg_rng_uniform (&rng);
  clamp[3] = clamp[17] = 1;
  for (gsize i = 0; i < n * K; i++)
    F[i] = f0[i];
  for (guint it = 0; it < iters; it++)
    {
      for (gsize i = 0; i < n; i++)
        for (guint c = 0; c < K; c++)
          {
            double sf = 0.0;
            for (gsize j = 0; j < n; j++)
              sf += W[i * n + j] / sqrt (deg[i] * deg[j]) * F[j * K + c];
            Fn[i * K + c] = clamp[i] ? f0[i * K + c] : alpha * sf + (1 - alpha) * f0[i * K + c];
          }
      memcpy (F, Fn, n * K * sizeof (double));
    }
  fg_knn_graph_smooth (g, f0, clamp, K, alpha, iters, out);
  for (gsize i = 0; i < n; i++)
    {
      double s = 0.0;
      for (guint c = 0; c < K; c++)
        s += F[i * K + c];
      for (guint c = 0; c < K; c++)
        g_assert_cmpfloat_with_epsilon (out[i * K + c], F[i * K + c] / s, 1e-5);
    }
  /* errors */
  g_assert_null (fg_knn_graph_new (x, n, weight, &error));
  g_assert_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM);
}

static void
test_knn_graph_naive (void)
{
  knn_graph_naive (FG_KNN_WEIGHT_UNIT);
  knn_graph_naive (FG_KNN_WEIGHT_LOCAL);
}

/* An exact duplicate of a row is its nearest neighbour; the row itself never is. */
static void
test_knn_graph_duplicates (void)
{
  g_autoptr (FgTensor) x = random_rows (3, 30, 2, 0, 5);
  g_autoptr (GError) error = NULL;
  g_autoptr (FgKnnGraph) g = fg_knn_graph_new (x, 3, FG_KNN_WEIGHT_LOCAL, &error);
  g_assert_no_error (error);
  for (gsize i = 0; i < 30; i++)
    {
      const guint32 *nb = fg_knn_graph_get_neighbors (g, i);
      for (gsize j = 0; j < 3; j++)
        g_assert_cmpuint (nb[j], !=, i);
      if (i >= 5 && i % 7 == 0)
        g_assert_cmpuint (nb[0], ==, i - 5);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/neighbors/query-l2", test_query_l2);
  g_test_add_func ("/neighbors/query-ties-to-smaller-index", test_query_ties);
  g_test_add_func ("/neighbors/query-cosine", test_query_cosine);
  g_test_add_func ("/neighbors/distances", test_distances);
  g_test_add_func ("/neighbors/threads-reproducible", test_threads_reproducible);
  g_test_add_func ("/neighbors/query-self", test_query_self);
  g_test_add_func ("/neighbors/errors", test_errors);
  g_test_add_func ("/neighbors/normalize-rows", test_normalize_rows);
  g_test_add_func ("/knn-graph/naive", test_knn_graph_naive);
  g_test_add_func ("/knn-graph/duplicates", test_knn_graph_duplicates);
  return g_test_run ();
}
