/* SPDX-License-Identifier: MIT */
/* flowgmm — learnable weights: a named, ordered set of (value, gradient) pairs.
 *
 * The set keeps insertion order (a GPtrArray), which is also the order of checkpoints and of the
 * optimizer's moment buffers, and a hash table for lookup by name.  Checkpoints are in
 * checkpoint.c.
 */
#include "config.h"

/* Every clone of the reductions computes the baseline's values (see FG_CLONES). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize ("fp-contract=off")
#endif

#include <flowgmm/weights.h>

#include <math.h>
#include <string.h>

#include "numeric/numeric-private.h"

struct _FgWeightSet
{
  GPtrArray  *weights; /* FgWeight *, owned, in insertion order */
  GHashTable *by_name; /* name (owned by the weight) → FgWeight * */
};

static void
weight_free (gpointer data)
{
  FgWeight *w = data;

  if (w == NULL)
    return;
  fg_free_aligned (w->value.data);
  fg_free_aligned (w->grad.data);
  g_free (w->name);
  g_free (w);
}

/**
 * fg_weight_set_new:
 *
 * Returns: (transfer full): an empty weight set, freed with fg_weight_set_free ().
 */
FgWeightSet *
fg_weight_set_new (void)
{
  FgWeightSet *set = g_new0 (FgWeightSet, 1);

  set->weights = g_ptr_array_new_with_free_func (weight_free);
  set->by_name = g_hash_table_new (g_str_hash, g_str_equal);
  return set;
}

/**
 * fg_weight_set_free:
 * @set: (nullable): a weight set
 *
 * Frees the set and every weight in it.  Accepts %NULL.
 */
void
fg_weight_set_free (FgWeightSet *set)
{
  if (set == NULL)
    return;
  g_hash_table_destroy (set->by_name);
  g_ptr_array_unref (set->weights);
  g_free (set);
}

/**
 * fg_weight_set_add:
 * @set: a weight set
 * @name: the weight's name, unique within @set
 * @ndim: number of dimensions, 1..%FG_TENSOR_MAX_DIMS
 * @shape: (array length=ndim): the dimensions
 * @decay: whether weight decay applies to this weight
 *
 * Adds a zero-filled, trainable weight with a zero gradient.  @name must be non-empty UTF-8 of
 * at most 65536 bytes; adding a name twice is a programmer error (a critical warning, and
 * %NULL).
 *
 * Returns: (transfer none): the weight, owned by @set.
 */
FgWeight *
fg_weight_set_add (FgWeightSet *set, const char *name, guint ndim, const gsize *shape,
                   gboolean decay)
{
  FgWeight *w;
  gsize numel = 1;

  g_return_val_if_fail (set != NULL, NULL);
  g_return_val_if_fail (name != NULL && name[0] != '\0', NULL);
  /* Names must round-trip through a checkpoint (doc/checkpoint.md): UTF-8, at most 64 KiB. */
  g_return_val_if_fail (strlen (name) <= 65536 && g_utf8_validate (name, -1, NULL), NULL);
  g_return_val_if_fail (ndim >= 1 && ndim <= FG_TENSOR_MAX_DIMS, NULL);
  g_return_val_if_fail (shape != NULL, NULL);
  g_return_val_if_fail (!g_hash_table_contains (set->by_name, name), NULL);
  g_return_val_if_fail (set->weights->len < G_MAXUINT, NULL);

  for (guint i = 0; i < ndim; i++)
    if (!g_size_checked_mul (&numel, numel, shape[i]))
      g_error ("%s: weight '%s' is too large", G_STRLOC, name);

  w = g_new0 (FgWeight, 1);
  w->name = g_strdup (name);
  w->value = fg_tensor_wrap (fg_alloc_floats (numel), ndim, shape);
  w->grad = fg_tensor_wrap (fg_alloc_floats (numel), ndim, shape);
  w->decay = decay;
  w->trainable = TRUE;

  g_ptr_array_add (set->weights, w);
  g_hash_table_insert (set->by_name, w->name, w);
  return w;
}

