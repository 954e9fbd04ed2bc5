/* SPDX-License-Identifier: MIT */
/* flowgmm — internals of the numeric layer, shared by its files (and by later layers that run
 * kernels on the pool).  Two parts: the autodiff tape (tape.c and the ops-*.c files) and the
 * worker pool (parallel.c).
 *
 * The tape.
 *
 * Memory model: every node, value, gradient and scratch buffer of a step comes from the tape's
 * arena (a list of large blocks that survive fg_tape_reset ()), and the list of backward records
 * is a growing array that also survives reset.  A step that makes the same allocations in the
 * same order as the previous one therefore reuses exactly the same memory and never calls the
 * heap.
 *
 * Backward passes are the exception: the gradient of a record is taken from a pool of
 * buffers (kept across resets) and returned to it as soon as the record's own backward has
 * run, since every consumer of a node was created after it and has run before it; and the
 * arena is rewound after each backward function, so its scratch is reused by the next.  A
 * step's memory is then its activations plus the gradients alive at one time, not every
 * gradient of the step.
 *
 * Gradients: every gradient buffer the tape hands out is contiguous (ld == cols).  Leaves of
 * weights alias w->grad; slice_rows and reshape views alias a range of their parent's gradient
 * (so their consumers accumulate straight into it); column/channel slices are strided, so they
 * get their own buffer and a backward that adds it into the parent's range.
 */
#pragma once

#include <math.h>
#include <string.h>
#include <flowgmm/tape.h>

G_BEGIN_DECLS

typedef enum {
  FG_NODE_ALIAS_NONE = 0,
  FG_NODE_ALIAS_ROWS, /* grad = rows [alias_row, ...) of the parent's grad, parent's ld */
  FG_NODE_ALIAS_FLAT, /* grad = the parent's contiguous grad reinterpreted with this shape */
} FgNodeAlias;

typedef struct _FgNode FgNode;
struct _FgNode {
  FgVar var;               /* first: an FgVar * is an FgNode * */
  FgBackwardFunc backward; /* NULL for leaves and aliasing views */
  FgVar **inputs;          /* arena copy, only when recorded */
  guint n_inputs;
  gpointer saved;          /* arena memory for the backward's private data */
  FgNodeAlias alias;
  FgNode *alias_parent;
  gsize alias_row;
  FgWeight *weight;        /* leaves of trainable weights (fg_tape_weight): the weight */
  gboolean grad_pooled;    /* grad.data is a buffer of the tape's gradient pool */
};

static inline FgNode *
_fg_node (FgVar *v)
{
  return (FgNode *) v;
}

/* A contiguous tensor over `data` (trailing shape entries set to 1). */
static inline FgTensor
_fg_tensor_make (float *data, guint ndim, const gsize *shape)
{
  FgTensor t;
  memset (&t, 0, sizeof t);
  t.data = data;
  t.ndim = ndim;
  for (guint i = 0; i < FG_TENSOR_MAX_DIMS; i++)
    t.shape[i] = i < ndim ? shape[i] : 1;
  t.ld = fg_tensor_cols (&t);
  return t;
}

/* "2x3x4 (ld 7)" into buf (64 bytes at least) for critical messages. */
const char *_fg_tape_shape_str (const FgTensor *t, char *buf, gsize size);

/* The gradient buffer of v for an op that will write every element of it when *fresh is TRUE
 * (it was just allocated and is NOT zeroed), or accumulate into it otherwise.  Saves the
 * memset of zero-on-first-touch when the first consumer overwrites anyway (GEMM with beta 0).
 * Returns NULL when v needs no gradient. */
FgTensor *_fg_tape_grad_fresh (FgTape *tape, FgVar *v, gboolean *fresh);

/* A view node of `parent`: value as given (aliasing the parent's memory).  With alias !=
 * NONE the gradient aliases the parent's (no record backward needed); otherwise `backward`
 * maps the view's own gradient back into the parent. */
FgVar *_fg_tape_view_new (FgTape *tape, FgVar *parent, const FgTensor *value, FgNodeAlias alias,
                          gsize alias_row, FgBackwardFunc backward, gsize saved_size,
                          gpointer *saved);

/* Scratch for one kernel at a time (64-byte aligned, not zeroed), valid until the next call;
 * kept by the tape across resets and freed with it. */
gpointer _fg_tape_workspace (FgTape *tape, gsize bytes);

/* ---- Kernels shared by the op files ------------------------------------------------------ */

