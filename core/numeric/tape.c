/* SPDX-License-Identifier: MIT */
/* flowgmm — the autodiff tape: arena, nodes, records and the backward walk. */
#include "config.h"

#include "numeric/numeric-private.h"

#define FG_ARENA_ALIGN 64
/* The first block; later blocks at least double the total, so a step needs O(log) blocks. */
#define FG_ARENA_MIN_BLOCK ((gsize) 1 << 20)
#define FG_RECORDS_MIN 256

/* A weight reached by a backward pass: after the record of index `last` (the first record, in
 * the order of creation, that has a leaf of it as an input) nothing in the pass can change its
 * gradient any more, and its Σ g² is taken then, while much of it is still in cache. */
typedef struct {
  FgWeight *w;
  gsize last;
  double sumsq;
  gboolean taken; /* sumsq handed over by the op of record `last` (_fg_tape_set_grad_sumsq) */
} FgGradSq;

typedef struct {
  gpointer raw;  /* as returned by g_malloc */
  guint8 *base;  /* raw rounded up to FG_ARENA_ALIGN */
  gsize size;    /* usable bytes from base */
} FgBlock;

struct _FgTape {
  FgBlock *blocks;
  guint n_blocks, cap_blocks;
  guint cur;      /* block being bumped */
  gsize used;     /* bytes used in blocks[cur] */

  FgNode **records; /* ops recorded for backward, in creation (= topological) order */
  gsize n_records, cap_records;

  gboolean grad_enabled;
  gsize heap_allocs;
  gsize arena_bytes;

  /* The squared gradient norms the last backward pass took of the weights it reached
   * (fg_tape_grad_norm), when track_norms is set; arena memory, forgotten at reset. */
  gboolean track_norms;
  FgGradSq *gsq;
  gsize n_gsq;
  /* during backward: the record whose backward runs now, and how many entries of gsq are
   * still to be finished (those of this record are just below next_gsq) */
  gsize cur_record, next_gsq;

  /* Gradients of records during a backward pass: free buffers by size in floats (a stack of
   * aligned pointers each), and every buffer's g_malloc'ed memory, freed with the tape. */
  gboolean in_backward;
  GHashTable *grad_free;
  GPtrArray *grad_raw;

  /* Reusable scratch of one kernel at a time (_fg_tape_workspace): kept across resets. */
  gpointer ws_raw;
  gsize ws_size;
};

static inline gsize
round_up (gsize n, gsize to)
{
  return (n + to - 1) / to * to;
}

/**
 * fg_tape_new:
 *
 * Creates an empty tape with gradients enabled.  The arena grows on first use.
 *
 * Returns: (transfer full): a new tape, freed with fg_tape_free().
 */
FgTape *
fg_tape_new (void)
{
  FgTape *tape = g_new0 (FgTape, 1);
  tape->grad_enabled = TRUE;
  tape->heap_allocs = 1;
  return tape;
}

/**
 * fg_tape_free:
 * @tape: (nullable): a tape
 *
 * Frees the tape and its arena; every FgVar and buffer it handed out becomes invalid.
 */
void
fg_tape_free (FgTape *tape)
{
  if (tape == NULL)
    return;
  for (guint i = 0; i < tape->n_blocks; i++)
    g_free (tape->blocks[i].raw);
  g_free (tape->blocks);
  g_free (tape->records);
  g_free (tape->ws_raw);
  if (tape->grad_free != NULL)
    g_hash_table_unref (tape->grad_free);
  if (tape->grad_raw != NULL)
    g_ptr_array_unref (tape->grad_raw);
  g_free (tape);
}

/**
 * fg_tape_reset:
 * @tape: a tape
 *
 * Forgets every node and scratch buffer but keeps the arena's blocks and the record array, so
 * the next step of the same shapes allocates nothing from the heap.
 */
void
fg_tape_reset (FgTape *tape)
{
  g_return_if_fail (tape != NULL);
  tape->cur = 0;
  tape->used = 0;
  tape->n_records = 0;
  tape->gsq = NULL;
  tape->n_gsq = 0;
}

/**
 * fg_tape_set_grad_enabled:
 * @tape: a tape
 * @enabled: whether ops record their backward
 *
 * With gradients disabled ops only compute values: nothing is recorded and no output requires
 * a gradient (evaluation, inverse passes, finite differences).
 */
void
fg_tape_set_grad_enabled (FgTape *tape, gboolean enabled)
{
  g_return_if_fail (tape != NULL);
  tape->grad_enabled = !!enabled;
}

/**
 * fg_tape_set_track_grad_norms:
 * @tape: a tape
 * @track: whether backward passes take each weight's squared gradient norm
 *
 * Off by default: a caller that does not clip by the global norm pays nothing.  With it on,
 * fg_tape_grad_norm () costs no pass over the gradients of the weights a backward pass reached.
 */
