/* SPDX-License-Identifier: MIT */
/* flowgmm — groups over MPI communicators (built with --with-mpi only). */
#pragma once

#include <mpi.h>
#include "numeric/group-private.h"

G_BEGIN_DECLS

typedef enum {
  /* Sums in rank order (alltoall of slices, ordered sum, allgather): reproducible bits,
   * independent of the MPI library's algorithms.  The default. */
  FG_GROUP_REDUCE_ORDERED = 0,
  /* MPI_Allreduce (MPI_SUM) on floats: the library's algorithm (for comparison). */
  FG_GROUP_REDUCE_ALLREDUCE = 1,
} FgGroupReduce;

/* TRUE (with FG_ERROR_IO naming `what` and MPI's message) when an MPI call failed. */
gboolean _fg_mpi_failed (int rc, const char *what, GError **error);

/* A group over `comm` (duplicated; the group frees its copy). */
FgGroup *_fg_group_new_mpi (MPI_Comm comm, FgGroupReduce reduce);

G_END_DECLS
