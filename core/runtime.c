/* flowgmm — library-wide state: error domains, version, thread count. */
#include "config.h"

#include <flowgmm/flowgmm.h>

#if defined(HAVE_OPENBLAS_SET_NUM_THREADS) || defined(HAVE_OPENBLAS_GET_NUM_THREADS)
#include <cblas.h>
#endif

G_DEFINE_QUARK (fg-error-quark, fg_error)
G_DEFINE_QUARK (fg-loader-error-quark, fg_loader_error)
G_DEFINE_QUARK (fg-experiment-error-quark, fg_experiment_error)

static gint fg_num_threads = 0; /* 0: not set, use all cores */

/**
 * fg_version:
 *
 * Returns: the library version, e.g. "0.1.0".
 */
const char *
fg_version (void)
{
  return PACKAGE_VERSION;
}

/**
 * fg_set_num_threads:
 * @n: threads for OpenBLAS and the core's own kernels; 0 means all cores
 *
 * Sets the process-wide thread budget.  The runner sets 1 when it runs several cells at once so
 * that worker threads and OpenBLAS's pool never oversubscribe the machine.
 */
void
fg_set_num_threads (guint n)
{
  g_atomic_int_set (&fg_num_threads, (gint) n);
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
  openblas_set_num_threads (n == 0 ? (int) g_get_num_processors () : (int) n);
#endif
}

/**
 * fg_get_num_threads:
 *
 * Returns: the thread budget set by fg_set_num_threads (), else OpenBLAS's own setting (which
 * follows OPENBLAS_NUM_THREADS), else the number of processors.
 */
guint
fg_get_num_threads (void)
{
  gint n = g_atomic_int_get (&fg_num_threads);
  if (n > 0)
    return (guint) n;
#ifdef HAVE_OPENBLAS_GET_NUM_THREADS
  /* Honours OPENBLAS_NUM_THREADS / OMP_NUM_THREADS from the environment. */
  n = openblas_get_num_threads ();
  if (n > 0)
    return (guint) n;
#endif
  return g_get_num_processors ();
}