void
fg_tape_set_track_grad_norms (FgTape *tape, gboolean track)
{
  g_return_if_fail (tape != NULL);
  tape->track_norms = !!track;
}

/**
 * fg_tape_get_grad_enabled:
 * @tape: a tape
 *
 * Returns: whether ops record their backward.
 */
gboolean
fg_tape_get_grad_enabled (const FgTape *tape)
{
  g_return_val_if_fail (tape != NULL, FALSE);
  return tape->grad_enabled;
}

/* Insert a new block of at least `need` bytes right after the current one. */
static void
arena_add_block (FgTape *tape, gsize need)
{
  gsize size = MAX (need, MAX (FG_ARENA_MIN_BLOCK, tape->arena_bytes));
  if (tape->n_blocks == tape->cap_blocks)
    {
      tape->cap_blocks = MAX (8, tape->cap_blocks * 2);
      tape->blocks = g_renew (FgBlock, tape->blocks, tape->cap_blocks);
      tape->heap_allocs++;
    }
  guint pos = tape->n_blocks == 0 ? 0 : tape->cur + 1;
  memmove (tape->blocks + pos + 1, tape->blocks + pos,
           (tape->n_blocks - pos) * sizeof (FgBlock));
  FgBlock *b = &tape->blocks[pos];
  b->raw = g_malloc (size + FG_ARENA_ALIGN);
  b->base = (guint8 *) round_up ((guintptr) b->raw, FG_ARENA_ALIGN);
  b->size = size;
  tape->n_blocks++;
  tape->heap_allocs++;
  tape->arena_bytes += size;
  tape->cur = pos;
  tape->used = 0;
}

/**
 * fg_tape_alloc:
 * @tape: a tape
 * @bytes: size of the request
 *
 * Scratch memory from the arena, valid until the next fg_tape_reset (), or, when called inside
 * a backward function, until that function returns.  Not zeroed.
 *
 * Returns: (transfer none): 64-byte aligned memory (never NULL for a valid tape).
 */
gpointer
fg_tape_alloc (FgTape *tape, gsize bytes)
{
  g_return_val_if_fail (tape != NULL, NULL);
  gsize need = round_up (MAX (bytes, 1), FG_ARENA_ALIGN);

  if (tape->n_blocks > 0 && tape->blocks[tape->cur].size - tape->used < need)
    {
      /* Move on to the next kept block that fits; bringing it to cur + 1 keeps the sequence of
       * blocks a step walks through identical from one step to the next. */
      guint j;
      for (j = tape->cur + 1; j < tape->n_blocks; j++)
        if (tape->blocks[j].size >= need)
          break;
      if (j < tape->n_blocks)
        {
          FgBlock tmp = tape->blocks[j];
          memmove (tape->blocks + tape->cur + 2, tape->blocks + tape->cur + 1,
                   (j - tape->cur - 1) * sizeof (FgBlock));
          tape->blocks[tape->cur + 1] = tmp;
          tape->cur++;
          tape->used = 0;
        }
      else
        arena_add_block (tape, need);
    }
  else if (tape->n_blocks == 0)
    arena_add_block (tape, need);

  guint8 *p = tape->blocks[tape->cur].base + tape->used;
  tape->used += need;
  return p;
}

/**
 * fg_tape_alloc_floats:
 * @tape: a tape
 * @n: number of floats
 *
 * Returns: (transfer none): @n floats of arena scratch, 64-byte aligned, not zeroed.
 */
float *
fg_tape_alloc_floats (FgTape *tape, gsize n)
{
  return fg_tape_alloc (tape, n * sizeof (float));
}

/* Scratch for the kernel running now, valid until the next call: unlike fg_tape_alloc it is not
 * kept until the tape is reset, so a kernel's large temporary buffers (transformed tiles of a
 * convolution) cost their size once per tape rather than once per op of a step.  The kernels
 * of the tape never nest, so one buffer serves them all. */
gpointer
_fg_tape_workspace (FgTape *tape, gsize bytes)
{
  g_return_val_if_fail (tape != NULL, NULL);
  bytes = round_up (MAX (bytes, 1), FG_ARENA_ALIGN);
  if (bytes > tape->ws_size)
    {
      g_free (tape->ws_raw);
      tape->ws_size = MAX (bytes, tape->ws_size + tape->ws_size / 2);
      tape->ws_raw = g_malloc (tape->ws_size + FG_ARENA_ALIGN);
      tape->heap_allocs++;
    }
  return (gpointer) round_up ((guintptr) tape->ws_raw, FG_ARENA_ALIGN);
}

/**
 * fg_tape_get_stats:
 * @tape: a tape
 * @stats: (out): filled in
 *
 * n_nodes counts the records kept for backward since the last reset (ops and views whose
 * output requires a gradient); leaves and ops run with gradients disabled are not records.
 */
