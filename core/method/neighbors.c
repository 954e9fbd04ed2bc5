/* SPDX-License-Identifier: MIT */
/* flowgmm — exact nearest neighbours: blocked sgemm distances, heap selection, double refinement.
 *
 * One query block (QUERY_BLOCK rows) is one block of work on the core's pool.  Inside a block the
 * reference rows are visited in blocks of REF_BLOCK: G = −2 Q Rᵀ by single-threaded sgemm (a
 * QUERY_BLOCK × REF_BLOCK tile, 1 MiB, stays in L2), then ‖r‖² + G (the query's own norm is the
 * same for every candidate and is left out) goes through a bounded max-heap per query row.  The
 * k + margin survivors are sorted; runs of them closer than the float32 rounding bound are
 * re-measured in double and sorted by (distance, index) (finish_row): cancellation in the
 * expansion can reorder near-ties, the exact re-measure cannot.  The self query (a kNN graph)
 * visits only the upper triangle of tiles.
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include <cblas.h>

#include <flowgmm/parallel.h>
#include <flowgmm/neighbors.h>

#include "numeric/numeric-private.h"

/* The distance loops need the ordinary vectorizer cost model (doc/performance.md, "Compiler
 * notes"). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize ("vect-cost-model=dynamic")
#endif

#define QUERY_BLOCK 256
/* fg_neighbor_index_distances () writes whole rows straight to the caller's matrix: larger
 * blocks repack the reference rows (sgemm's B) fewer times. */
#define DIST_BLOCK 1024
#define REF_BLOCK 1024

struct _FgNeighborIndex {
  FgDistance distance;
  FgTensor  *points; /* N×D, contiguous, unit rows for COSINE */
  float     *sqnorm; /* N squared norms of the stored rows (from double sums) */
  double    *norm;   /* N norms */
  double     max_norm;
};

/* ---- small helpers ------------------------------------------------------------------------- */

/**
 * fg_distance_from_string:
 * @name: "l2" or "cosine"
 * @distance: (out): the distance
 *
 * Returns: %FALSE for any other name.
 */
gboolean
fg_distance_from_string (const char *name, FgDistance *distance)
{
  g_return_val_if_fail (distance != NULL, FALSE);
  if (g_strcmp0 (name, "l2") == 0)
    *distance = FG_DISTANCE_L2;
  else if (g_strcmp0 (name, "cosine") == 0)
    *distance = FG_DISTANCE_COSINE;
  else
    return FALSE;
  return TRUE;
}

/**
 * fg_distance_to_string:
 * @distance: a distance
 *
 * Returns: "l2" or "cosine".
 */
const char *
fg_distance_to_string (FgDistance distance)
{
  return distance == FG_DISTANCE_COSINE ? "cosine" : "l2";
}

static double
row_sqnorm (const float *x, gsize d)
{
  double s = 0.0;
  for (gsize j = 0; j < d; j++)
    s += (double) x[j] * x[j];
  return s;
}

static void
normalize_row (float *x, gsize d)
{
  double s = row_sqnorm (x, d);
  if (s > 0.0)
    {
      double inv = 1.0 / sqrt (s);
      for (gsize j = 0; j < d; j++)
        x[j] = (float) (x[j] * inv);
    }
}

/**
 * fg_normalize_rows:
 * @x: a matrix (or a batch of images seen as rows), modified in place
 *
 * Scales every row to unit Euclidean norm; all-zero rows stay zero.
 */
void
fg_normalize_rows (FgTensor *x)
{
  g_return_if_fail (x != NULL);
  gsize d = fg_tensor_cols (x);
  for (gsize i = 0; i < fg_tensor_rows (x); i++)
    normalize_row (fg_tensor_row (x, i), d);
}

/* ---- blocks on the core's pool --------------------------------------------------------------- */

/* `task` < the number of tasks run_blocks () returned: an index for per-task scratch. */
typedef void (*BlockFunc) (gsize block, guint task, gpointer data);

