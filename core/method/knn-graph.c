/* SPDX-License-Identifier: MIT */
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
  float *kdist;     /* n × k their squared distances */
  double *scale;    /* n: σ_i, the distance to the k-th neighbour (local weights) */
  FgKnnWeight weight;
  gsize *start;     /* n + 1 CSR offsets of the symmetric graph */
  guint32 *adj;     /* its neighbour lists, sorted */
  double *w;        /* their weights */
  double *dinv;     /* n: 1/√degree (1 for an isolated row) */
};

typedef struct {
  guint32 to;
  double w;
} Edge;

static int
compare_edge (const void *a, const void *b)
{
  const guint32 x = ((const Edge *) a)->to, y = ((const Edge *) b)->to;
  return x < y ? -1 : x > y;
}

/* The weight of a pair at squared distance d2, σ of a row scale[i] (local weights). */
static double
weight_of (FgKnnWeight weight, double d2, double si, double sj)
{
  if (weight == FG_KNN_WEIGHT_UNIT)
    return 1.0;
  if (si * sj <= 0.0)
    return d2 <= 0.0 ? 1.0 : 0.0;
  return exp (-MAX (d2, 0.0) / (si * sj));
}

static double
edge_weight (const FgKnnGraph *g, gsize i, gsize j, double d2)
{
  return weight_of (g->weight, d2, g->scale[i], g->scale[j]);
}

/**
 * fg_knn_graph_new:
 * @x: N×D rows (N ≥ 2), finite
 * @k: neighbours per row, 1 ≤ @k < N
 * @error: return location for an error
 *
 * The k nearest other rows of every row under squared Euclidean distance (ties to the smaller
 * index; an exact duplicate of a row counts as a neighbour, the row itself does not), and the
 * symmetric graph W = max(A, Aᵀ) with its normalisation D^{-1/2} W D^{-1/2}.  Edge weights:
 * 1 (FG_KNN_WEIGHT_UNIT), or exp(−‖x_i − x_j‖² / (σ_i σ_j)) with σ_i the distance of row i
 * to its k-th neighbour (FG_KNN_WEIGHT_LOCAL, Zelnik-Manor and Perona's local scaling).
 *
 * Returns: (transfer full): the graph, or %NULL with an error.
 */
FgKnnGraph *
fg_knn_graph_new (const FgTensor *x, gsize k, FgKnnWeight weight, GError **error)
{
  g_autoptr (FgNeighborIndex) index = NULL;
  g_autofree guint32 *idx = NULL;
  g_autofree float *dist = NULL;
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
  dist = g_new (float, n * (k + 1));
  if (!fg_neighbor_index_query_self (index, k + 1, idx, dist, error))
    return NULL;

  g = g_new0 (FgKnnGraph, 1);
  g->n = n;
  g->k = k;
  g->weight = weight;
  g->knn = g_new (guint32, n * k);
  g->kdist = g_new (float, n * k);
  g->scale = g_new (double, n);
  for (gsize i = 0; i < n; i++)
    {
      gsize m = 0;
      /* the row itself is among the k + 1 (at distance 0), unless k + 1 duplicates of it come
       * first: then drop the last one */
      for (gsize j = 0; j <= k && m < k; j++)
        if (idx[i * (k + 1) + j] != i)
          {
            g->kdist[i * k + m] = dist[i * (k + 1) + j];
            g->knn[i * k + m++] = idx[i * (k + 1) + j];
          }
      g->scale[i] = sqrt (MAX ((double) g->kdist[i * k + k - 1], 0.0));
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
  /* each directed edge both ways, as (neighbour, weight) pairs sorted by neighbour, then
   * duplicates merged (the same pair has the same weight both ways) */
  {
    g_autofree Edge *edges = g_new (Edge, g->start[n]);
    gsize w = 0;
    memset (deg, 0, n * sizeof *deg);
    for (gsize i = 0; i < n; i++)
      for (gsize j = 0; j < k; j++)
        {
          const guint32 t = g->knn[i * k + j];
          const double e = edge_weight (g, i, t, g->kdist[i * k + j]);
          edges[g->start[i] + deg[i]++] = (Edge){ t, e };
          edges[g->start[t] + deg[t]++] = (Edge){ (guint32) i, e };
        }
    g->adj = g_new (guint32, g->start[n]);
    g->w = g_new (double, g->start[n]);
    for (gsize i = 0, prev = 0; i < n; i++)
      {
        Edge *row = edges + prev;
        const gsize len = g->start[i + 1] - prev;
        gsize m = 0;
        qsort (row, len, sizeof *row, compare_edge);
        prev = g->start[i + 1];
        g->start[i] = w;
        for (gsize j = 0; j < len; j++)
          if (m == 0 || row[j].to != g->adj[w + m - 1])
            {
              g->adj[w + m] = row[j].to;
              g->w[w + m] = row[j].w;
              m++;
            }
        w += m;
      }
    g->start[n] = w;
  }
  g->dinv = g_new (double, n);
  for (gsize i = 0; i < n; i++)
    {
      double d = 0.0;
      for (gsize e = g->start[i]; e < g->start[i + 1]; e++)
        d += g->w[e];
      g->dinv[i] = d > 0 ? 1.0 / sqrt (d) : 1.0;
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
  g_free (graph->kdist);
  g_free (graph->scale);
  g_free (graph->start);
  g_free (graph->adj);
  g_free (graph->w);
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
 * fg_knn_graph_query_weights:
 * @graph: a graph
 * @d2: (array): a new row's squared distances to its k nearest graph rows, nearest first
 * @nb: (array): those rows
 * @w_out: (array): their k edge weights (1 for unit weights; local weights with σ of the new
 *   row its distance to the k-th of them)
 */
void
fg_knn_graph_query_weights (const FgKnnGraph *graph, const float *d2, const guint32 *nb,
                            double *w_out)
{
  double s;
  g_return_if_fail (graph != NULL && d2 != NULL && nb != NULL && w_out != NULL);
  s = sqrt (MAX ((double) d2[graph->k - 1], 0.0));
  for (gsize j = 0; j < graph->k; j++)
    w_out[j] = weight_of (graph->weight, d2[j], s, graph->scale[nb[j]]);
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
              const double w = graph->w[e] * graph->dinv[j];
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
