/* SPDX-License-Identifier: MIT */
/* flowgmm — library-wide state: error domains, version, thread budget. */
#include "config.h"

#include <flowgmm/parallel.h>

#include "numeric/numeric-private.h"

#if defined(HAVE_OPENBLAS_SET_NUM_THREADS) || defined(HAVE_OPENBLAS_GET_NUM_THREADS) \
    || defined(HAVE_OPENBLAS_GET_CORENAME) || defined(HAVE_OPENBLAS_GET_CONFIG)
#include <cblas.h>
#endif

G_DEFINE_QUARK (fg-error-quark, fg_error)
G_DEFINE_QUARK (fg-loader-error-quark, fg_loader_error)
G_DEFINE_QUARK (fg-experiment-error-quark, fg_experiment_error)

static gint fg_num_threads = 0; /* 0: not set, use the default budget */

/* The budget implied by the environment before the core changed anything: OpenBLAS's own
 * setting (OPENBLAS_NUM_THREADS / OMP_NUM_THREADS), else the number of processors.  Captured
 * once, because the core holds OpenBLAS at one thread as soon as it splits work itself. */
static guint
default_threads (void)
{
  static gsize once = 0;
  if (g_once_init_enter (&once))
    {
      gint n = 0;
#ifdef HAVE_OPENBLAS_GET_NUM_THREADS
      n = openblas_get_num_threads ();
#endif
      if (n <= 0)
        n = (gint) g_get_num_processors ();
      g_once_init_leave (&once, (gsize) MAX (n, 1));
    }
  return (guint) once;
}

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

const char *
_fg_blas_library (void)
{
#ifdef HAVE_OPENBLAS_GET_CONFIG
  return openblas_get_config ();
#else
  return NULL;
#endif
}

const char *
_fg_blas_kernel (void)
{
#ifdef HAVE_OPENBLAS_GET_CORENAME
  return openblas_get_corename ();
#else
  return NULL;
#endif
}

/**
 * fg_set_num_threads:
 * @n: threads for the core's kernels; 0 means all cores
 *
 * Sets the process-wide thread budget.  The core splits its own products and elementwise
 * kernels over a persistent pool of @n threads (the caller's included) and calls
 * single-threaded OpenBLAS from them, so OpenBLAS itself is set to one thread here: two thread
 * pools never run at once (doc/performance.md, "Own threading").  The runner sets 1 when it runs several cells at once.
 */
void
fg_set_num_threads (guint n)
{
  (void) default_threads ();
  if (n == 0)
    n = g_get_num_processors ();
  g_atomic_int_set (&fg_num_threads, (gint) MIN (n, (guint) G_MAXINT));
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
  openblas_set_num_threads (1);
#endif
}

/**
 * fg_get_num_threads:
 *
 * Returns: the thread budget set by fg_set_num_threads (), else the one the environment implied
 * when the library first looked (OpenBLAS's own setting, which follows OPENBLAS_NUM_THREADS,
 * else the number of processors).
 */
guint
fg_get_num_threads (void)
{
  gint n = g_atomic_int_get (&fg_num_threads);
  if (n > 0)
    return (guint) n;
  return default_threads ();
}
