/* SPDX-License-Identifier: MIT */
/* flowgmm — benchmark: the time of a group sum (flowgmm/group.h) over MPI ranks, for the
 * scaling model of doc/mpi.md: the ordered sum (alltoallv + ordered double sum + allgatherv)
 * and MPI_Allreduce, for sums of n floats from 1 to the d768 model's 5,976,320 gradients.
 *
 *   make bench && mpirun -np 2 ./bench/bench-group
 *
 * Prints, on rank 0, the median seconds of each size and the bytes each rank sent. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <mpi.h>

#include <flowgmm/flowgmm.h>

#include "numeric/group-mpi.h"

static int
cmp_double (const void *a, const void *b)
{
  const double x = *(const double *) a, y = *(const double *) b;
  return (x > y) - (x < y);
}

int
main (int argc, char **argv)
{
  static const gsize sizes[] = { 1, 1024, 65536, 1048576, 5976320 };
  int rank, size, provided;

  MPI_Init_thread (&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  MPI_Comm_rank (MPI_COMM_WORLD, &rank);
  MPI_Comm_size (MPI_COMM_WORLD, &size);
  if (rank == 0)
    printf ("# %d ranks; seconds per sum (median of 9), bytes sent per rank\n"
            "%10s %14s %14s %14s\n", size, "n floats", "ordered s", "allreduce s", "bytes");
  for (guint i = 0; i < G_N_ELEMENTS (sizes); i++)
    {
      const gsize n = sizes[i];
      float *buf = g_new0 (float, n);
      double med[2];
      guint64 bytes = 0;
      for (guint mode = 0; mode < 2; mode++)
        {
          FgGroup *g = _fg_group_new_mpi (MPI_COMM_WORLD, mode == 0 ? FG_GROUP_REDUCE_ORDERED
                                                                    : FG_GROUP_REDUCE_ALLREDUCE);
          double t[9];
          fg_group_sum_floats (g, buf, n, NULL); /* warm up */
          for (guint r = 0; r < G_N_ELEMENTS (t); r++)
            {
              double t0;
              MPI_Barrier (MPI_COMM_WORLD);
              t0 = MPI_Wtime ();
              fg_group_sum_floats (g, buf, n, NULL);
              t[r] = MPI_Wtime () - t0;
            }
          qsort (t, G_N_ELEMENTS (t), sizeof (double), cmp_double);
          med[mode] = t[G_N_ELEMENTS (t) / 2];
          if (mode == 0)
            bytes = fg_group_get_bytes_sent (g) / (G_N_ELEMENTS (t) + 1);
          _fg_group_free (g);
        }
      if (rank == 0)
        printf ("%10zu %14.6f %14.6f %14" G_GUINT64_FORMAT "\n", n, med[0], med[1], bytes);
      g_free (buf);
    }
  MPI_Finalize ();
  return 0;
}
