/* flowgmm — the core's persistent worker pool (core/parallel.c).
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
 *    the pool exists (DESIGN.md: never two pools at once), and a kernel started inside a task
 *    runs inline (_fg_pool_threads () is 1 there);
 *  - when another application thread holds the pool, the tasks of a job run one after the
 *    other on the caller: the same decomposition, the same results.
 */
#pragma once

#include <glib.h>
#include <flowgmm/tape.h>

G_BEGIN_DECLS

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

G_END_DECLS
