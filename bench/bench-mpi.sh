#!/bin/sh
# SPDX-License-Identifier: MIT
# flowgmm — experiments over MPI ranks against one process with the same total threads
# (doc/mpi.md), on this machine:
#
#   cd BUILDDIR && sh SRCDIR/bench/bench-mpi.sh [--ranks N] [--steps S]
#
#  1. cells per minute of an experiment of many small cells (kNN grid and small FlowGMM fits on
#     two moons): `flowgmm run -j N` (N worker processes) and `-j 1` against
#     `mpirun -np N flowgmm run` (one thread per rank);
#  2. samples/s of data-parallel training of the d768 tabular configuration of
#     bench-flowgmm (D = 768, K = 4, 7 couplings of width 512, random data), S steps of a batch
#     of 2048: one process with N threads against `mpirun -np N` with ranks_per_cell = N (one
#     thread per rank), and the time the ranks spent in the gradient sums (debug line of the
#     trainer: bytes sent and seconds).
# Open MPI's oversubscription and root permission come from the environment.
set -eu
ranks=2
steps=30
while [ $# -gt 0 ]; do
  case $1 in
    --ranks) ranks=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "bench-mpi.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x ./flowgmm-uninstalled ] || { echo "bench-mpi.sh: run it from the build directory" >&2; exit 2; }
mpirun=${MPIEXEC:-mpirun}
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_base_warn_component_unused=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-mpi.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
now () { date +%s.%N; }

echo "# $(date -u '+%Y-%m-%d %H:%M UTC') $(uname -m), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-}"

# ---- 1. cells per minute
cat >"$tmp/cells.exp" <<EOC
[experiment]
title = bench-mpi-cells
seeds = 0..9
[dataset:moons]
plugin = moons
n_train = 1000
n_test = 1000
[method:knn]
plugin = knn
k = 1..9
[method:flowgmm]
plugin = flowgmm
flow.layers = 3
flow.hidden = 64
flow.dropout = 0
means = circle
means_r = 5
optimizer = adam
schedule = constant
iterations = 300
unlabeled_batch = 128
unlabeled_order = sample
EOC
cells=$(( 9 * 10 + 10 ))
time_run () { # NAME COMMAND...
  name=$1; shift
  rm -rf "$tmp/out"
  t0=$(now)
  "$@" >/dev/null 2>"$tmp/err.$name" || echo "# $name failed: $(tail -n 2 "$tmp/err.$name")" >&2
  t1=$(now)
  echo "$name $(echo "$t1 - $t0" | bc -l)"
}
{
  time_run "one-process-j$ranks" env OPENBLAS_NUM_THREADS=1 ./flowgmm-uninstalled run -q -j "$ranks" --out "$tmp/out" "$tmp/cells.exp"
  time_run "one-process-j1-threads$ranks" env OPENBLAS_NUM_THREADS=$ranks ./flowgmm-uninstalled run -q -j 1 --out "$tmp/out" "$tmp/cells.exp"
  time_run "mpirun-np$ranks" "$mpirun" -np "$ranks" ./flowgmm-uninstalled run -q --out "$tmp/out" "$tmp/cells.exp"
  time_run "mpirun-np1-threads$ranks" env OPENBLAS_NUM_THREADS=$ranks "$mpirun" -np 1 ./flowgmm-uninstalled run -q --out "$tmp/out" "$tmp/cells.exp"
} >"$tmp/cells.txt"
echo "## cells per minute ($cells cells)"
awk -v c="$cells" '{ printf "%-28s %7.2f s  %8.1f cells/min\n", $1, $2, 60 * c / $2; r[$1] = $2 }
  END { for (k in r) if (k ~ /^mpirun-np[0-9]+$/) m = r[k]; for (k in r) if (k ~ /^one-process-j[0-9]+$/ && k !~ /threads/) o = r[k];
        if (m > 0 && o > 0) printf "ratio mpirun / one process (-j): %.2f\n", o / m }' "$tmp/cells.txt"

# ---- 2. data-parallel training, d768
awk -v seed=1 'BEGIN { srand(seed); for (i = 0; i < 2048 + 256; i++) { line = "";
  for (j = 0; j < 768; j++) line = line sprintf("%.4f,", 2 * rand() - 1 + (i % 4) * 0.1);
  print line (i % 4) } }' >"$tmp/d768.csv"
dp_exp () { # RANKS_PER_CELL
  cat <<EOD
[experiment]
title = bench-mpi-d768
seeds = 0
ranks_per_cell = $1
[dataset:d768]
plugin = csv
path = $tmp/d768.csv
header = none
test = 256
labeled = 64
unlabeled_pool = train
[method:flowgmm]
plugin = flowgmm
flow.layers = 7
flow.hidden = 512
flow.dropout = 0
means = tabular
iterations = $steps
labeled_batch = 0
unlabeled_batch = 2048
EOD
}
dp_exp 1 >"$tmp/dp1.exp"
dp_exp "$ranks" >"$tmp/dpn.exp"
seconds_of () { sed -n 's/.*"seconds":\([0-9.e+-]*\).*/\1/p' "$1/results.jsonl" | head -n1; }
rm -rf "$tmp/o1" "$tmp/on"
OPENBLAS_NUM_THREADS=$ranks ./flowgmm-uninstalled run -q --out "$tmp/o1" "$tmp/dp1.exp" >"$tmp/dp1.log" 2>&1 || { cat "$tmp/dp1.log"; exit 1; }
OPENBLAS_NUM_THREADS=1 G_MESSAGES_DEBUG=flowgmm "$mpirun" -np "$ranks" ./flowgmm-uninstalled run -q \
  --out "$tmp/on" "$tmp/dpn.exp" >"$tmp/dp.log" 2>&1
s1=$(seconds_of "$tmp/o1")
sn=$(seconds_of "$tmp/on")
echo "## data-parallel training, d768 tabular (batch 2048 + 64 labeled, $steps steps)"
echo "one process, $ranks threads:     $s1 s  $(echo "(2048 + 64) * $steps / $s1" | bc -l | cut -c1-8) samples/s"
echo "mpirun -np $ranks, 1 thread each: $sn s  $(echo "(2048 + 64) * $steps / $sn" | bc -l | cut -c1-8) samples/s"
echo "ratio (mpirun / one process):   $(echo "$s1 / $sn" | bc -l | cut -c1-5)"
grep -o 'rank [0-9]* of [0-9]*: parameters checksum [0-9a-f]*; group sums: [0-9]* bytes sent in [0-9.]* s' "$tmp/dp.log" || true