/**
 * fg_weight_set_add_2d:
 * @set: a weight set
 * @name: the weight's name, unique within @set
 * @rows: rows
 * @cols: columns
 * @decay: whether weight decay applies to this weight
 *
 * Adds a zero-filled rows × cols weight; see fg_weight_set_add ().
 *
 * Returns: (transfer none): the weight, owned by @set.
 */
FgWeight *
fg_weight_set_add_2d (FgWeightSet *set, const char *name, gsize rows, gsize cols,
                      gboolean decay)
{
  const gsize shape[2] = { rows, cols };
  return fg_weight_set_add (set, name, 2, shape, decay);
}

/**
 * fg_weight_set_lookup:
 * @set: a weight set
 * @name: a name
 *
 * Returns: (transfer none) (nullable): the weight called @name, or %NULL.
 */
FgWeight *
fg_weight_set_lookup (FgWeightSet *set, const char *name)
{
  g_return_val_if_fail (set != NULL, NULL);
  g_return_val_if_fail (name != NULL, NULL);

  return g_hash_table_lookup (set->by_name, name);
}

/**
 * fg_weight_set_len:
 * @set: a weight set
 *
 * Returns: the number of weights (trainable or not).
 */
guint
fg_weight_set_len (const FgWeightSet *set)
{
  g_return_val_if_fail (set != NULL, 0);

  return set->weights->len;
}

/**
 * fg_weight_set_get:
 * @set: a weight set
 * @i: an index below fg_weight_set_len ()
 *
 * Returns: (transfer none): the @i-th weight, in insertion order.
 */
FgWeight *
fg_weight_set_get (const FgWeightSet *set, guint i)
{
  g_return_val_if_fail (set != NULL, NULL);
  g_return_val_if_fail (i < set->weights->len, NULL);

  return g_ptr_array_index (set->weights, i);
}

/**
 * fg_weight_set_numel:
 * @set: a weight set
 *
 * Returns: the number of trainable scalars (weights with trainable == %FALSE do not count).
 */
gsize
fg_weight_set_numel (const FgWeightSet *set)
{
  gsize n = 0;

  g_return_val_if_fail (set != NULL, 0);

  for (guint i = 0; i < set->weights->len; i++)
    {
      const FgWeight *w = g_ptr_array_index (set->weights, i);
      if (w->trainable)
        n += fg_tensor_numel (&w->value);
    }
  return n;
}

/* ---- Passes over all gradients, split over the core's threads --------------------------- */

static inline gboolean
pass_includes (const FgWeight *w, gboolean trainable_only)
{
  return w->grad.data != NULL && (w->trainable || !trainable_only);
}

/* Zeroing: the gradients of the set's weights are taken end to end as one stream of elements
 * and a task clears a contiguous range of it. */

#define ZERO_BLOCK 8192

typedef struct {
  const FgWeightSet *set;
  gsize total, n_blocks;
} ZeroPass;

static void
zero_pass_task (gpointer data, guint t, guint n_tasks)
{
  const ZeroPass *p = data;
  gsize b0, b1, off = 0;
  _fg_pool_range (p->n_blocks, t, n_tasks, 1, &b0, &b1);
  const gsize e0 = b0 * ZERO_BLOCK, e1 = MIN (b1 * ZERO_BLOCK, p->total);
  for (guint i = 0; i < p->set->weights->len && off < e1; i++)
    {
      const FgWeight *w = g_ptr_array_index (p->set->weights, i);
      if (!pass_includes (w, FALSE))
        continue;
      const gsize n = fg_tensor_numel (&w->grad);
      const gsize a = MAX (off, e0), end = MIN (off + n, e1);
      if (a < end)
        memset (w->grad.data + (a - off), 0, (end - a) * sizeof (float));
      off += n;
    }
}

/* Norms.  Σ g² of one weight is summed in chunks of NORM_CHUNK elements from its start, each
 * in double in 32 lanes (chunk_sumsq), and then the chunks in order; the set's sum adds the
 * weights' sums in set order.  A split over threads takes whole chunks, so the value depends
 * neither on the number of threads nor on which code asks for it: fg_tape_grad_norm, which
 * takes each weight's sum during backward (_fg_weight_grad_sumsq), finds exactly the norm
 * fg_weight_set_grad_norm gives. */