/* Elementwise loops are written plain (restrict pointers, no branches: a comparison is written
 * `(float) (int) (x > 0)`) and left to the compiler's vectorizer, so that one portable source
 * serves every target; the flags and pragmas that let gcc vectorise them are explained in
 * doc/performance.md ("Compiler notes"). */

/* Hot elementwise kernels are also compiled for AVX-512 and AVX2, and the dynamic loader picks
 * the widest the CPU has (target_clones, an ifunc): the build stays portable (no -march) and
 * still uses the machine's vectors.  The files that use it compile with fp-contract=off (a
 * pragma before any code), so that no clone fuses a multiply and an add: every clone computes
 * exactly the values of the baseline one. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__ELF__)         \
    && defined(__GLIBC__) && __GNUC__ >= 8
#define FG_CLONES __attribute__ ((target_clones ("avx512f", "avx2", "default")))
#else
#define FG_CLONES
#endif

#define FG_SIMD_FOR(j, n, ...)                                                                  \
  G_STMT_START                                                                                  \
  {                                                                                             \
    const gsize fg_n_ = (n);                                                                    \
    for (gsize j = 0; j < fg_n_; j++)                                                           \
      {                                                                                         \
        __VA_ARGS__;                                                                            \
      }                                                                                         \
  }                                                                                             \
  G_STMT_END

/* Σ g² of one trainable weight's gradient: its chunks in order (split over the core's
 * threads), the value fg_weight_set_grad_norm adds into its sum for this weight */
double _fg_weight_grad_sumsq (FgWeight *w);
/* During a backward pass that tracks norms (fg_tape_set_track_grad_norms): TRUE when the
 * running backward function is the last to touch the gradient of leaf v (a weight's), so that
 * it may take that weight's _fg_weight_grad_sumsq itself, in the task that finished the
 * gradient while it is in cache and where the other thread would otherwise wait, and hand it
 * over with _fg_tape_set_grad_sumsq; the tape then skips its own pass for that weight. */
gboolean _fg_tape_grad_final (FgTape *tape, FgVar *v);
void _fg_tape_set_grad_sumsq (FgTape *tape, FgVar *v, double sumsq);

/* Σ x·y in double with eight independent partial sums (the scheme of fg_sum_f64 in
 * <flowgmm/vecmath.h>: a fixed order, reproducible). */
double _fg_dot_f64 (const float *x, const float *y, gsize n);
/* dst[j] (+)= Σ_i src[i, j] in double; acc is caller scratch of `cols` doubles. */
void _fg_colsum (float *dst, gboolean accumulate, const FgTensor *src, double *acc);
/* acc[j] += Σ_i src[i, j] in double (acc not cleared). */
void _fg_colsum_acc (double *acc, const FgTensor *src);
/* Activations on contiguous runs (ops-elementwise.c): y = act(y) in place, and
 * dz = g · act'(from y). */
void _fg_act_forward (FgActivation act, float slope, float *y, gsize n);
void _fg_act_grad (FgActivation act, float slope, float *dz, const float *g, const float *y,
                   gsize n);
/* y[j] = act (y[j] + bias[j]) (bias may be NULL), then × mask[j] (may be NULL): the bias, the
 * activation and a dropout mask applied in one pass over a contiguous row. */
void _fg_act_forward_row (FgActivation act, float slope, float *y, const float *bias,
                          const float *mask, gsize n);
/* dz = g·keep where ym > 0, else +0: the derivative of dropout(relu(z)) from its output ym
 * (ym > 0 exactly where z > 0 and the element was kept). */
void _fg_act_grad_relu_dropout (float *dz, const float *g, const float *ym, float keep, gsize n);

/* Dropout masks (ops-elementwise.c, see fg_op_dropout): a key drawn from the caller's RNG, and
 * element e of a row-major tensor kept when its k bits of the counter-based stream are
 * >= thr.  Any range of elements can be made independently (and so in parallel). */
typedef struct {
  guint64 key;
  guint k;      /* bits per element: 1, 8, 16 or 32 */
  guint32 thr;
  float keep;   /* 1 / (1 − p) */
} FgDropout;
/* Draws the key (one 64-bit word from rng). */
void _fg_dropout_init (FgDropout *d, float p, FgRng *rng);
/* m[j] = keep or 0 for elements e0 .. e0 + n − 1; lanes: scratch of n entries (k > 1). */
void _fg_dropout_fill (const FgDropout *d, gsize e0, gsize n, float *m, guint32 *lanes);

/* Rows per block where an op keeps a block of activations in cache (a 1024-row activation of
 * width 256 already spills a 1 MiB L2). */
