#!/bin/sh
# SPDX-License-Identifier: MIT
# flowgmm over a Slurm cluster: one experiment spread over the ranks of one MPI job
# (doc/mpi.md).  Submit with
#
#   sbatch doc/slurm-flowgmm.sh experiments/synthetic.exp synthetic.out
#
# Needs a flowgmm built with MPI (./configure --with-mpi) on a file system every node sees (the
# output directory too: rank 0 writes results.jsonl there, and the other ranks write figure data
# and training state beside it).  Rank 0 schedules the cells, largest first, and stores each
# one as it finishes; rerun the same command after a failure or a time limit and only the cells
# not stored run again, whatever the number of nodes.
#
# The [experiment] key ranks_per_cell = G makes groups of G ranks train each cell together
# (data parallelism): choose --ntasks a multiple of G.  One task per core and one thread per
# task is a good start for many small cells; for long data-parallel cells, one task per node (or
# per socket) with --cpus-per-task threads each.
#
#SBATCH --job-name=flowgmm
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=8
#SBATCH --cpus-per-task=1
#SBATCH --time=24:00:00
#SBATCH --output=flowgmm-%j.log

set -eu
exp=${1:?usage: sbatch slurm-flowgmm.sh FILE.exp OUTDIR}
out=${2:?usage: sbatch slurm-flowgmm.sh FILE.exp OUTDIR}

# Threads per rank: what Slurm gave each task (the runner would otherwise share a node's
# processors among the ranks on it).
export OPENBLAS_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}

# srun starts the ranks itself when Slurm was built with PMIx (or PMI-2) support for the MPI in
# use; otherwise use the MPI's own launcher, which reads the allocation from Slurm:
#   mpirun -np "$SLURM_NTASKS" flowgmm run "$exp" --out "$out"
srun --mpi=pmix flowgmm run "$exp" --out "$out"