#define NORM_CHUNK 16384

/* Σ x[0..n)² in double: acc[i mod 32] += x[i]² in index order — four independent vectors of
 * eight doubles, so that the adds do not wait on each other (one chain of eight ran at half
 * the memory bandwidth) — then the 32 lanes added in order. */
FG_CLONES static double
chunk_sumsq (const float *restrict x, gsize n)
{
  double acc[32] = { 0 };
  gsize i = 0;
  for (; i + 32 <= n; i += 32)
    for (guint k = 0; k < 32; k++)
      acc[k] += (double) x[i + k] * x[i + k];
  for (; i < n; i++)
    acc[i % 32] += (double) x[i] * x[i];
  double s = 0.0;
  for (guint k = 0; k < 32; k++)
    s += acc[k];
  return s;
}

/* Chunks per round of a norm pass (their sums live on the stack). */
#define NORM_ROUND 1024

/* The included weights among ws[0 .. n) (trainable, with a gradient), as chunks laid end to
 * end. */
typedef struct {
  FgWeight *const *ws;
  guint n_ws;
  gsize c0, n;  /* the round: chunks [c0, c0 + n) */
  double *sums; /* n */
} NormPass;

static inline gsize
n_chunks (const FgWeight *w)
{
  return (fg_tensor_numel (&w->grad) + NORM_CHUNK - 1) / NORM_CHUNK;
}

static void
norm_pass_task (gpointer data, guint t, guint n_tasks)
{
  const NormPass *p = data;
  gsize k0, k1, c = 0; /* c: the first chunk of weight i */
  _fg_pool_range (p->n, t, n_tasks, 1, &k0, &k1);
  k0 += p->c0;
  k1 += p->c0;
  for (guint i = 0; i < p->n_ws && c < k1; i++)
    {
      const FgWeight *w = p->ws[i];
      if (!pass_includes (w, TRUE))
        continue;
      const gsize n = fg_tensor_numel (&w->grad), nc = n_chunks (w);
      for (gsize k = MAX (c, k0); k < MIN (c + nc, k1); k++)
        {
          const gsize e = (k - c) * NORM_CHUNK;
          p->sums[k - p->c0] = chunk_sumsq (w->grad.data + e, MIN (NORM_CHUNK, n - e));
        }
      c += nc;
    }
}

/* Σ over the included weights of ws (in order) of Σ over each one's chunks (in order); the
 * chunks are split over the core's threads. */
static double
grad_sumsq (FgWeight *const *ws, guint n_ws)
{
  double sums[NORM_ROUND], total = 0.0, wsum = 0.0;
  gsize n = 0;
  for (guint i = 0; i < n_ws; i++)
    if (pass_includes (ws[i], TRUE))
      n += n_chunks (ws[i]);
  guint i = 0;    /* the weight of the next chunk */
  gsize left = 0; /* chunks of weight i − 1 still to add */
  for (gsize c0 = 0; c0 < n; c0 += NORM_ROUND)
    {
      NormPass p = { ws, n_ws, c0, MIN (NORM_ROUND, n - c0), sums };
      const double ns = (double) p.n * NORM_CHUNK * FG_POOL_NS_PER_ELEMENT;
      _fg_pool_run ((guint) MIN ((gsize) _fg_pool_tasks (ns), p.n), norm_pass_task, &p);
      for (gsize k = 0; k < p.n; k++)
        {
          while (left == 0)
            {
              const FgWeight *w = ws[i++];
              if (pass_includes (w, TRUE))
                left = n_chunks (w);
            }
          wsum += sums[k];
          if (--left == 0)
            {
              total += wsum;
              wsum = 0.0;
            }
        }
    }
  return total;
}

/* Σ g² of one trainable weight, exactly as fg_weight_set_grad_norm adds it into its sum
 * (0 for a weight without gradient or not trainable). */
double
_fg_weight_grad_sumsq (FgWeight *w)
{
  return grad_sumsq (&w, 1);
}

/**
 * fg_weight_set_zero_grad:
 * @set: a weight set
 *
 * Sets every gradient to zero.
 */
