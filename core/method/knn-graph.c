/* flowgmm — a symmetric k-nearest-neighbour graph and smoothing of per-row distributions over
 * it (label spreading with a prior, Zhou et al. 2004; the Laplacian-regularised E-step of
 * LapGMM, He et al. 2011).  See neighbors.h.
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include <flowgmm/neighbors.h>

struct _FgKnnGraph {
  gsize n, k;
  guint32 *knn;     /* n × k directed neighbours, nearest first, never the row itself */
  gsize *start;     /* n + 1 CSR offsets of the symmetric graph */
  guint32 *adj;     /* its neighbour lists, sorted */
  double *dinv;     /* n: 1/√degree (1 for an isolated row) */
};

static int
compare_u32 (const void *a, const void *b)
{
  const guint32 x = *(const guint32 *) a, y = *(const guint32 *) b;
  return x < y ? -1 : x > y;
}

/**
 * fg_knn_graph_new:
 * @x: N×D rows (N ≥ 2), finite
 * @k: neighbours per row, 1 ≤ @k < N
 * @error: return location for an error
 *
 * The k nearest other rows of every row under squared Euclidean distance (ties to the smaller
 * index; an exact duplicate of a row counts as a neighbour, the row itself does not), and the
 * symmetric graph W = max(A, Aᵀ) of unit weights with its normalisation D^{-1/2} W D^{-1/2}.
 *
 * Returns: (transfer full): the graph, or %NULL with an error.
 */
FgKnnGraph *
fg_knn_graph_new (const FgTensor *x, gsize k, GError **error)
{
  g_autoptr (FgNeighborIndex) index = NULL;
  g_autofree guint32 *idx = NULL;
  g_autofree gsize *deg = NULL;
  FgKnnGraph *g;
  gsize n;

  g_return_val_if_fail (x != NULL, NULL);
  n = fg_tensor_rows (x);
  if (n < 2 || k < 1 || k >= n)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                   "kNN graph: k = %" G_GSIZE_FORMAT " needs 1 ≤ k < N = %" G_GSIZE_FORMAT, k, n);
      return NULL;
    }
  index = fg_neighbor_index_new (x, FG_DISTANCE_L2, error);
  if (index == NULL)
    return NULL;
  idx = g_new (guint32, n * (k + 1));
  if (!fg_neighbor_index_query_self (index, k + 1, idx, NULL, error))
    return NULL;

  g = g_new0 (FgKnnGraph, 1);
  g->n = n;
  g->k = k;
  g->knn = g_new (guint32, n * k);
  for (gsize i = 0; i < n; i++)
    {
      gsize m = 0;
      /* the row itself is among the k + 1 (at distance 0), unless k + 1 duplicates of it come
       * first: then drop the last one */
      for (gsize j = 0; j <= k && m < k; j++)
        if (idx[i * (k + 1) + j] != i)
          g->knn[i * k + m++] = idx[i * (k + 1) + j];
    }

  /* symmetric adjacency: every directed edge both ways, duplicates removed */
  deg = g_new0 (gsize, n);
  for (gsize i = 0; i < n; i++)
    for (gsize j = 0; j < k; j++)
      {
        deg[i]++;
        deg[g->knn[i * k + j]]++;
      }
  g->start = g_new (gsize, n + 1);
  g->start[0] = 0;
  for (gsize i = 0; i < n; i++)
    g->start[i + 1] = g->start[i] + deg[i];
  g->adj = g_new (guint32, g->start[n]);
  memset (deg, 0, n * sizeof *deg);
  for (gsize i = 0; i < n; i++)
    for (gsize j = 0; j < k; j++)
      {
        const guint32 t = g->knn[i * k + j];
        g->adj[g->start[i] + deg[i]++] = t;
        g->adj[g->start[t] + deg[t]++] = (guint32) i;
      }
  {
    gsize w = 0;
    gsize prev_start = 0;
    for (gsize i = 0; i < n; i++)
      {
        guint32 *row = g->adj + prev_start;
        const gsize len = g->start[i + 1] - prev_start;
        gsize m = 0;
        qsort (row, len, sizeof *row, compare_u32);
        prev_start = g->start[i + 1];
        g->start[i] = w;
        for (gsize j = 0; j < len; j++)
          if (m == 0 || row[j] != g->adj[w + m - 1])
            {
              g->adj[w + m] = row[j];
              m++;
            }
        w += m;
      }
    g->start[n] = w;
  }
  g->dinv = g_new (double, n);
  for (gsize i = 0; i < n; i++)
    {
      const gsize d = g->start[i + 1] - g->start[i];
      g->dinv[i] = d > 0 ? 1.0 / sqrt ((double) d) : 1.0;
    }
  return g;
}