typedef struct {
  BlockFunc func;
  gpointer data;
  gint n_blocks;
  gint next;
} BlockJob;

/* One pool task: take blocks in order until none is left (a slow or shared vCPU takes fewer).
 * Each block writes only its own outputs, so the result does not depend on who ran it. */
static void
block_task (gpointer data, guint task, guint n_tasks)
{
  BlockJob *job = data;
  for (;;)
    {
      gint b = g_atomic_int_add (&job->next, 1);
      if (b >= job->n_blocks)
        break;
      job->func ((gsize) b, task, job->data);
    }
}

/* How many tasks run_blocks () will use for n_blocks blocks of ns_per_block each. */
static guint
blocks_tasks (gsize n_blocks, double ns_per_block)
{
  gsize t = MIN ((gsize) _fg_pool_tasks (ns_per_block * (double) n_blocks), n_blocks);
  return (guint) MAX (t, (gsize) 1);
}

/* Run func on blocks 0 .. n_blocks-1 on `tasks` tasks of the core's worker pool (from
 * blocks_tasks ()). */
static void
run_blocks (gsize n_blocks, guint tasks, BlockFunc func, gpointer data)
{
  BlockJob job = { func, data, 0, 0 };
  g_return_if_fail (n_blocks < G_MAXINT);
  if (n_blocks == 0)
    return;
  job.n_blocks = (gint) n_blocks;
  _fg_pool_run (MAX (tasks, 1u), block_task, &job);
}

/* ---- index ----------------------------------------------------------------------------------- */

/**
 * fg_neighbor_index_new:
 * @ref: reference rows (copied)
 * @distance: the distance
 * @error: return location for an error
 *
 * Returns: (transfer full) (nullable): the index, or %NULL with %FG_ERROR_DATA for an empty or
 * non-finite @ref.
 */
FgNeighborIndex *
fg_neighbor_index_new (const FgTensor *ref, FgDistance distance, GError **error)
{
  FgNeighborIndex *index;
  gsize n, d, bad;

  g_return_val_if_fail (ref != NULL, NULL);
  n = fg_tensor_rows (ref);
  d = fg_tensor_cols (ref);
  if (n == 0 || d == 0)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                   "neighbour index: no reference points (%" G_GSIZE_FORMAT "×%" G_GSIZE_FORMAT
                   ")", n, d);
      return NULL;
    }
  if (n > G_MAXUINT32)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_UNSUPPORTED,
                   "neighbour index: %" G_GSIZE_FORMAT " reference points exceed 2³²", n);
      return NULL;
    }
  if (!fg_tensor_all_finite (ref, &bad))
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                   "neighbour index: reference row %" G_GSIZE_FORMAT " column %" G_GSIZE_FORMAT
                   " is not finite", bad / d, bad % d);
      return NULL;
    }
  index = g_new0 (FgNeighborIndex, 1);
  index->distance = distance;
  index->points = fg_tensor_new_2d (n, d);
  for (gsize i = 0; i < n; i++)
    memcpy (fg_tensor_row (index->points, i), fg_tensor_row (ref, i), d * sizeof (float));
  if (distance == FG_DISTANCE_COSINE)
    fg_normalize_rows (index->points);
  index->sqnorm = g_new (float, n);
  index->norm = g_new (double, n);
  for (gsize i = 0; i < n; i++)
    {
      double s2 = row_sqnorm (fg_tensor_row (index->points, i), d);
      index->sqnorm[i] = (float) s2;
      index->norm[i] = sqrt (s2);
      index->max_norm = MAX (index->max_norm, index->norm[i]);
    }
  return index;
}

/**
 * fg_neighbor_index_free:
 * @index: (nullable): an index
 */
void
fg_neighbor_index_free (FgNeighborIndex *index)
{
  if (index == NULL)
    return;
  fg_tensor_free (index->points);
  g_free (index->sqnorm);
  g_free (index->norm);
  g_free (index);
}

/**
 * fg_neighbor_index_get_n:
 * @index: an index
 *
 * Returns: the number of reference rows.
 */