void
fg_tape_get_stats (const FgTape *tape, FgTapeStats *stats)
{
  g_return_if_fail (tape != NULL && stats != NULL);
  stats->n_nodes = tape->n_records;
  stats->arena_bytes = tape->arena_bytes;
  stats->heap_allocs = tape->heap_allocs;
}

/**
 * fg_tape_get_fused_norms:
 * @tape: a tape
 *
 * Returns: how many of the squared gradient norms the last backward pass tracked
 * (fg_tape_set_track_grad_norms ()) were taken by the kernel that finished the gradient (the
 * dW product of fg_op_linear and fg_op_linear_act) rather than in a pass of the tape's own.
 */
gsize
fg_tape_get_fused_norms (const FgTape *tape)
{
  g_return_val_if_fail (tape != NULL, 0);
  gsize n = 0;
  for (gsize e = 0; e < tape->n_gsq; e++)
    n += tape->gsq[e].taken;
  return n;
}

static FgNode *
node_alloc (FgTape *tape)
{
  FgNode *node = fg_tape_alloc (tape, sizeof (FgNode));
  memset (node, 0, sizeof *node);
  return node;
}

static void
record (FgTape *tape, FgNode *node)
{
  if (tape->n_records == tape->cap_records)
    {
      tape->cap_records = MAX (FG_RECORDS_MIN, tape->cap_records * 2);
      tape->records = g_renew (FgNode *, tape->records, tape->cap_records);
      tape->heap_allocs++;
    }
  tape->records[tape->n_records++] = node;
}

const char *
_fg_tape_shape_str (const FgTensor *t, char *buf, gsize size)
{
  gsize off = 0;
  buf[0] = '\0';
  for (guint i = 0; i < t->ndim && off < size; i++)
    off += g_snprintf (buf + off, size - off, i ? "x%" G_GSIZE_FORMAT : "%" G_GSIZE_FORMAT,
                       t->shape[i]);
  if (t->ld != fg_tensor_cols (t) && off < size)
    g_snprintf (buf + off, size - off, " (ld %" G_GSIZE_FORMAT ")", t->ld);
  return buf;
}

static gboolean
check_tensor (const FgTensor *t, const char *what)
{
  if (t == NULL || t->ndim < 1 || t->ndim > FG_TENSOR_MAX_DIMS
      || (t->data == NULL && fg_tensor_numel (t) > 0)
      || (t->ld < fg_tensor_cols (t) && fg_tensor_rows (t) > 1))
    {
      g_critical ("%s: not a valid tensor (NULL, ndim outside 1..4, no data or ld < cols)", what);
      return FALSE;
    }
  return TRUE;
}

/**
 * fg_tape_constant:
 * @tape: a tape
 * @t: caller memory, which must stay valid and unchanged until the next reset
 *
 * Wraps @t as a leaf without gradient; no copy is made.
 *
 * Returns: (transfer none): the leaf, or NULL on a programmer error.
 */
FgVar *
fg_tape_constant (FgTape *tape, const FgTensor *t)
{
  g_return_val_if_fail (tape != NULL, NULL);
  if (!check_tensor (t, "fg_tape_constant"))
    return NULL;
  FgNode *node = node_alloc (tape);
  node->var.value = *t;
  return &node->var;
}

/**
 * fg_tape_constant_copy:
 * @tape: a tape
 * @t: caller memory, copied at once into the arena (compact)
 *
 * Returns: (transfer none): a leaf without gradient, or NULL on a programmer error.
 */
FgVar *
fg_tape_constant_copy (FgTape *tape, const FgTensor *t)
{
  g_return_val_if_fail (tape != NULL, NULL);
  if (!check_tensor (t, "fg_tape_constant_copy"))
    return NULL;
  FgNode *node = node_alloc (tape);
  float *data = fg_tape_alloc_floats (tape, fg_tensor_numel (t));
  node->var.value = _fg_tensor_make (data, t->ndim, t->shape);
  _fg_copy_rows (data, t);
  return &node->var;
}

/**
 * fg_tape_weight:
 * @tape: a tape
 * @w: a weight; its value is read in place and must not change until backward has run
 *
 * A leaf for a model parameter.  When gradients are enabled and @w is trainable, the leaf's
 * grad is w->grad itself, so backward passes accumulate straight into it (the caller zeroes it
 * between optimizer steps).
 *
 * Returns: (transfer none): the leaf, or NULL on a programmer error.
 */