/**
 * fg_knn_graph_free:
 * @graph: (nullable): a graph
 */
void
fg_knn_graph_free (FgKnnGraph *graph)
{
  if (graph == NULL)
    return;
  g_free (graph->knn);
  g_free (graph->start);
  g_free (graph->adj);
  g_free (graph->dinv);
  g_free (graph);
}

/**
 * fg_knn_graph_get_n:
 * @graph: a graph
 *
 * Returns: its number of rows.
 */
gsize
fg_knn_graph_get_n (const FgKnnGraph *graph)
{
  g_return_val_if_fail (graph != NULL, 0);
  return graph->n;
}

/**
 * fg_knn_graph_get_k:
 * @graph: a graph
 *
 * Returns: the k it was built with.
 */
gsize
fg_knn_graph_get_k (const FgKnnGraph *graph)
{
  g_return_val_if_fail (graph != NULL, 0);
  return graph->k;
}

/**
 * fg_knn_graph_get_neighbors:
 * @graph: a graph
 * @i: a row
 *
 * Returns: (array): the k nearest other rows of row @i, nearest first.
 */
const guint32 *
fg_knn_graph_get_neighbors (const FgKnnGraph *graph, gsize i)
{
  g_return_val_if_fail (graph != NULL && i < graph->n, NULL);
  return graph->knn + i * graph->k;
}

/**
 * fg_knn_graph_smooth:
 * @graph: a graph over N rows
 * @f0: (array): N × @K prior rows (e.g. a model's class probabilities; one-hot for labeled rows)
 * @clamp: (array) (nullable): N flags: rows kept at their prior after every iteration
 * @K: columns
 * @alpha: 0 ≤ α < 1, the weight of the neighbours
 * @iterations: products with S
 * @f_out: (array): N × @K result, each row normalised to sum 1 (a row that sums to 0 stays 0)
 *
 * F ← α S F + (1 − α) F0 from F = F0, @iterations times, S = D^{-1/2} W D^{-1/2} of the
 * symmetric graph, clamped rows reset to F0 after each product; accumulated in double.
 */
void
fg_knn_graph_smooth (const FgKnnGraph *graph, const float *f0, const guint8 *clamp, guint K,
                     double alpha, guint iterations, float *f_out)
{
  g_autofree double *cur = NULL, *next = NULL;
  gsize n;
  g_return_if_fail (graph != NULL && f0 != NULL && f_out != NULL && K > 0);
  n = graph->n;
  cur = g_new (double, n * K);
  next = g_new (double, n * K);
  for (gsize i = 0; i < n * K; i++)
    cur[i] = f0[i];
  for (guint it = 0; it < iterations; it++)
    {
      for (gsize i = 0; i < n; i++)
        {
          double *o = next + i * K;
          const float *p = f0 + i * K;
          if (clamp != NULL && clamp[i])
            {
              for (guint c = 0; c < K; c++)
                o[c] = p[c];
              continue;
            }
          for (guint c = 0; c < K; c++)
            o[c] = 0.0;
          for (gsize e = graph->start[i]; e < graph->start[i + 1]; e++)
            {
              const guint32 j = graph->adj[e];
              const double w = graph->dinv[j];
              const double *fj = cur + (gsize) j * K;
              for (guint c = 0; c < K; c++)
                o[c] += w * fj[c];
            }
          for (guint c = 0; c < K; c++)
            o[c] = alpha * graph->dinv[i] * o[c] + (1.0 - alpha) * p[c];
        }
      double *t = cur;
      cur = next;
      next = t;
    }
  for (gsize i = 0; i < n; i++)
    {
      double s = 0.0;
      for (guint c = 0; c < K; c++)
        s += cur[i * K + c];
      for (guint c = 0; c < K; c++)
        f_out[i * K + c] = s > 0.0 ? (float) (cur[i * K + c] / s) : 0.0f;
    }
}
