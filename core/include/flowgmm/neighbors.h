/* SPDX-License-Identifier: MIT */
/* flowgmm — exact nearest neighbours and pairwise distances on the numeric core.
 *
 * Distances are computed block by block with cblas_sgemm (‖q‖² + ‖r‖² − 2 q·r), the k nearest
 * are selected per query row with a bounded heap, and the survivors whose float32 values are
 * closer than their rounding bound are re-measured in double precision.  So the k neighbours
 * and their order are the exact ones for the float inputs, ties go to the smaller reference
 * index, and results do not depend on the number of threads.  The distances returned are exact
 * (double, rounded to float) where near-ties had to be settled, single precision (about 1e-6 of
 * ‖q‖² + ‖r‖²) elsewhere.
 *
 * Work is spread over blocks of query rows on the core's worker pool (fg_get_num_threads ()
 * threads, see fg_tape_parallel_run ()), each block calling single-threaded sgemm; OpenBLAS's
 * own pool is held at one thread while the core's exists.
 */
#pragma once

#include <glib.h>
#include <flowgmm/error.h>
#include <flowgmm/tensor.h>

G_BEGIN_DECLS

typedef enum {
  FG_DISTANCE_L2 = 0,     /* squared Euclidean distance ‖x − y‖² */
  FG_DISTANCE_COSINE = 1, /* ‖x̂ − ŷ‖² = 2 (1 − cos(x, y)) on rows scaled to unit norm ("sin²"
                           * up to the factor 2); an all-zero row stays zero */
} FgDistance;

/* "l2" or "cosine". */
FG_API gboolean    fg_distance_from_string (const char *name, FgDistance *distance);
FG_API const char *fg_distance_to_string (FgDistance distance);

/* Scale every row of `x` to unit Euclidean norm (norm accumulated in double); all-zero rows are
 * left as they are, as scikit-learn's normalize () does. */
FG_API void fg_normalize_rows (FgTensor *x);

/* ---- Index over reference rows --------------------------------------------------------------- */
typedef struct _FgNeighborIndex FgNeighborIndex;

/* An index over the rows of `ref` (copied; scaled to unit norm for FG_DISTANCE_COSINE).  `ref`
 * must be a non-empty matrix of finite values (N×D, or N×C×H×W seen as N rows). */
FG_API FgNeighborIndex *fg_neighbor_index_new (const FgTensor *ref, FgDistance distance,
                                               GError **error);
FG_API void             fg_neighbor_index_free (FgNeighborIndex *index);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (FgNeighborIndex, fg_neighbor_index_free)

FG_API gsize            fg_neighbor_index_get_n (const FgNeighborIndex *index);
FG_API gsize            fg_neighbor_index_get_dim (const FgNeighborIndex *index);
FG_API FgDistance       fg_neighbor_index_get_distance (const FgNeighborIndex *index);
/* The stored reference rows (unit-normalised for COSINE), N×D, contiguous. */
FG_API const FgTensor  *fg_neighbor_index_get_points (const FgNeighborIndex *index);

/* For each row of `query`, the `k` nearest reference rows (1 ≤ k ≤ N) in increasing distance,
 * ties towards the smaller index: indices into idx_out (rows × k) and, when dist_out is not
 * NULL, their distances (see FgDistance) into dist_out (rows × k).  Errors: k out of range, a
 * query of another width (FG_ERROR_INVALID_PARAM / FG_ERROR_DATA). */
FG_API gboolean fg_neighbor_index_query (const FgNeighborIndex *index, const FgTensor *query,
                                         gsize k, guint32 *idx_out, float *dist_out,
                                         GError **error);

/* The k nearest reference rows of every reference row, the row itself included: the neighbours
 * fg_neighbor_index_query () finds for the index's own rows (in the same exact order), with each
 * pair's product computed once, about half the work (a kNN graph).  idx_out (and dist_out when
 * not NULL) hold N × k entries. */
FG_API gboolean fg_neighbor_index_query_self (const FgNeighborIndex *index, gsize k,
                                              guint32 *idx_out, float *dist_out, GError **error);

/* The full distance matrix of `query` to every reference row, rows × N, into `out` with leading
 * dimension ld_out ≥ N (single precision from sgemm, clamped at 0; the distance of a row to an
 * identical row may be a rounding error away from 0). */
FG_API gboolean fg_neighbor_index_distances (const FgNeighborIndex *index, const FgTensor *query,
                                             float *out, gsize ld_out, GError **error);

/* ---- A symmetric kNN graph and smoothing over it (knn-graph.c) ------------------------------ */
typedef struct _FgKnnGraph FgKnnGraph;

typedef enum {
  FG_KNN_WEIGHT_UNIT = 0,  /* every edge weighs 1 */
  FG_KNN_WEIGHT_LOCAL = 1, /* exp(−‖x_i − x_j‖² / (σ_i σ_j)), σ_i the distance of row i to its
                            * k-th neighbour (local scaling, Zelnik-Manor and Perona 2004) */
} FgKnnWeight;

/* The k nearest other rows of every row of x (squared Euclidean; ties to the smaller index; a
 * duplicate of a row counts, the row itself does not), and the symmetric graph W = max(A, Aᵀ)
 * with `weight`'s edge weights.  1 ≤ k < N. */
FG_API FgKnnGraph    *fg_knn_graph_new (const FgTensor *x, gsize k, FgKnnWeight weight,
                                        GError **error);
FG_API void           fg_knn_graph_free (FgKnnGraph *graph);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (FgKnnGraph, fg_knn_graph_free)
FG_API gsize          fg_knn_graph_get_n (const FgKnnGraph *graph);
FG_API gsize          fg_knn_graph_get_k (const FgKnnGraph *graph);
/* The k nearest other rows of row i, nearest first. */
FG_API const guint32 *fg_knn_graph_get_neighbors (const FgKnnGraph *graph, gsize i);
/* A new row's edge weights to its k nearest graph rows nb (squared distances d2, nearest
 * first) into w_out (k values), its σ the distance to the k-th of them. */
FG_API void           fg_knn_graph_query_weights (const FgKnnGraph *graph, const float *d2,
                                                  const guint32 *nb, double *w_out);
/* F ← α S F + (1 − α) F0 from F = F0, `iterations` times, S = D^{-1/2} W D^{-1/2}; rows with
 * clamp[i] set stay at F0; then every row of f_out (N × K) normalised to sum 1 (a zero row
 * stays zero).  f0 and f_out are N × K; clamp may be NULL. */
FG_API void           fg_knn_graph_smooth (const FgKnnGraph *graph, const float *f0,
                                           const guint8 *clamp, guint K, double alpha,
                                           guint iterations, float *f_out);

G_END_DECLS