FgVar *
fg_tape_weight (FgTape *tape, FgWeight *w)
{
  g_return_val_if_fail (tape != NULL, NULL);
  g_return_val_if_fail (w != NULL, NULL);
  if (!check_tensor (&w->value, "fg_tape_weight"))
    return NULL;
  FgNode *node = node_alloc (tape);
  node->var.value = w->value;
  if (tape->grad_enabled && w->trainable && w->grad.data != NULL)
    {
      g_return_val_if_fail (fg_tensor_numel (&w->grad) == fg_tensor_numel (&w->value)
                              && fg_tensor_is_contiguous (&w->grad), NULL);
      node->var.grad = w->grad;
      node->var.requires_grad = TRUE; /* a leaf, never a record: backward never clears it */
      node->weight = w;
    }
  return &node->var;
}

/**
 * fg_tape_empty:
 * @tape: a tape
 * @ndim: 1..4
 * @shape: @ndim sizes
 *
 * Returns: (transfer none): an uninitialised contiguous arena tensor without gradient.
 */
FgVar *
fg_tape_empty (FgTape *tape, guint ndim, const gsize *shape)
{
  g_return_val_if_fail (tape != NULL, NULL);
  g_return_val_if_fail (ndim >= 1 && ndim <= FG_TENSOR_MAX_DIMS && shape != NULL, NULL);
  FgNode *node = node_alloc (tape);
  node->var.value = _fg_tensor_make (NULL, ndim, shape);
  node->var.value.data = fg_tape_alloc_floats (tape, fg_tensor_numel (&node->var.value));
  return &node->var;
}

/**
 * fg_tape_empty_2d:
 * @tape: a tape
 * @rows: rows
 * @cols: columns
 *
 * Returns: (transfer none): an uninitialised @rows × @cols arena tensor without gradient.
 */
FgVar *
fg_tape_empty_2d (FgTape *tape, gsize rows, gsize cols)
{
  gsize shape[2] = { rows, cols };
  return fg_tape_empty (tape, 2, shape);
}

/**
 * fg_tape_op_new:
 * @tape: a tape
 * @ndim: rank of the output, 1..4
 * @shape: its sizes
 * @inputs: (array length=n_inputs): the op's inputs; a NULL among them makes the op fail
 * @n_inputs: their number
 * @backward: (nullable): propagates out->grad into the inputs' gradients
 * @saved_size: bytes of private data for @backward
 * @saved: (out) (optional): the private data, arena memory (given even when nothing is
 *   recorded, so forward code can use it as scratch unconditionally)
 *
 * Allocates the output node of a custom op.  The op is recorded when gradients are enabled,
 * @backward is given and some input requires a gradient; then the output requires one too.
 *
 * Returns: (transfer none): the node, its value uninitialised and contiguous; NULL when an
 * input is NULL (silently: the failure was reported where it happened) or on a programmer
 * error.
 */
FgVar *
fg_tape_op_new (FgTape *tape, guint ndim, const gsize *shape, FgVar *const *inputs,
                guint n_inputs, FgBackwardFunc backward, gsize saved_size, gpointer *saved)
{
  if (saved != NULL)
    *saved = NULL;
  g_return_val_if_fail (tape != NULL, NULL);
  g_return_val_if_fail (ndim >= 1 && ndim <= FG_TENSOR_MAX_DIMS && shape != NULL, NULL);
  g_return_val_if_fail (n_inputs == 0 || inputs != NULL, NULL);
  g_return_val_if_fail (saved_size == 0 || saved != NULL, NULL);

  gboolean needs_grad = FALSE;
  for (guint i = 0; i < n_inputs; i++)
    {
      if (inputs[i] == NULL)
        return NULL;
      needs_grad |= inputs[i]->requires_grad;
    }
  needs_grad = needs_grad && tape->grad_enabled && backward != NULL;

  FgNode *node = node_alloc (tape);
  node->var.value = _fg_tensor_make (NULL, ndim, shape);
  node->var.value.data = fg_tape_alloc_floats (tape, fg_tensor_numel (&node->var.value));
  if (saved_size > 0)
    *saved = node->saved = fg_tape_alloc (tape, saved_size);
  if (needs_grad)
    {
      node->var.requires_grad = TRUE;
      node->backward = backward;
      node->n_inputs = n_inputs;
      node->inputs = fg_tape_alloc (tape, n_inputs * sizeof (FgVar *));
      memcpy (node->inputs, inputs, n_inputs * sizeof (FgVar *));
      record (tape, node);
    }
  return &node->var;
}

FgVar *
_fg_tape_view_new (FgTape *tape, FgVar *parent, const FgTensor *value, FgNodeAlias alias,
                   gsize alias_row, FgBackwardFunc backward, gsize saved_size, gpointer *saved)
{
  FgNode *node = node_alloc (tape);
  node->var.value = *value;
  if (saved_size > 0)
    *saved = node->saved = fg_tape_alloc (tape, saved_size);
  if (parent->requires_grad && tape->grad_enabled)
    {
      node->var.requires_grad = TRUE;
      node->alias = alias;
      node->alias_parent = _fg_node (parent);
      node->alias_row = alias_row;
      node->backward = alias == FG_NODE_ALIAS_NONE ? backward : NULL;
      node->n_inputs = 1;
      node->inputs = fg_tape_alloc (tape, sizeof (FgVar *));
      node->inputs[0] = parent;
      /* Recorded even when aliasing, so that backward can clear its grad pointer. */
      record (tape, node);
    }
  return &node->var;
}

