/* SPDX-License-Identifier: MIT */
/* flowgmm — running an experiment over MPI ranks (a build configured --with-mpi).
 *
 * `mpirun -np N flowgmm run FILE --out DIR`: rank 0 hands out cells (largest first) to the
 * other ranks and stores every finished cell in DIR/results.jsonl as a one-process run does;
 * with the [experiment] key ranks_per_cell = G, groups of G ranks train each cell together
 * (flowgmm/group.h).  See doc/mpi.md.
 *
 * Installed only by a build with MPI; programs call fg_mpi_init () at start, run the experiment
 * with fg_experiment_run_mpi () when it says MPI is on, and fg_mpi_finalize () at exit. */
#pragma once

#include <flowgmm/experiment.h>

G_BEGIN_DECLS

/* Whether this process was started by an MPI launcher (mpirun, mpiexec, srun): the environment
 * variables of Open MPI, MPICH/Hydra, PMI or PMIx; FLOWGMM_MPI=1 or 0 overrides. */
FG_API gboolean fg_mpi_launched (void);
/* MPI_Init_thread when fg_mpi_launched (), else nothing.  Returns TRUE when MPI is on. */
FG_API gboolean fg_mpi_init (int *argc, char ***argv);
/* MPI_Finalize when fg_mpi_init () started MPI. */
FG_API void     fg_mpi_finalize (void);
/* This process's rank in MPI_COMM_WORLD (0 when MPI is off) and the number of ranks (1). */
FG_API guint    fg_mpi_get_rank (void);
FG_API guint    fg_mpi_get_size (void);
/* fg_experiment_run () over every rank of MPI_COMM_WORLD; every rank calls it with the same
 * experiment.  Rank 0 stores the results, renders the table and fills @summary; the other
 * ranks return TRUE with an empty summary once no cell is left. */
FG_API gboolean fg_experiment_run_mpi (FgExperiment *exp, const FgRunOptions *options,
                                       FgRunSummary *summary, GError **error);

G_END_DECLS
