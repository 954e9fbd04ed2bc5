/* SPDX-License-Identifier: MIT */
/* flowgmm — a group over an MPI communicator: the sums of flowgmm/group.h with standard MPI
 * collectives only (Open MPI and MPICH alike).
 *
 * The ordered sum of n values over P members is a reduce-scatter then an allgather, written so
 * the order of the additions is fixed: slice p of every member's buffer goes to member p
 * (MPI_Alltoallv), member p adds the P copies of its slice in rank order in double, and the
 * summed slices go to everyone (MPI_Allgatherv).  Each member sends 2·n·(P−1)/P values, the
 * volume of a ring allreduce, and every member ends with the same bits whatever algorithm the
 * library picks. */
#include "config.h"

#include <string.h>

#include "numeric/group-mpi.h"

typedef struct {
  MPI_Comm comm;
  int rank, size;
  FgGroupReduce reduce;
  int *counts, *displs, *rcounts, *rdispls;
  gpointer recv;      /* received slices, grown as needed */
  gsize recv_bytes;
} MpiGroup;

/* TRUE (with FG_ERROR_IO naming `what` and MPI's message) when an MPI call failed. */
gboolean
_fg_mpi_failed (int rc, const char *what, GError **error)
{
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (rc == MPI_SUCCESS)
    return FALSE;
  MPI_Error_string (rc, text, &len);
  g_set_error (error, FG_ERROR, FG_ERROR_IO, "MPI: %s: %.*s", what, len, text);
  return TRUE;
}

static gpointer
recv_buffer (MpiGroup *g, gsize bytes)
{
  if (bytes > g->recv_bytes)
    {
      g_free (g->recv);
      g->recv = g_malloc (bytes);
      g->recv_bytes = bytes;
    }
  return g->recv;
}

/* Slice bounds: member p owns [n·p/P, n·(p+1)/P). */
static gboolean
set_slices (MpiGroup *g, gsize n, GError **error)
{
  if (n > (gsize) G_MAXINT)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_UNSUPPORTED,
                   "MPI: a sum of %" G_GSIZE_FORMAT " values is too large for one call", n);
      return FALSE;
    }
  for (int p = 0; p < g->size; p++)
    {
      gsize a = n * (gsize) p / (gsize) g->size, b = n * (gsize) (p + 1) / (gsize) g->size;
      g->displs[p] = (int) a;
      g->counts[p] = (int) (b - a);
    }
  for (int q = 0; q < g->size; q++)
    {
      g->rcounts[q] = g->counts[g->rank];
      g->rdispls[q] = q * g->counts[g->rank];
    }
  return TRUE;
}

static gboolean
mpi_sum_floats (gpointer data, float *buf, gsize n, guint64 *bytes, GError **error)
{
  MpiGroup *g = data;
  float *recv;
  int mine;

  if (g->reduce == FG_GROUP_REDUCE_ALLREDUCE)
    {
      if (n > (gsize) G_MAXINT)
        return set_slices (g, n, error);
      if (_fg_mpi_failed (MPI_Allreduce (MPI_IN_PLACE, buf, (int) n, MPI_FLOAT, MPI_SUM, g->comm),
                      "allreduce", error))
        return FALSE;
      *bytes += 2 * n * (gsize) (g->size - 1) / (gsize) g->size * sizeof (float);
      return TRUE;
    }
  if (!set_slices (g, n, error))
    return FALSE;
  mine = g->counts[g->rank];
  recv = recv_buffer (g, MAX ((gsize) mine * (gsize) g->size, 1) * sizeof (float));
  if (_fg_mpi_failed (MPI_Alltoallv (buf, g->counts, g->displs, MPI_FLOAT, recv, g->rcounts,
                                 g->rdispls, MPI_FLOAT, g->comm),
                  "alltoallv", error))
    return FALSE;
  for (int i = 0; i < mine; i++)
    {
      double acc = 0.0;
      for (int q = 0; q < g->size; q++)
        acc += (double) recv[(gsize) q * (gsize) mine + (gsize) i];
      buf[g->displs[g->rank] + i] = (float) acc;
    }
  if (_fg_mpi_failed (MPI_Allgatherv (MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, g->counts, g->displs,
                                  MPI_FLOAT, g->comm),
                  "allgatherv", error))
    return FALSE;
  *bytes += 2 * (n - (gsize) mine) * sizeof (float);
  return TRUE;
}

/* Doubles are few (statistics, a loss): every member gathers all contributions and adds them
 * in rank order. */
static gboolean
mpi_sum_doubles (gpointer data, double *buf, gsize n, guint64 *bytes, GError **error)
{
  MpiGroup *g = data;
  double *all;

  if (n == 0)
    return TRUE;
  if (n > (gsize) G_MAXINT / (gsize) g->size)
    {
      g_set_error (error, FG_ERROR, FG_ERROR_UNSUPPORTED,
                   "MPI: a sum of %" G_GSIZE_FORMAT " doubles is too large for one call", n);
      return FALSE;
    }
  all = recv_buffer (g, n * (gsize) g->size * sizeof (double));
  if (_fg_mpi_failed (MPI_Allgather (buf, (int) n, MPI_DOUBLE, all, (int) n, MPI_DOUBLE, g->comm),
                  "allgather", error))
    return FALSE;
  for (gsize i = 0; i < n; i++)
    {
      double acc = 0.0;
      for (int q = 0; q < g->size; q++)
        acc += all[(gsize) q * n + i];
      buf[i] = acc;
    }
  *bytes += n * (gsize) (g->size - 1) * sizeof (double);
  return TRUE;
}

static void
mpi_group_free (gpointer data)
{
  MpiGroup *g = data;
  MPI_Comm_free (&g->comm);
  g_free (g->counts);
  g_free (g->displs);
  g_free (g->rcounts);
  g_free (g->rdispls);
  g_free (g->recv);
  g_free (g);
}

static const FgGroupImpl mpi_impl = {
  mpi_sum_floats,
  mpi_sum_doubles,
  mpi_group_free,
};

FgGroup *
_fg_group_new_mpi (MPI_Comm comm, FgGroupReduce reduce)
{
  MpiGroup *g = g_new0 (MpiGroup, 1);
  MPI_Comm_dup (comm, &g->comm);
  MPI_Comm_set_errhandler (g->comm, MPI_ERRORS_RETURN);
  MPI_Comm_rank (g->comm, &g->rank);
  MPI_Comm_size (g->comm, &g->size);
  g->reduce = reduce;
  g->counts = g_new0 (int, g->size);
  g->displs = g_new0 (int, g->size);
  g->rcounts = g_new0 (int, g->size);
  g->rdispls = g_new0 (int, g->size);
  return _fg_group_new (&mpi_impl, g, (guint) g->rank, (guint) g->size);
}