/* A gradient buffer of n floats from the pool (64-byte aligned, not zeroed). */
static float *
grad_pool_get (FgTape *tape, gsize n)
{
  if (tape->grad_free == NULL)
    {
      tape->grad_free = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL,
                                               (GDestroyNotify) g_ptr_array_unref);
      tape->grad_raw = g_ptr_array_new_with_free_func (g_free);
    }
  GPtrArray *stack = g_hash_table_lookup (tape->grad_free, GSIZE_TO_POINTER (n));
  if (stack != NULL && stack->len > 0)
    return g_ptr_array_steal_index_fast (stack, stack->len - 1);
  gpointer raw = g_malloc (n * sizeof (float) + FG_ARENA_ALIGN);
  g_ptr_array_add (tape->grad_raw, raw);
  tape->heap_allocs++;
  return (float *) round_up ((guintptr) raw, FG_ARENA_ALIGN);
}

static void
grad_pool_put (FgTape *tape, float *data, gsize n)
{
  GPtrArray *stack = g_hash_table_lookup (tape->grad_free, GSIZE_TO_POINTER (n));
  if (stack == NULL)
    {
      stack = g_ptr_array_new ();
      g_hash_table_insert (tape->grad_free, GSIZE_TO_POINTER (n), stack);
      tape->heap_allocs++;
    }
  g_ptr_array_add (stack, data);
}

static FgTensor *
grad_get (FgTape *tape, FgVar *v, gboolean zero, gboolean *fresh)
{
  if (fresh != NULL)
    *fresh = FALSE;
  if (!v->requires_grad)
    return NULL;
  if (v->grad.data != NULL)
    return &v->grad;

  FgNode *node = _fg_node (v);
  if (node->alias != FG_NODE_ALIAS_NONE)
    {
      /* Consumers of the view accumulate straight into the parent's gradient. */
      FgTensor *pg = grad_get (tape, &node->alias_parent->var, TRUE, NULL);
      v->grad = _fg_tensor_make (NULL, v->value.ndim, v->value.shape);
      if (node->alias == FG_NODE_ALIAS_ROWS)
        {
          v->grad.data = pg->data + node->alias_row * pg->ld;
          v->grad.ld = pg->ld;
        }
      else
        {
          g_assert (fg_tensor_is_contiguous (pg));
          v->grad.data = pg->data;
        }
      return &v->grad;
    }

  v->grad = _fg_tensor_make (NULL, v->value.ndim, v->value.shape);
  gsize n = fg_tensor_numel (&v->grad);
  if (tape->in_backward && node->backward != NULL)
    {
      v->grad.data = grad_pool_get (tape, MAX (n, 1));
      node->grad_pooled = TRUE;
    }
  else
    v->grad.data = fg_tape_alloc_floats (tape, n);
  if (zero)
    memset (v->grad.data, 0, n * sizeof (float));
  else if (fresh != NULL)
    *fresh = TRUE;
  return &v->grad;
}

/**
 * fg_tape_grad:
 * @tape: a tape
 * @v: a node
 *
 * The gradient buffer of @v for a backward function to add into: allocated from the arena and
 * zeroed on first use; for a weight leaf, the weight's own grad.  Always contiguous.
 *
 * Returns: (transfer none) (nullable): the buffer, or NULL when @v needs no gradient.
 */
FgTensor *
fg_tape_grad (FgTape *tape, FgVar *v)
{
  g_return_val_if_fail (tape != NULL, NULL);
  if (v == NULL)
    return NULL;
  return grad_get (tape, v, TRUE, NULL);
}

FgTensor *
_fg_tape_grad_fresh (FgTape *tape, FgVar *v, gboolean *fresh)
{
  return grad_get (tape, v, FALSE, fresh);
}

/**
 * fg_tape_grad_fresh:
 * @tape: a tape
 * @v: a node
 * @fresh: (out): TRUE when the buffer was just allocated and is NOT zeroed
 *
 * fg_tape_grad () for a backward function that can write every element of the gradient:
 * when *@fresh is TRUE it must do so (write, not add), which saves zeroing a buffer that is
 * about to be overwritten; otherwise it adds as usual (another consumer got there first, or
 * @v is a weight).
 *
 * Returns: (transfer none) (nullable): the buffer, or NULL when @v needs no gradient.
 */
FgTensor *
fg_tape_grad_fresh (FgTape *tape, FgVar *v, gboolean *fresh)
{
  g_return_val_if_fail (tape != NULL && fresh != NULL, NULL);
  *fresh = FALSE;
  if (v == NULL)
    return NULL;
  return grad_get (tape, v, FALSE, fresh);
}