gsize
fg_neighbor_index_get_n (const FgNeighborIndex *index)
{
  g_return_val_if_fail (index != NULL, 0);
  return fg_tensor_rows (index->points);
}

/**
 * fg_neighbor_index_get_dim:
 * @index: an index
 *
 * Returns: the width of a row.
 */
gsize
fg_neighbor_index_get_dim (const FgNeighborIndex *index)
{
  g_return_val_if_fail (index != NULL, 0);
  return fg_tensor_cols (index->points);
}

/**
 * fg_neighbor_index_get_distance:
 * @index: an index
 *
 * Returns: the distance it was built for.
 */
FgDistance
fg_neighbor_index_get_distance (const FgNeighborIndex *index)
{
  g_return_val_if_fail (index != NULL, FG_DISTANCE_L2);
  return index->distance;
}

/**
 * fg_neighbor_index_get_points:
 * @index: an index
 *
 * Returns: (transfer none): the stored rows (unit-normalised for %FG_DISTANCE_COSINE).
 */
const FgTensor *
fg_neighbor_index_get_points (const FgNeighborIndex *index)
{
  g_return_val_if_fail (index != NULL, NULL);
  return index->points;
}

/* ---- query blocks ---------------------------------------------------------------------------- */

typedef struct {
  const FgNeighborIndex *index;
  const FgTensor *query;
  gsize k, kk;         /* wanted, kept as candidates */
  guint32 *idx_out;
  float *dist_out;     /* query: may be NULL */
  float *full_out;     /* distances: rows × ld_out */
  gsize ld_out;
} QueryJob;

/* The query rows of block `b` as a matrix for sgemm: a view of the caller's rows, or for COSINE
 * a unit-normalised copy in `buf`.  Also their squared norms (double). */
static const float *
block_rows (const QueryJob *job, gsize r0, gsize rows, float *buf, double *qnorm, gsize *ld)
{
  const FgTensor *q = job->query;
  gsize d = fg_tensor_cols (q);
  if (job->index->distance == FG_DISTANCE_COSINE)
    {
      for (gsize i = 0; i < rows; i++)
        {
          float *dst = buf + i * d;
          memcpy (dst, fg_tensor_row (q, r0 + i), d * sizeof (float));
          normalize_row (dst, d);
          qnorm[i] = row_sqnorm (dst, d);
        }
      *ld = d;
      return buf;
    }
  for (gsize i = 0; i < rows; i++)
    qnorm[i] = row_sqnorm (fg_tensor_row (q, r0 + i), d);
  *ld = MAX (q->ld, d);
  return fg_tensor_row (q, r0);
}

/* Max-heap of (value, index) ordered lexicographically: the root is the worst kept candidate. */
typedef struct {
  float v;
  guint32 i;
} Cand;

static inline gboolean
cand_less (Cand a, Cand b)
{
  return a.v < b.v || (a.v == b.v && a.i < b.i);
}

static void
heap_sift_down (Cand *h, gsize n, gsize pos)
{
  Cand x = h[pos];
  for (;;)
    {
      gsize c = 2 * pos + 1;
      if (c >= n)
        break;
      if (c + 1 < n && cand_less (h[c], h[c + 1]))
        c++;
      if (!cand_less (x, h[c]))
        break;
      h[pos] = h[c];
      pos = c;
    }
  h[pos] = x;
}

static void
heap_sift_up (Cand *h, gsize pos)
{
  Cand x = h[pos];
  while (pos > 0)
    {
      gsize p = (pos - 1) / 2;
      if (!cand_less (h[p], x))
        break;
      h[pos] = h[p];
      pos = p;
    }
  h[pos] = x;
}

/* Offer (v, i) to a bounded heap of kk: kept when among the kk smallest by (value, index), in
 * whatever order the candidates come. */
