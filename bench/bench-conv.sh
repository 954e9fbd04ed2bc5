#!/bin/sh
# SPDX-License-Identifier: MIT
# flowgmm — the realnvp-conv training step, C against the PyTorch reference, side by side.
#
#   cd BUILDDIR && make bench && sh SRCDIR/bench/bench-conv.sh [options]
#
# Options (all optional):
#   --configs "small authors"  small: mid 16, 2 blocks; authors: mid 64, 8 blocks (both 2
#                              scales, 1×28×28 images, batch 64)
#   --threads "1 2"            thread counts tried for each side
#   --rounds N                 rounds of C then PyTorch back to back (default 3; medians)
#   --seconds S                time budget of each timed run after the warm-up steps
#                              (default 10; each run times at least two steps)
#   --warmup N                 untimed steps first (default 2)
#   --python PATH              the Python that sees torch (default /usr/bin/python3, Debian's
#                              python3-torch)
#
# For each round, configuration and thread count, the C program and then the PyTorch script run
# one after the other, so that a slow spell of a shared machine hits both; the table gives the
# median images/s of each over the rounds and their ratio, the median CPU time per step (user +
# system, all threads: on a busy machine the fairer figure, as wall time counts other tenants'
# time slices) and its ratio PyTorch/C, and peak RSS.  Each run's own lines are kept in
# $BENCH_CONV_LOG when that is set.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
configs="small authors"
threads="1 2"
rounds=3
seconds=10
warmup=2
python=/usr/bin/python3
while [ $# -gt 0 ]; do
  case $1 in
    --configs) configs=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "bench-conv.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

bench=./bench/bench-conv
if [ ! -x "$bench" ]; then
  echo "bench-conv.sh: run it from the build directory after 'make bench' ($bench missing)" >&2
  exit 2
fi
top=$(pwd)
FLOWGMM_PLUGIN_PATH="$top/plugins/.libs:$top/plugins/flows/.libs"
FLOWGMM_PLUGIN_SYSTEM_PATH=
export FLOWGMM_PLUGIN_PATH FLOWGMM_PLUGIN_SYSTEM_PATH

args_of () {
  case $1 in
    small) echo "--mid 16 --blocks 2" ;;
    authors) echo "--mid 64 --blocks 8" ;;
    *) echo "bench-conv.sh: unknown configuration $1" >&2; exit 2 ;;
  esac
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for r in $(seq 1 "$rounds"); do
  for c in $configs; do
    for t in $threads; do
      a=$(args_of "$c")
      # shellcheck disable=SC2086
      OPENBLAS_NUM_THREADS=1 "$bench" $a --threads "$t" --seconds "$seconds" --warmup "$warmup" \
        >> "$tmp/c-$c-$t"
      # shellcheck disable=SC2086
      OPENBLAS_NUM_THREADS=$t OMP_NUM_THREADS=$t MKL_NUM_THREADS=$t \
        "$python" "$here/bench_conv_torch.py" $a --threads "$t" --seconds "$seconds" \
        --warmup "$warmup" >> "$tmp/t-$c-$t"
    done
  done
done

median () { # field $2 of a file of result lines
  awk -v f="$2" '{ print $f }' "$1" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

if [ -n "${BENCH_CONV_LOG:-}" ]; then
  for f in "$tmp"/*; do sed "s|^|$(basename "$f") |" "$f"; done >> "$BENCH_CONV_LOG"
fi
printf '%-8s %3s %9s %9s %7s %10s %10s %9s %8s %8s\n' config thr "C img/s" "pt img/s" "C/pt" \
  "C cpu ms" "pt cpu ms" "pt/C cpu" "C MB" "pt MB"
for c in $configs; do
  for t in $threads; do
    ci=$(median "$tmp/c-$c-$t" 2)
    ti=$(median "$tmp/t-$c-$t" 2)
    cc=$(median "$tmp/c-$c-$t" 14)
    tc=$(median "$tmp/t-$c-$t" 14)
    cr=$(median "$tmp/c-$c-$t" 10)
    tr=$(median "$tmp/t-$c-$t" 10)
    printf '%-8s %3s %9s %9s %7.2f %10s %10s %9.2f %8s %8s\n' "$c" "$t" "$ci" "$ti" \
      "$(echo "$ci $ti" | awk '{ print $1 / $2 }')" "$cc" "$tc" \
      "$(echo "$tc $cc" | awk '{ print $1 / $2 }')" "$cr" "$tr"
  done
done
echo "($rounds rounds, medians; $(uname -m), $(nproc) cores, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ))"