/* The weights whose leaves are inputs of records, each with the first such record, into
 * tape->gsq in increasing order of `last` (the records are walked in order), i.e. the reverse
 * of the order in which the backward walk finishes them; returns their number. */
static gsize
find_last_uses (FgTape *tape)
{
  gsize cap = 0, n = 0;
  for (gsize i = 0; i < tape->n_records; i++)
    cap += tape->records[i]->n_inputs;
  tape->gsq = fg_tape_alloc (tape, MAX (cap, 1) * sizeof (FgGradSq));
  for (gsize i = 0; i < tape->n_records; i++)
    {
      const FgNode *node = tape->records[i];
      for (guint k = 0; k < node->n_inputs; k++)
        {
          FgWeight *w = node->inputs[k] != NULL ? _fg_node (node->inputs[k])->weight : NULL;
          gsize e = 0;
          if (w == NULL)
            continue;
          while (e < n && tape->gsq[e].w != w)
            e++;
          if (e == n)
            tape->gsq[n++] = (FgGradSq){ w, i, NAN, FALSE };
        }
    }
  tape->n_gsq = n;
  return n;
}

/* The entry of gsq that the running backward function finishes for leaf v, or NULL. */
static FgGradSq *
finishing_here (FgTape *tape, FgVar *v)
{
  if (v == NULL || !tape->track_norms)
    return NULL;
  const FgWeight *w = _fg_node (v)->weight;
  if (w == NULL)
    return NULL;
  for (gsize e = tape->next_gsq; e > 0 && tape->gsq[e - 1].last == tape->cur_record; e--)
    if (tape->gsq[e - 1].w == w)
      return &tape->gsq[e - 1];
  return NULL;
}

gboolean
_fg_tape_grad_final (FgTape *tape, FgVar *v)
{
  return finishing_here (tape, v) != NULL;
}

void
_fg_tape_set_grad_sumsq (FgTape *tape, FgVar *v, double sumsq)
{
  FgGradSq *e = finishing_here (tape, v);
  g_return_if_fail (e != NULL);
  e->sumsq = sumsq;
  e->taken = TRUE;
}

static gboolean
run_backward (FgTape *tape, FgVar *out, const FgTensor *seed)
{
  tape->n_gsq = 0;
  if (!out->requires_grad)
    return TRUE; /* nothing upstream wants a gradient */

  /* Intermediate gradients belong to one backward pass: clearing them lets a caller run
   * several passes over one tape (e.g. losses seeded separately) and have only the weights'
   * gradients accumulate. */
  for (gsize i = 0; i < tape->n_records; i++)
    tape->records[i]->var.grad.data = NULL;

  tape->in_backward = TRUE;
  FgTensor *g = fg_tape_grad (tape, out);
  if (seed != NULL)
    _fg_accumulate (g, seed, 1.0f, FALSE);
  else
    g->data[0] += 1.0f;

  /* Backward functions compute with kernels, but one that calls ops must not grow the tape
   * under our feet with records that would be replayed. */
  gboolean enabled = tape->grad_enabled;
  tape->grad_enabled = FALSE;
  /* tape->gsq[next − 1]: the next weight to finish */
  gsize next = tape->track_norms ? find_last_uses (tape) : 0;
  for (gsize i = tape->n_records; i-- > 0;)
    {
      FgNode *node = tape->records[i];
      tape->cur_record = i;
      tape->next_gsq = next;
      if (node->backward != NULL && node->var.grad.data != NULL)
        {
          const guint cur = tape->cur;
          const gsize used = tape->used;
          node->backward (tape, &node->var, node->inputs, node->saved);
          tape->cur = cur; /* its scratch is dead now */
          tape->used = used;
        }
      if (node->grad_pooled) /* every consumer of the node has run */
        {
          grad_pool_put (tape, node->var.grad.data, MAX (fg_tensor_numel (&node->var.grad), 1));
          node->var.grad.data = NULL;
          node->grad_pooled = FALSE;
        }
      for (; next > 0 && tape->gsq[next - 1].last == i; next--)
        if (!tape->gsq[next - 1].taken)
          tape->gsq[next - 1].sumsq = _fg_weight_grad_sumsq (tape->gsq[next - 1].w);
    }
  tape->next_gsq = 0;
  tape->grad_enabled = enabled;
  tape->in_backward = FALSE;
  return TRUE;
}

/**
 * fg_tape_backward:
 * @tape: a tape
 * @loss: (nullable): a [1, 1] node
 * @error: return location for a #GError
 *
 * Propagates d@loss/d@loss = 1 back through every recorded op, accumulating into the
 * gradients of trainable weights.  Fails with %FG_ERROR_FAILED when @loss is NULL (an op
 * failed earlier) or not a [1, 1] scalar, and with %FG_ERROR_NUMERIC when the loss is not
 * finite (then no gradient is touched).
 *
 * Returns: TRUE on success.
 */