static inline void
heap_push (Cand *h, gsize *fill, gsize kk, float v, guint32 i)
{
  Cand c = { v, i };
  if (*fill < kk)
    {
      h[*fill] = c;
      heap_sift_up (h, *fill);
      (*fill)++;
    }
  else if (cand_less (c, h[0]))
    {
      h[0] = c;
      heap_sift_down (h, kk, 0);
    }
}

typedef struct {
  double d;
  guint32 i;
} Exact;

static int
exact_compare (const void *pa, const void *pb)
{
  const Exact *a = pa, *b = pb;
  if (a->d != b->d)
    return a->d < b->d ? -1 : 1;
  return a->i < b->i ? -1 : a->i > b->i;
}

/* Σ (a − b)² in double: exact differences, eight independent partial sums (a fixed order, so
 * the result does not depend on anything but the two rows). */
static double
exact_sqdist (const float *a, const float *b, gsize d)
{
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
  gsize j = 0;
#define FG_SQ_STEP(s, o)                                                                         \
  G_STMT_START                                                                                   \
  {                                                                                              \
    double t = (double) a[j + o] - (double) b[j + o];                                            \
    s += t * t;                                                                                  \
  }                                                                                              \
  G_STMT_END
  for (; j + 8 <= d; j += 8)
    {
      FG_SQ_STEP (s0, 0);
      FG_SQ_STEP (s1, 1);
      FG_SQ_STEP (s2, 2);
      FG_SQ_STEP (s3, 3);
      FG_SQ_STEP (s4, 4);
      FG_SQ_STEP (s5, 5);
      FG_SQ_STEP (s6, 6);
      FG_SQ_STEP (s7, 7);
    }
  for (; j < d; j++)
    FG_SQ_STEP (s0, 0);
#undef FG_SQ_STEP
  return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7));
}

static int
cand_compare (const void *pa, const void *pb)
{
  const Cand *a = pa, *b = pb;
  return cand_less (*a, *b) ? -1 : cand_less (*b, *a);
}

/* A bound on |v − (‖r‖² − 2 q·r)| for the float32 value v = ‖r‖² + (−2 q·r) of sgemm: the dot
 * product of d terms errs by at most d·u·‖q‖‖r‖ (Cauchy–Schwarz), the sum and the stored norm
 * by a few u more.  Deliberately loose: it only decides which candidates are re-measured. */
static inline double
value_error (double qn, double rn, gsize d)
{
  const double u = 5.9604644775390625e-08; /* 2^-24 */
  return u * ((2.0 * (double) d + 6.0) * qn * rn + 2.0 * rn * rn);
}

/* From the kk candidates of one query row (a heap of float values) to its k nearest, in exact
 * order.  The candidates are sorted by float value; runs of neighbours whose values are closer
 * than their error bounds are re-measured in double and sorted exactly; elsewhere the float
 * order is certain and the distance is ‖q‖² + v.  When the k-th candidate cannot be told
 * apart from points outside the heap, the row is done exactly against every point. */