void
fg_weight_set_zero_grad (FgWeightSet *set)
{
  g_return_if_fail (set != NULL);

  ZeroPass p = { set, 0, 0 };
  for (guint i = 0; i < set->weights->len; i++)
    {
      const FgWeight *w = g_ptr_array_index (set->weights, i);
      if (pass_includes (w, FALSE))
        p.total += fg_tensor_numel (&w->grad);
    }
  if (p.total == 0)
    return;
  p.n_blocks = (p.total + ZERO_BLOCK - 1) / ZERO_BLOCK;
  const double ns = (double) p.total * FG_POOL_NS_PER_ELEMENT;
  _fg_pool_run ((guint) MIN ((gsize) _fg_pool_tasks (ns), p.n_blocks), zero_pass_task, &p);
}

/**
 * fg_weight_set_grad_norm:
 * @set: a weight set
 *
 * Returns: the global L2 norm of the gradients of all trainable weights, accumulated in double
 * (NaN or infinity when a gradient is not finite).  The sum runs over fixed blocks, split over
 * the core's threads: the same value for any thread count.
 */
double
fg_weight_set_grad_norm (const FgWeightSet *set)
{
  g_return_val_if_fail (set != NULL, NAN);

  return sqrt (grad_sumsq ((FgWeight *const *) set->weights->pdata, set->weights->len));
}

/**
 * fg_weight_set_clip_grad_norm:
 * @set: a weight set
 * @max_norm: the largest allowed global norm, > 0
 *
 * Scales the gradients of all trainable weights by max_norm / (norm + 1e-6) when that factor is
 * below 1, exactly like torch.nn.utils.clip_grad_norm_ (which the FlowGMM authors use with
 * max_norm 100).  A non-finite norm is returned unchanged and nothing is scaled: the caller
 * decides how to report the step.
 *
 * Returns: the global gradient norm before clipping.
 */
double
fg_weight_set_clip_grad_norm (FgWeightSet *set, double max_norm)
{
  double norm, coef;

  g_return_val_if_fail (set != NULL, NAN);
  g_return_val_if_fail (max_norm > 0.0, NAN);

  norm = fg_weight_set_grad_norm (set);
  if (!isfinite (norm))
    return norm;

  coef = max_norm / (norm + 1e-6);
  if (coef >= 1.0)
    return norm;

  for (guint i = 0; i < set->weights->len; i++)
    {
      FgWeight *w = g_ptr_array_index (set->weights, i);
      float *restrict g = w->grad.data;
      const float c = (float) coef;
      gsize n;

      if (!w->trainable || g == NULL)
        continue;
      n = fg_tensor_numel (&w->grad);
      for (gsize j = 0; j < n; j++)
        g[j] *= c;
    }
  return norm;
}

/**
 * fg_weight_init_uniform:
 * @w: a weight
 * @rng: a generator
 * @bound: the half-width, >= 0
 *
 * Fills the value with U(−@bound, @bound) draws.
 */
void
fg_weight_init_uniform (FgWeight *w, FgRng *rng, float bound)
{
  g_return_if_fail (w != NULL);
  g_return_if_fail (rng != NULL);
  g_return_if_fail (bound >= 0.0f);

  fg_rng_fill_uniform (rng, w->value.data, fg_tensor_numel (&w->value), -bound, bound);
}

/**
 * fg_weight_init_normal:
 * @w: a weight
 * @rng: a generator
 * @std: the standard deviation, >= 0
 *
 * Fills the value with N(0, @std²) draws.
 */
void
fg_weight_init_normal (FgWeight *w, FgRng *rng, float std)
{
  g_return_if_fail (w != NULL);
  g_return_if_fail (rng != NULL);
  g_return_if_fail (std >= 0.0f);

  fg_rng_fill_normal (rng, w->value.data, fg_tensor_numel (&w->value), 0.0f, std);
}

/**
 * fg_weight_init_const:
 * @w: a weight
 * @value: the value
 *
 * Sets every element of the value to @value.
 */
void
fg_weight_init_const (FgWeight *w, float value)
{
  g_return_if_fail (w != NULL);

  fg_tensor_fill (&w->value, value);
}