gboolean
fg_tape_backward (FgTape *tape, FgVar *loss, GError **error)
{
  g_return_val_if_fail (tape != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  if (loss == NULL)
    {
      g_set_error_literal (error, FG_ERROR, FG_ERROR_FAILED,
                           "backward: no loss (an op on the tape failed)");
      return FALSE;
    }
  if (fg_tensor_numel (&loss->value) != 1)
    {
      char buf[64];
      g_set_error (error, FG_ERROR, FG_ERROR_FAILED,
                   "backward: the loss must be a [1, 1] scalar, not %s",
                   _fg_tape_shape_str (&loss->value, buf, sizeof buf));
      return FALSE;
    }
  if (!isfinite (loss->value.data[0]))
    {
      g_set_error (error, FG_ERROR, FG_ERROR_NUMERIC, "backward: the loss is %g",
                   (double) loss->value.data[0]);
      return FALSE;
    }
  return run_backward (tape, loss, NULL);
}

/**
 * fg_tape_backward_seed:
 * @tape: a tape
 * @out: (nullable): any node
 * @seed: dL/d@out, the shape of @out (any ld)
 * @error: return location for a #GError
 *
 * Backward from @out with an explicit upstream gradient.  Fails with %FG_ERROR_FAILED when
 * @out is NULL or @seed's shape differs, with %FG_ERROR_NUMERIC when @seed is not finite.
 *
 * Returns: TRUE on success.
 */
gboolean
fg_tape_backward_seed (FgTape *tape, FgVar *out, const FgTensor *seed, GError **error)
{
  g_return_val_if_fail (tape != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  if (out == NULL)
    {
      g_set_error_literal (error, FG_ERROR, FG_ERROR_FAILED,
                           "backward: no output (an op on the tape failed)");
      return FALSE;
    }
  if (seed == NULL || seed->data == NULL || fg_tensor_rows (seed) != fg_tensor_rows (&out->value)
      || fg_tensor_cols (seed) != fg_tensor_cols (&out->value))
    {
      char b1[64], b2[64];
      g_set_error (error, FG_ERROR, FG_ERROR_FAILED, "backward: seed %s does not match output %s",
                   seed ? _fg_tape_shape_str (seed, b1, sizeof b1) : "NULL",
                   _fg_tape_shape_str (&out->value, b2, sizeof b2));
      return FALSE;
    }
  for (gsize i = 0; i < fg_tensor_rows (seed); i++)
    {
      const float *s = fg_tensor_row (seed, i);
      for (gsize j = 0; j < fg_tensor_cols (seed); j++)
        if (!isfinite (s[j]))
          {
            g_set_error (error, FG_ERROR, FG_ERROR_NUMERIC,
                         "backward: seed element (%" G_GSIZE_FORMAT ", %" G_GSIZE_FORMAT ") is %g",
                         i, j, (double) s[j]);
            return FALSE;
          }
    }
  return run_backward (tape, out, seed);
}

/**
 * fg_tape_grad_norm:
 * @tape: a tape
 * @set: a weight set
 *
 * The global L2 norm of the gradients of @set's trainable weights: the value of
 * fg_weight_set_grad_norm (@set), bit for bit.  With fg_tape_set_track_grad_norms () on, the
 * last backward pass of @tape took each weight's Σ g² as soon as its gradient was final (after
 * the first record, in the order of creation, that reads the weight), while the part just
 * written was still in cache; weights that pass did not reach, or all of them with tracking
 * off, are summed here.  Valid after a backward
 * pass until the gradients are changed by anything else (another backward pass of this tape
 * recomputes them; clearing, clipping or an optimizer step does not).
 *
 * Returns: the norm (NaN or infinity when a gradient is not finite).
 */
double
fg_tape_grad_norm (FgTape *tape, const FgWeightSet *set)
{
  double total = 0.0;
  g_return_val_if_fail (tape != NULL, NAN);
  g_return_val_if_fail (set != NULL, NAN);
  for (guint i = 0; i < fg_weight_set_len (set); i++)
    {
      FgWeight *w = fg_weight_set_get (set, i);
      gsize e = 0;
      if (!w->trainable || w->grad.data == NULL)
        continue;
      while (e < tape->n_gsq && tape->gsq[e].w != w)
        e++;
      /* the set's norm adds each weight's own sum (_fg_weight_grad_sumsq) in set order */
      total += e < tape->n_gsq ? tape->gsq[e].sumsq : _fg_weight_grad_sumsq (w);
    }
  return sqrt (total);
}

/* ---- Shared kernels ---------------------------------------------------------------------- */

/* Σ x·y in double with eight accumulators in registers (gcc pairs them into SSE2/AVX lanes),
 * as fg_sum_f64 (<flowgmm/vecmath.h>): one dependency chain of double adds would cost its full
 * latency per element. */
double
_fg_dot_f64 (const float *x, const float *y, gsize n)
{
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
  gsize i = 0;
  for (; i + 8 <= n; i += 8)
    {
      s0 += (double) x[i] * y[i];
      s1 += (double) x[i + 1] * y[i + 1];
      s2 += (double) x[i + 2] * y[i + 2];
      s3 += (double) x[i + 3] * y[i + 3];
      s4 += (double) x[i + 4] * y[i + 4];
      s5 += (double) x[i + 5] * y[i + 5];
      s6 += (double) x[i + 6] * y[i + 6];
      s7 += (double) x[i + 7] * y[i + 7];
    }
  for (; i < n; i++)
    s0 += (double) x[i] * y[i];
  return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7));
}