static void
finish_row (const QueryJob *job, Cand *h, const float *qi, double qsq, Exact *ex,
            guint32 *idx_out, float *dist_out)
{
  const FgNeighborIndex *index = job->index;
  const FgTensor *pts = index->points;
  gsize n = fg_tensor_rows (pts), d = fg_tensor_cols (pts), k = job->k, kk = job->kk;
  double qn = sqrt (qsq);
  gsize c = 0;

  qsort (h, kk, sizeof *h, cand_compare);
  if (kk < n)
    {
      double e_out = value_error (qn, index->max_norm, d);
      double e_k = value_error (qn, index->norm[h[k - 1].i], d);
      if ((double) h[kk - 1].v - e_out <= (double) h[k - 1].v + e_k)
        goto exhaustive;
    }
  while (c < k)
    {
      gsize start = c;
      double e_c = value_error (qn, index->norm[h[c].i], d);
      while (c + 1 < kk)
        {
          double e_n = value_error (qn, index->norm[h[c + 1].i], d);
          if ((double) h[c + 1].v - (double) h[c].v > e_c + e_n)
            break;
          c++;
          e_c = e_n;
        }
      if (c + 1 == kk && kk < n && c >= k - 1)
        goto exhaustive; /* the run of near-ties reaches the end of the heap */
      if (c == start)
        {
          ex[start].i = h[start].i;
          ex[start].d = MAX (0.0, qsq + (double) h[start].v);
        }
      else
        {
          for (gsize m = start; m <= c; m++)
            {
              ex[m].i = h[m].i;
              ex[m].d = exact_sqdist (qi, fg_tensor_row (pts, h[m].i), d);
            }
          qsort (ex + start, c - start + 1, sizeof *ex, exact_compare);
        }
      c++;
    }
  goto out;

exhaustive:
  for (gsize j = 0; j < n; j++)
    {
      ex[j].i = (guint32) j;
      ex[j].d = exact_sqdist (qi, fg_tensor_row (pts, j), d);
    }
  qsort (ex, n, sizeof *ex, exact_compare);

out:
  for (gsize m = 0; m < k; m++)
    {
      idx_out[m] = ex[m].i;
      if (dist_out != NULL)
        dist_out[m] = (float) ex[m].d;
    }
}

static void
query_task (gsize task, guint worker, gpointer data)
{
  const QueryJob *job = data;
  const FgNeighborIndex *index = job->index;
  const FgTensor *pts = index->points;
  gsize n = fg_tensor_rows (pts), d = fg_tensor_cols (pts);
  gsize r0 = task * QUERY_BLOCK;
  gsize rows = MIN ((gsize) QUERY_BLOCK, fg_tensor_rows (job->query) - r0);
  gsize kk = job->kk, ldq;
  float *buf = index->distance == FG_DISTANCE_COSINE ? fg_alloc_floats (rows * d) : NULL;
  float *tile = fg_alloc_floats ((gsize) QUERY_BLOCK * REF_BLOCK);
  double *qnorm = g_new (double, rows);
  Cand *heaps = g_new (Cand, rows * kk);
  gsize *fill = g_new0 (gsize, rows);
  Exact *ex = g_new (Exact, MAX (kk, fg_tensor_rows (pts)));
  const float *q = block_rows (job, r0, rows, buf, qnorm, &ldq);

  for (gsize c0 = 0; c0 < n; c0 += REF_BLOCK)
    {
      gsize cols = MIN ((gsize) REF_BLOCK, n - c0);
      cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, (int) rows, (int) cols, (int) d,
                   -2.0f, q, (int) ldq, fg_tensor_row (pts, c0), (int) d, 0.0f, tile,
                   (int) cols);
      for (gsize i = 0; i < rows; i++)
        {
          Cand *h = heaps + i * kk;
          const float *g = tile + i * cols;
          const float *nr = index->sqnorm + c0;
          for (gsize j = 0; j < cols; j++)
            heap_push (h, &fill[i], kk, nr[j] + g[j], (guint32) (c0 + j));
        }
    }

  for (gsize i = 0; i < rows; i++)
    finish_row (job, heaps + i * kk, q + i * ldq, qnorm[i], ex, job->idx_out + (r0 + i) * job->k,
                job->dist_out != NULL ? job->dist_out + (r0 + i) * job->k : NULL);

  fg_free_aligned (buf);
  fg_free_aligned (tile);
  g_free (qnorm);
  g_free (heaps);
  g_free (fill);
  g_free (ex);
}

static gboolean
check_query (const FgNeighborIndex *index, const FgTensor *query, GError **error)
{
  gsize bad;
  if (fg_tensor_cols (query) != fg_tensor_cols (index->points))
    {
      g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                   "neighbour query: rows of %" G_GSIZE_FORMAT " values, the index holds rows of %"
                   G_GSIZE_FORMAT, fg_tensor_cols (query), fg_tensor_cols (index->points));
      return FALSE;
    }
  if (!fg_tensor_all_finite (query, &bad))
    {
      gsize d = fg_tensor_cols (query);
      g_set_error (error, FG_ERROR, FG_ERROR_DATA,
                   "neighbour query: row %" G_GSIZE_FORMAT " column %" G_GSIZE_FORMAT
                   " is not finite", bad / d, bad % d);
      return FALSE;
    }
  return TRUE;
}

