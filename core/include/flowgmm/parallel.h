/* SPDX-License-Identifier: MIT */
/* flowgmm — the thread budget and the core's worker pool.
 *
 * The numeric core owns its threads: skinny products are split by rows over a persistent pool of
 * workers that each call single-threaded OpenBLAS, and elementwise and distance kernels run on
 * the same pool.  Plugins with kernels of their own split them the same way.
 *
 * Part of the plugin ABI. */
#pragma once

#include <flowgmm/error.h>

G_BEGIN_DECLS

/* Number of threads the numeric core may use for its own kernels and OpenBLAS (0 = all cores).
 * Never run an OpenBLAS pool and the core's threads at once: the core calls single-threaded
 * sgemm from its own threads when it splits work. */
FG_API void  fg_set_num_threads (guint n);
FG_API guint fg_get_num_threads (void);

/* The core's persistent worker pool (fg_get_num_threads () threads, the caller's included), for
 * kernels that split their work the way the core's own ops do.  fg_parallel_tasks () says how
 * many tasks a kernel of about `ns` nanoseconds of single-threaded work should be cut into (1
 * when a split would not pay, or inside a task); fg_parallel_run () runs func (data, t, n) for
 * every t < n, task 0 on the calling thread, and returns when all are done.  Make the split
 * depend only on shapes and the task count, never on which thread runs a task, and results stay
 * bit-reproducible for a given thread count.  Tasks must call only single-threaded code
 * (OpenBLAS is held at one thread while the pool exists). */
typedef void (*FgParallelTaskFunc) (gpointer data, guint task, guint n_tasks);
FG_API guint fg_parallel_tasks (double ns);
FG_API void  fg_parallel_run (guint n_tasks, FgParallelTaskFunc func, gpointer data);

G_END_DECLS
