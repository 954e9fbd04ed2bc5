/* SPDX-License-Identifier: MIT */
/* flowgmm — the core's persistent worker pool (see numeric/numeric-private.h).
 *
 * Hand-off: each worker has its own ticket word on its own cache line.  The caller publishes a
 * job (function, data, task count), bumps the tickets of the workers it needs, and then it and
 * the workers claim tasks until none is left; the caller waits only for tasks a worker has
 * already started.  A worker whose vCPU is busy elsewhere (these machines are shared) therefore
 * never holds a step up: its tasks are run by the caller.  The job number, the task count and
 * the next task share one 64-bit word that is claimed by compare-and-swap, so a worker that
 * wakes late can never take a task of a later job.  An idle worker spins on its ticket for
 * FG_POOL_SPIN_US (a training step issues its kernels back to back, microseconds apart) and
 * then sleeps on a condition variable; the caller wakes sleepers only when there are some, so a
 * busy step pays no system call.  OpenBLAS is set to one thread when the pool starts: from then
 * on every product the core splits runs as single-threaded sgemm calls on the pool's threads.
 */
#include "config.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

#include <flowgmm/parallel.h>

#include "numeric/numeric-private.h"

#if defined(HAVE_OPENBLAS_SET_NUM_THREADS)
#include <cblas.h>
#endif

/* How long an idle worker spins before it sleeps, and how many pauses the caller spins on a
 * task another thread has started before it yields its CPU. */
#define FG_POOL_SPIN_US 100
#define FG_POOL_WAIT_SPINS 2000

typedef struct {
  gint ticket; /* the last job posted to this worker */
  gchar pad[64 - sizeof (gint)];
} Slot;

typedef struct {
  GMutex start_lock;     /* serialises starting workers */
  GMutex owner;          /* held by the thread whose job is running */
  GMutex sleep_lock;
  GCond wake;
  gint sleepers;         /* workers blocked in g_cond_wait */
  guint n_workers;       /* started so far (indices 1 .. n_workers) */
  gint started;          /* non-zero once OpenBLAS has been set to one thread */

  /* The current job: func and data are written by the owner before it publishes the job word
   * (job number << 32 | task count << 16 | next task), and stay put until every task of it is
   * done. */
  FgTapeTaskFunc func;
  gpointer data;
  guint seq;
  gchar pad0[64];
  _Atomic guint64 job;
  gchar pad1[64];
  gint done;             /* tasks of the current job finished */
  gchar pad2[64];

  Slot slot[FG_POOL_MAX_THREADS];
} Pool;

static Pool pool;
static _Thread_local gboolean in_task = FALSE;

static inline void
cpu_relax (void)
{
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause ();
#elif defined(__aarch64__)
  __asm__ __volatile__ ("yield");
#endif
}

/* Claim and run tasks of job `seq` until none is left (or another job has replaced it).  Tasks
 * go to whoever asks first: a worker that is slow to wake (its vCPU busy elsewhere) leaves its
 * share to the caller instead of making it wait. */
static void
run_claimed (guint seq)
{
  guint64 v = atomic_load (&pool.job);
  for (;;)
    {
      const guint t = (guint) (v & 0xffff), n = (guint) ((v >> 16) & 0xffff);
      if ((guint) (v >> 32) != seq || t >= n)
        return;
      if (!atomic_compare_exchange_weak (&pool.job, &v, v + 1))
        continue; /* v now holds the current word */
      pool.func (pool.data, t, n);
      g_atomic_int_inc (&pool.done);
      v = atomic_load (&pool.job);
    }
}

static gpointer
worker_main (gpointer p)
{
  const guint me = GPOINTER_TO_UINT (p);
  Slot *slot = &pool.slot[me];
  gint seen = 0;
  in_task = TRUE; /* anything a task starts runs inline */
  for (;;)
    {
      gint ticket;
      guint spins = 0;
      gint64 deadline = 0;
      while ((ticket = g_atomic_int_get (&slot->ticket)) == seen)
        {
          cpu_relax ();
          if (++spins % 128 != 0)
            continue;
          const gint64 now = g_get_monotonic_time ();
          if (deadline == 0)
            deadline = now + FG_POOL_SPIN_US;
          else if (now > deadline)
            {
              g_mutex_lock (&pool.sleep_lock);
              g_atomic_int_inc (&pool.sleepers);
              while (g_atomic_int_get (&slot->ticket) == seen)
                g_cond_wait (&pool.wake, &pool.sleep_lock);
              g_atomic_int_dec_and_test (&pool.sleepers);
              g_mutex_unlock (&pool.sleep_lock);
              deadline = 0;
            }
        }
      seen = ticket;
      run_claimed ((guint) ticket);
    }
  return NULL;
}

/* A forked child (the runner's worker processes) has none of the parent's threads, and a lock
 * one of them held stays held: start from an empty pool, which starts threads of its own when
 * it needs them. */
static void
forget_pool_after_fork (void)
{
  memset (&pool, 0, sizeof pool);
}