/**
 * fg_neighbor_index_query:
 * @index: an index
 * @query: query rows, as wide as the reference rows
 * @k: neighbours per query row, 1 ≤ @k ≤ N
 * @idx_out: (array): rows × @k reference indices, nearest first
 * @dist_out: (array) (nullable): rows × @k distances
 * @error: return location for an error
 *
 * Exact k nearest neighbours; ties go to the smaller reference index.
 *
 * Returns: %FALSE with %FG_ERROR_INVALID_PARAM for @k out of range or %FG_ERROR_DATA for a
 * query of the wrong width or with non-finite values.
 */
gboolean
fg_neighbor_index_query (const FgNeighborIndex *index, const FgTensor *query, gsize k,
                         guint32 *idx_out, float *dist_out, GError **error)
{
  QueryJob job = { 0 };
  gsize n, rows;

  g_return_val_if_fail (index != NULL, FALSE);
  g_return_val_if_fail (query != NULL, FALSE);
  g_return_val_if_fail (idx_out != NULL, FALSE);
  n = fg_tensor_rows (index->points);
  if (k < 1 || k > n)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                   "neighbour query: k = %" G_GSIZE_FORMAT " is outside [1, %" G_GSIZE_FORMAT
                   "] (the number of reference points)", k, n);
      return FALSE;
    }
  if (!check_query (index, query, error))
    return FALSE;
  rows = fg_tensor_rows (query);
  job.index = index;
  job.query = query;
  job.k = k;
  /* a margin of candidates beyond k, so that near-ties at the k-th rarely need the exhaustive
   * fallback of finish_row () */
  job.kk = MIN (n, k + 4 + k / 16);
  job.idx_out = idx_out;
  job.dist_out = dist_out;
  {
    gsize blocks = (rows + QUERY_BLOCK - 1) / QUERY_BLOCK;
    run_blocks (blocks,
                blocks_tasks (blocks, FG_POOL_NS_PER_FLOP * 2.0 * QUERY_BLOCK * (double) n
                                        * (double) fg_tensor_cols (query)),
                query_task, &job);
  }
  return TRUE;
}

/* ---- self query: every pair's product once ------------------------------------------------- */

#define SELF_BLOCK 256

typedef struct {
  QueryJob q;
  Cand *heaps;         /* n × kk */
  gsize *fill;         /* n */
  GMutex *locks;       /* one per row block */
  struct { guint32 bi, bj; } *pairs; /* the tiles (bi, bj), bi ≤ bj */
  float **tiles;       /* per task, SELF_BLOCK² */
  Exact **ex;          /* per task, n */
} SelfJob;

/* Tile (bi, bj): the products of the rows of blocks bi and bj, offered to the heaps of bi's rows
 * and, transposed, to those of bj's rows (each block's heaps under its lock).  The order in which
 * tiles reach a heap does not matter: it keeps the kk smallest by (value, index). */