#define FG_CHUNK_ROWS 256
/* dst (+)= src elementwise over rows × cols with each tensor's own ld; scale multiplies src. */
void _fg_accumulate (FgTensor *dst, const FgTensor *src, float scale, gboolean overwrite);
/* Contiguous copy of a possibly strided tensor (same shape). */
void _fg_copy_rows (float *dst, const FgTensor *src);
/* Fill all rows of dst with the row vector v (cols entries). */
void _fg_fill_rows (FgTensor *dst, const float *v);

/* C = alpha·op(A)·op(B) + beta·C through cblas_sgemm (row-major; each operand's own ld).
 * beta == 0 never reads C (it may be uninitialised). */
void _fg_sgemm (gboolean trans_a, gboolean trans_b, gsize m, gsize n, gsize k, float alpha,
                const float *a, gsize lda, const float *b, gsize ldb, float beta, float *c,
                gsize ldc);

/* Rows [start, start+n) of t (same ld). */
FgTensor _fg_tensor_view_rows (const FgTensor *t, gsize start, gsize n);


/* The worker pool (parallel.c).
 *
 * A training step of a tabular flow is a few hundred kernels of 10–500 µs each, so threads must
 * be handed work with microsecond latency: the pool's workers are started once, spin for a
 * short while after each job and only then sleep.  The calling thread runs task 0 itself.
 *
 * Rules the kernels follow:
 *  - the split of a kernel into tasks depends only on its shapes and on the thread budget
 *    (fg_get_num_threads ()), never on which thread runs a task or on timing, so results are
 *    bit-reproducible for a given thread count;
 *  - a task calls single-threaded code only: OpenBLAS is held at one thread from the moment
 *    the pool exists (never two pools at once: doc/performance.md, "Own threading"), and a kernel started inside a task
 *    runs inline (_fg_pool_threads () is 1 there);
 *  - when another application thread holds the pool, the tasks of a job run one after the
 *    other on the caller: the same decomposition, the same results.
 */

/* Threads a kernel may split into now: the budget (capped at FG_POOL_MAX_THREADS), or 1 inside
 * a task.  Starts the pool (and sets OpenBLAS to one thread) on first use with a budget > 1. */
guint _fg_pool_threads (void);

/* How many tasks a kernel of about `ns` nanoseconds of single-threaded work should be split
 * into: 1 below FG_POOL_MIN_TASK_NS per task, at most _fg_pool_threads (). */
guint _fg_pool_tasks (double ns);

/* Run func (data, t, n) for t = 0 .. n-1 (task 0 on the caller); returns when all are done. */
void _fg_pool_run (guint n, FgTapeTaskFunc func, gpointer data);

/* Rows [*r0, *r1) of task t when n rows are cut into `tasks` pieces whose boundaries fall on
 * multiples of `align` rows (the last piece takes the remainder). */
static inline void
_fg_pool_range (gsize n, guint t, guint tasks, gsize align, gsize *r0, gsize *r1)
{
  const gsize units = (n + align - 1) / align;
  const gsize u0 = units * t / tasks, u1 = units * (t + 1) / tasks;
  *r0 = MIN (u0 * align, n);
  *r1 = MIN (u1 * align, n);
}

#define FG_POOL_MAX_THREADS 64
/* Below this much work per task a split costs more in hand-off than it saves. */
#define FG_POOL_MIN_TASK_NS 4000.0
/* Rough single-core costs used to size splits: sgemm at ~100 GFLOP/s, and a streaming
 * elementwise pass per element. */
#define FG_POOL_NS_PER_FLOP 0.01
#define FG_POOL_NS_PER_ELEMENT 0.4

/* Every function of the core that returns FALSE or NULL sets its GError.  Where a failure is
 * received, debug builds (without NDEBUG) check that it carries one: a failure without a reason
 * would be stored as "unknown error". */
#ifdef NDEBUG
#define _fg_assert_error_set(err) ((void) 0)
#else
#define _fg_assert_error_set(err)                                                           \
  G_STMT_START                                                                              \
  {                                                                                         \
    if ((err) == NULL)                                                                      \
      g_error ("%s: a call failed without setting its GError", G_STRLOC);                   \
  }                                                                                         \
  G_STMT_END
#endif

/* The BLAS library as it describes itself ("OpenBLAS 0.3.21 DYNAMIC_ARCH ... Haswell ...") and
 * the kernel it chose for this machine ("Haswell"; OPENBLAS_CORETYPE overrides it); NULL when
 * the library cannot say.  Results are bit-identical only for the same build and kernel. */
const char *_fg_blas_library (void);
const char *_fg_blas_kernel (void);

G_END_DECLS