void
_fg_colsum (float *dst, gboolean accumulate, const FgTensor *src, double *acc)
{
  const gsize cols = fg_tensor_cols (src);
  memset (acc, 0, cols * sizeof (double));
  _fg_colsum_acc (acc, src);
  if (accumulate)
    for (gsize j = 0; j < cols; j++)
      dst[j] = (float) (dst[j] + acc[j]);
  else
    for (gsize j = 0; j < cols; j++)
      dst[j] = (float) acc[j];
}

void
_fg_colsum_acc (double *acc, const FgTensor *src)
{
  const gsize rows = fg_tensor_rows (src), cols = fg_tensor_cols (src);
  double *restrict a = acc;
  gsize i = 0;
  /* Four rows per pass over acc: a quarter of the loads and stores of the accumulator. */
  for (; i + 4 <= rows; i += 4)
    {
      const float *restrict s0 = fg_tensor_row (src, i), *restrict s1 = fg_tensor_row (src, i + 1);
      const float *restrict s2 = fg_tensor_row (src, i + 2), *restrict s3 = fg_tensor_row (src, i + 3);
      FG_SIMD_FOR (j, cols, a[j] += ((double) s0[j] + s1[j]) + ((double) s2[j] + s3[j]));
    }
  for (; i < rows; i++)
    {
      const float *restrict s = fg_tensor_row (src, i);
      FG_SIMD_FOR (j, cols, a[j] += s[j]);
    }
}

typedef struct {
  FgTensor *dst;
  const FgTensor *src;
  float scale;
  gboolean overwrite;
} AccumulateJob;

static void
accumulate_task (gpointer data, guint t, guint n_tasks)
{
  const AccumulateJob *j = data;
  const gsize rows = fg_tensor_rows (j->dst), cols = fg_tensor_cols (j->dst);
  const float scale = j->scale;
  gsize r0, r1;
  _fg_pool_range (rows, t, n_tasks, 8, &r0, &r1);
  for (gsize i = r0; i < r1; i++)
    {
      float *restrict d = fg_tensor_row (j->dst, i);
      const float *restrict s = fg_tensor_row (j->src, i);
      if (j->overwrite)
        FG_SIMD_FOR (c, cols, d[c] = scale * s[c]);
      else
        FG_SIMD_FOR (c, cols, d[c] += scale * s[c]);
    }
}

/* Row blocks over the core's threads when the tensors are large. */
void
_fg_accumulate (FgTensor *dst, const FgTensor *src, float scale, gboolean overwrite)
{
  AccumulateJob j = { dst, src, scale, overwrite };
  const gsize rows = fg_tensor_rows (dst);
  const double ns = (double) rows * fg_tensor_cols (dst) * FG_POOL_NS_PER_ELEMENT;
  _fg_pool_run ((guint) MIN ((gsize) _fg_pool_tasks (ns), MAX (rows / 8, 1)), accumulate_task, &j);
}

void
_fg_copy_rows (float *dst, const FgTensor *src)
{
  const gsize rows = fg_tensor_rows (src), cols = fg_tensor_cols (src);
  if (fg_tensor_is_contiguous (src))
    {
      memcpy (dst, src->data, rows * cols * sizeof (float));
      return;
    }
  for (gsize i = 0; i < rows; i++)
    memcpy (dst + i * cols, fg_tensor_row (src, i), cols * sizeof (float));
}

void
_fg_fill_rows (FgTensor *dst, const float *v)
{
  const gsize rows = fg_tensor_rows (dst), cols = fg_tensor_cols (dst);
  for (gsize i = 0; i < rows; i++)
    memcpy (fg_tensor_row (dst, i), v, cols * sizeof (float));
}

FgTensor
_fg_tensor_view_rows (const FgTensor *t, gsize start, gsize n)
{
  FgTensor v = *t;
  v.data = t->data + start * t->ld;
  v.shape[0] = n;
  return v;
}