static void
self_tile_task (gsize t, guint worker, gpointer data)
{
  SelfJob *job = data;
  const FgNeighborIndex *index = job->q.index;
  const FgTensor *pts = index->points;
  gsize n = fg_tensor_rows (pts), d = fg_tensor_cols (pts), kk = job->q.kk;
  gsize bi = job->pairs[t].bi, bj = job->pairs[t].bj;
  gsize i0 = bi * SELF_BLOCK, ni = MIN ((gsize) SELF_BLOCK, n - i0);
  gsize j0 = bj * SELF_BLOCK, nj = MIN ((gsize) SELF_BLOCK, n - j0);
  float *tile = job->tiles[worker];

  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, (int) ni, (int) nj, (int) d, -2.0f,
               fg_tensor_row (pts, i0), (int) d, fg_tensor_row (pts, j0), (int) d, 0.0f, tile,
               (int) nj);
  g_mutex_lock (&job->locks[bi]);
  for (gsize i = 0; i < ni; i++)
    {
      const float *g = tile + i * nj;
      for (gsize j = 0; j < nj; j++)
        heap_push (job->heaps + (i0 + i) * kk, &job->fill[i0 + i], kk,
                   index->sqnorm[j0 + j] + g[j], (guint32) (j0 + j));
    }
  g_mutex_unlock (&job->locks[bi]);
  if (bi == bj)
    return;
  g_mutex_lock (&job->locks[bj]);
  for (gsize j = 0; j < nj; j++)
    for (gsize i = 0; i < ni; i++)
      heap_push (job->heaps + (j0 + j) * kk, &job->fill[j0 + j], kk,
                 index->sqnorm[i0 + i] + tile[i * nj + j], (guint32) (i0 + i));
  g_mutex_unlock (&job->locks[bj]);
}

static void
self_finish_task (gsize b, guint worker, gpointer data)
{
  SelfJob *job = data;
  const FgNeighborIndex *index = job->q.index;
  const FgTensor *pts = index->points;
  gsize n = fg_tensor_rows (pts), k = job->q.k, kk = job->q.kk;
  for (gsize i = b * SELF_BLOCK; i < MIN ((b + 1) * SELF_BLOCK, n); i++)
    finish_row (&job->q, job->heaps + i * kk, fg_tensor_row (pts, i),
                index->norm[i] * index->norm[i], job->ex[worker], job->q.idx_out + i * k,
                job->q.dist_out != NULL ? job->q.dist_out + i * k : NULL);
}

/**
 * fg_neighbor_index_query_self:
 * @index: an index
 * @k: neighbours per reference row, 1 ≤ @k ≤ N
 * @idx_out: (array): N × @k reference indices, nearest first
 * @dist_out: (array) (nullable): N × @k distances
 * @error: return location for an error
 *
 * The k nearest reference rows of every reference row, the row itself included (it is at
 * distance 0): the neighbours of fg_neighbor_index_query () on the index's own rows, for about
 * half the arithmetic, since each pair's product is computed once (a kNN graph).
 *
 * Returns: %FALSE with %FG_ERROR_INVALID_PARAM for @k out of range.
 */
gboolean
fg_neighbor_index_query_self (const FgNeighborIndex *index, gsize k, guint32 *idx_out,
                              float *dist_out, GError **error)
{
  SelfJob job = { { 0 } };
  gsize n, d, B, n_pairs, p = 0;
  guint tasks;

  g_return_val_if_fail (index != NULL, FALSE);
  g_return_val_if_fail (idx_out != NULL, FALSE);
  n = fg_tensor_rows (index->points);
  d = fg_tensor_cols (index->points);
  if (k < 1 || k > n)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_INVALID_PARAM,
                   "neighbour query: k = %" G_GSIZE_FORMAT " is outside [1, %" G_GSIZE_FORMAT
                   "] (the number of reference points)", k, n);
      return FALSE;
    }
  job.q.index = index;
  job.q.k = k;
  job.q.kk = MIN (n, k + 4 + k / 16);
  job.q.idx_out = idx_out;
  job.q.dist_out = dist_out;
  B = (n + SELF_BLOCK - 1) / SELF_BLOCK;
  n_pairs = B * (B + 1) / 2;
  job.pairs = g_malloc (n_pairs * sizeof *job.pairs);
  for (gsize bi = 0; bi < B; bi++)
    for (gsize bj = bi; bj < B; bj++, p++)
      {
        job.pairs[p].bi = (guint32) bi;
        job.pairs[p].bj = (guint32) bj;
      }
  job.heaps = g_new (Cand, n * job.q.kk);
  job.fill = g_new0 (gsize, n);
  job.locks = g_new (GMutex, B);
  for (gsize b = 0; b < B; b++)
    g_mutex_init (&job.locks[b]);
  tasks = blocks_tasks (n_pairs, FG_POOL_NS_PER_FLOP * 2.0 * SELF_BLOCK * SELF_BLOCK * (double) d);
  job.tiles = g_new (float *, tasks);
  job.ex = g_new (Exact *, tasks);
  for (guint t = 0; t < tasks; t++)
    {
      job.tiles[t] = fg_alloc_floats ((gsize) SELF_BLOCK * SELF_BLOCK);
      job.ex[t] = g_new (Exact, n);
    }

  run_blocks (n_pairs, tasks, self_tile_task, &job);
  run_blocks (B, MIN (tasks, (guint) B), self_finish_task, &job);

  for (guint t = 0; t < tasks; t++)
    {
      fg_free_aligned (job.tiles[t]);
      g_free (job.ex[t]);
    }
  for (gsize b = 0; b < B; b++)
    g_mutex_clear (&job.locks[b]);
  g_free (job.tiles);
  g_free (job.ex);
  g_free (job.locks);
  g_free (job.fill);
  g_free (job.heaps);
  g_free (job.pairs);
  return TRUE;
}