/* Make sure `want` − 1 workers exist (want ≤ FG_POOL_MAX_THREADS). */
static void
ensure_workers (guint want)
{
  if (g_atomic_int_get (&pool.started) && pool.n_workers + 1 >= want)
    return;
  g_mutex_lock (&pool.start_lock);
  if (!g_atomic_int_get (&pool.started))
    {
      /* From now on the core splits its own products: OpenBLAS must not run a pool of its own
       * beside ours (fg_get_num_threads () has captured the budget it implied). */
      (void) fg_get_num_threads ();
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
      openblas_set_num_threads (1);
#endif
      {
        static gsize registered = 0;
        if (g_once_init_enter (&registered))
          {
            pthread_atfork (NULL, NULL, forget_pool_after_fork);
            g_once_init_leave (&registered, 1);
          }
      }
      g_atomic_int_set (&pool.started, 1);
    }
  while (pool.n_workers + 1 < want)
    {
      const guint idx = pool.n_workers + 1;
      GThread *t = g_thread_new ("fg-pool", worker_main, GUINT_TO_POINTER (idx));
      g_thread_unref (t); /* workers live as long as the process */
      g_atomic_int_set ((gint *) &pool.n_workers, (gint) idx);
    }
  g_mutex_unlock (&pool.start_lock);
}

guint
_fg_pool_threads (void)
{
  if (in_task)
    return 1;
  const guint n = MIN (fg_get_num_threads (), FG_POOL_MAX_THREADS);
  if (n > 1)
    ensure_workers (n);
  return MAX (n, 1);
}

guint
_fg_pool_tasks (double ns)
{
  const guint n = _fg_pool_threads ();
  if (n <= 1 || !(ns >= 2.0 * FG_POOL_MIN_TASK_NS))
    return 1;
  return (guint) MIN ((double) n, ns / FG_POOL_MIN_TASK_NS);
}

/* Every task runs with in_task set, wherever it runs: kernels inside it stay unsplit. */
static void
run_inline (guint n, FgTapeTaskFunc func, gpointer data)
{
  const gboolean was = in_task;
  in_task = TRUE;
  for (guint t = 0; t < n; t++)
    func (data, t, n);
  in_task = was;
}

void
_fg_pool_run (guint n, FgTapeTaskFunc func, gpointer data)
{
  /* Start the workers if the budget allows some and nothing has yet. */
  if (n > 1 && !in_task && !g_atomic_int_get (&pool.started))
    (void) _fg_pool_threads ();
  /* One task; inside a task; a budget of one; or another thread owns the pool: the same tasks,
   * one after the other. */
  if (n <= 1 || n > 0xffff || in_task || g_atomic_int_get ((gint *) &pool.n_workers) == 0
      || !g_mutex_trylock (&pool.owner))
    {
      run_inline (n, func, data);
      return;
    }
  const guint helpers = MIN (n - 1, pool.n_workers);
  pool.func = func;
  pool.data = data;
  g_atomic_int_set (&pool.done, 0);
  const guint seq = ++pool.seq & 0x7fffffffu ? pool.seq & 0x7fffffffu : (pool.seq = 1);
  atomic_store (&pool.job, ((guint64) seq << 32) | ((guint64) n << 16));
  for (guint w = 1; w <= helpers; w++)
    g_atomic_int_set (&pool.slot[w].ticket, (gint) seq);
  if (g_atomic_int_get (&pool.sleepers) > 0)
    {
      g_mutex_lock (&pool.sleep_lock);
      g_cond_broadcast (&pool.wake);
      g_mutex_unlock (&pool.sleep_lock);
    }
  in_task = TRUE;
  run_claimed (seq);
  in_task = FALSE;
  /* Only tasks a running worker has claimed are left: wait for them. */
  guint spins = 0;
  while (g_atomic_int_get (&pool.done) < (gint) n)
    {
      cpu_relax ();
      if (++spins > FG_POOL_WAIT_SPINS)
        sched_yield (); /* the worker lost its CPU: lend it ours */
    }
  g_mutex_unlock (&pool.owner);
}

/**
 * fg_parallel_tasks:
 * @ns: about how many nanoseconds the kernel takes on one thread
 *
 * Returns: how many tasks to split the kernel into: 1 when the thread budget is 1, when called
 * from inside a task, or when the work is too small for a split to pay (under about 8 µs);
 * otherwise at most fg_get_num_threads ().
 */
guint
fg_parallel_tasks (double ns)
{
  return _fg_pool_tasks (ns);
}

/**
 * fg_parallel_run:
 * @n_tasks: number of tasks, at most fg_parallel_tasks () returned (more run serially)
 * @func: the task
 * @data: passed to @func
 *
 * Runs @func (@data, t, @n_tasks) for t = 0 … @n_tasks − 1 on the core's worker pool, task 0
 * on the calling thread, and returns when every task has finished.
 */
void
fg_parallel_run (guint n_tasks, FgParallelTaskFunc func, gpointer data)
{
  g_return_if_fail (func != NULL);
  _fg_pool_run (n_tasks, func, data);
}

/* The ABI 1 names of the two above. */
guint
fg_tape_parallel_tasks (double ns)
{
  return fg_parallel_tasks (ns);
}

void
fg_tape_parallel_run (guint n_tasks, FgTapeTaskFunc func, gpointer data)
{
  fg_parallel_run (n_tasks, func, data);
}
