/* SPDX-License-Identifier: MIT */
/* flowgmm — k-nearest-neighbour classifier on the labeled points (baseline "knn").
 *
 * Semantics follow scikit-learn's KNeighborsClassifier (brute force): the k nearest labeled
 * points by Euclidean distance (metric = l2) or by Euclidean distance of unit-normalised rows
 * (metric = cosine, the paper's "sin²"); a uniform or 1/distance weighted vote; ties in the vote
 * go to the smallest label (scipy's mode), ties in distance to the earlier labeled point.  The
 * neighbour search is the core's (core/method/neighbors.c): blocked sgemm, heap selection, exact
 * re-measure of the survivors, threads over query blocks.
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include <flowgmm/flowgmm.h>

static const FgParamSpec knn_params[] = {
  FG_PARAM_SPEC_INT ("k", "5", 1, 1000,
                     "neighbours that vote (the paper sweeps 1..20 on validation); at most the "
                     "number of labeled points"),
  FG_PARAM_SPEC_CHOICE ("metric", "cosine", "l2|cosine",
                        "l2: Euclidean; cosine: Euclidean on unit-normalised inputs (sin², the "
                        "paper's choice)"),
  FG_PARAM_SPEC_CHOICE ("weights", "uniform", "uniform|distance",
                        "vote weight of a neighbour: 1, or 1/distance (an exact match takes the "
                        "whole vote), as scikit-learn's weights="),
  FG_PARAM_SPEC_END,
};

typedef struct {
  gsize k;
  FgDistance metric;
  gboolean by_distance;
  guint K;
  gsize dim;
  FgNeighborIndex *index;
  gint32 *y;
} Knn;

static gpointer
knn_create (const FgParams *params, FgRng *rng, GError **error)
{
  Knn *self = g_new0 (Knn, 1);
  self->k = (gsize) fg_params_get_int (params, "k");
  if (!fg_distance_from_string (fg_params_get_string (params, "metric"), &self->metric))
    g_assert_not_reached (); /* the host validated the choice */
  self->by_distance = g_strcmp0 (fg_params_get_string (params, "weights"), "distance") == 0;
  return self;
}

static gboolean
knn_fit (gpointer data, const FgSplit *split, GError **error)
{
  Knn *self = data;
  gsize n = split->labeled.n;

  g_clear_pointer (&self->index, fg_neighbor_index_free);
  g_clear_pointer (&self->y, g_free);
  if (n == 0 || split->labeled.y == NULL)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA, "knn: the split has no labeled points");
      return FALSE;
    }
  if (self->k > n)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                   "knn: k = %" G_GSIZE_FORMAT " exceeds the %" G_GSIZE_FORMAT
                   " labeled points", self->k, n);
      return FALSE;
    }
  for (gsize i = 0; i < n; i++)
    if (split->labeled.y[i] < 0 || (guint) split->labeled.y[i] >= split->n_classes)
      {
        g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                     "knn: labeled point %" G_GSIZE_FORMAT " has label %d outside [0, %u)", i,
                     split->labeled.y[i], split->n_classes);
        return FALSE;
      }
  self->index = fg_neighbor_index_new (&split->labeled.x, self->metric, error);
  if (self->index == NULL)
    {
      g_prefix_error (error, "knn: ");
      return FALSE;
    }
  self->y = g_new (gint32, n);
  memcpy (self->y, split->labeled.y, n * sizeof (gint32));
  self->K = split->n_classes;
  self->dim = split->dim;
  fg_split_report_progress (split, 1.0, "labeled points indexed");
  return TRUE;
}

static gboolean
knn_predict (gpointer data, const FgTensor *x, gint32 *labels_out, float *proba_out,
             GError **error)
{
  Knn *self = data;
  gsize rows = fg_tensor_rows (x), k = self->k;
  g_autofree guint32 *idx = NULL;
  g_autofree float *dist = NULL;
  g_autofree double *votes = NULL;

  if (self->index == NULL)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "knn: predict before fit");
      return FALSE;
    }
  if (rows == 0)
    return TRUE;
  idx = g_new (guint32, rows * k);
  if (self->by_distance)
    dist = g_new (float, rows * k);
  if (!fg_neighbor_index_query (self->index, x, k, idx, dist, error))
    {
      g_prefix_error (error, "knn: ");
      return FALSE;
    }
  votes = g_new (double, self->K);
  for (gsize i = 0; i < rows; i++)
    {
      const guint32 *nb = idx + i * k;
      double total = 0.0;
      gboolean exact = FALSE;
      guint best = 0;

      memset (votes, 0, self->K * sizeof (double));
      if (self->by_distance)
        for (gsize j = 0; j < k; j++)
          exact |= dist[i * k + j] == 0.0f;
      for (gsize j = 0; j < k; j++)
        {
          double w = 1.0;
          if (self->by_distance)
            {
              /* scikit-learn: weight 1/d on the Euclidean (not squared) distance; when some
               * neighbour is at distance 0, those take weight 1 and the others 0 */
              double d = sqrt ((double) dist[i * k + j]);
              w = exact ? (d == 0.0 ? 1.0 : 0.0) : 1.0 / d;
            }
          votes[self->y[nb[j]]] += w;
          total += w;
        }
      for (guint c = 1; c < self->K; c++)
        if (votes[c] > votes[best]) /* ties: the smallest label */
          best = c;
      labels_out[i] = (gint32) best;
      if (proba_out != NULL)
        for (guint c = 0; c < self->K; c++)
          proba_out[i * self->K + c] = (float) (votes[c] / total);
    }
  return TRUE;
}

static void
knn_destroy (gpointer data)
{
  Knn *self = data;
  if (self == NULL)
    return;
  fg_neighbor_index_free (self->index);
  g_free (self->y);
  g_free (self);
}

static const FgBaselineVTable knn_vtable = {
  .struct_size = sizeof (FgBaselineVTable),
  .create = knn_create,
  .fit = knn_fit,
  .predict = knn_predict,
  .destroy = knn_destroy,
};

static const FgComponent knn_components[] = {
  { FG_KIND_BASELINE, "knn", "k nearest labeled neighbours (L2 or cosine), majority vote",
    knn_params, &knn_vtable, { 0 } },
  { 0 },
};

static const FgPluginInfo knn_info = {
  .abi_version = FG_PLUGIN_ABI_VERSION,
  .struct_size = sizeof (FgPluginInfo),
  .name = "knn",
  .version = PACKAGE_VERSION,
  .license = "MIT",
  .description = "k-nearest-neighbour baseline on the labeled points (scikit-learn semantics)",
  .components = knn_components,
};

FG_PLUGIN_DEFINE (knn_info)