static void
distances_task (gsize task, guint worker, gpointer data)
{
  const QueryJob *job = data;
  const FgNeighborIndex *index = job->index;
  const FgTensor *pts = index->points;
  gsize n = fg_tensor_rows (pts), d = fg_tensor_cols (pts);
  gsize r0 = task * DIST_BLOCK;
  gsize rows = MIN ((gsize) DIST_BLOCK, fg_tensor_rows (job->query) - r0);
  gsize ldq;
  float *buf = index->distance == FG_DISTANCE_COSINE ? fg_alloc_floats (rows * d) : NULL;
  double *qnorm = g_new (double, rows);
  const float *q = block_rows (job, r0, rows, buf, qnorm, &ldq);
  float *out = job->full_out + r0 * job->ld_out;

  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, (int) rows, (int) n, (int) d, -2.0f, q,
               (int) ldq, pts->data, (int) d, 0.0f, out, (int) job->ld_out);
  for (gsize i = 0; i < rows; i++)
    {
      float *o = out + i * job->ld_out;
      float qn = (float) qnorm[i];
      for (gsize j = 0; j < n; j++)
        {
          float v = qn + index->sqnorm[j] + o[j];
          o[j] = v > 0.0f ? v : 0.0f;
        }
    }
  fg_free_aligned (buf);
  g_free (qnorm);
}

/**
 * fg_neighbor_index_distances:
 * @index: an index
 * @query: query rows, as wide as the reference rows
 * @out: (array): rows × N distances, row stride @ld_out
 * @ld_out: ≥ N
 * @error: return location for an error
 *
 * Every query-to-reference distance (single precision, clamped at 0).
 *
 * Returns: %FALSE with %FG_ERROR_DATA for a query of the wrong width or non-finite values.
 */
gboolean
fg_neighbor_index_distances (const FgNeighborIndex *index, const FgTensor *query, float *out,
                             gsize ld_out, GError **error)
{
  QueryJob job = { 0 };
  gsize rows;

  g_return_val_if_fail (index != NULL, FALSE);
  g_return_val_if_fail (query != NULL, FALSE);
  g_return_val_if_fail (out != NULL, FALSE);
  g_return_val_if_fail (ld_out >= fg_tensor_rows (index->points), FALSE);
  if (!check_query (index, query, error))
    return FALSE;
  rows = fg_tensor_rows (query);
  job.index = index;
  job.query = query;
  job.full_out = out;
  job.ld_out = ld_out;
  {
    gsize blocks = (rows + DIST_BLOCK - 1) / DIST_BLOCK;
    run_blocks (blocks,
                blocks_tasks (blocks, FG_POOL_NS_PER_FLOP * 2.0 * DIST_BLOCK
                                        * (double) fg_tensor_rows (index->points)
                                        * (double) fg_tensor_cols (query)),
                distances_task, &job);
  }
  return TRUE;
}
