#!/bin/sh
# flowgmm — the realnvp-conv training step, C against the PyTorch reference, side by side.
#
#   cd BUILDDIR && make bench && sh SRCDIR/bench/bench-conv.sh [options]
#
# Options (all optional):
#   --configs "small authors"  small: mid 16, 2 blocks; authors: mid 64, 8 blocks (both 2
#                              scales, 1×28×28 images, batch 64)
#   --threads "1 2"            thread counts tried for each side
#   --rounds N                 rounds of C then PyTorch back to back (default 3; medians)
#   --seconds S                time budget of each timed run after two warm-up steps
#                              (default 10; each run times at least two steps)
#   --python PATH              the Python that sees torch (default /usr/bin/python3, Debian's
#                              python3-torch)
#
# For each round, configuration and thread count, the C program and then the PyTorch script run
# one after the other, so that a slow spell of a shared machine hits both; the table gives the
# median images/s of each over the rounds, the ratio C/PyTorch, and peak RSS.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
configs="small authors"
threads="1 2"
rounds=3
seconds=10
python=/usr/bin/python3
while [ $# -gt 0 ]; do
  case $1 in
    --configs) configs=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
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
      OPENBLAS_NUM_THREADS=1 "$bench" $a --threads "$t" --seconds "$seconds" >> "$tmp/c-$c-$t"
      # shellcheck disable=SC2086
      OPENBLAS_NUM_THREADS=$t OMP_NUM_THREADS=$t MKL_NUM_THREADS=$t \
        "$python" "$here/bench_conv_torch.py" $a --threads "$t" --seconds "$seconds" \
        >> "$tmp/t-$c-$t"
    done
  done
done

median () { # field 2 (images/s) or 10 (peak_rss_mb) of a file of result lines
  awk -v f="$2" '{ print $f }' "$1" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

printf '%-8s %7s %12s %12s %8s %10s %10s\n' config threads "C img/s" "torch img/s" "C/torch" \
  "C RSS MB" "torch MB"
for c in $configs; do
  for t in $threads; do
    ci=$(median "$tmp/c-$c-$t" 2)
    ti=$(median "$tmp/t-$c-$t" 2)
    cr=$(median "$tmp/c-$c-$t" 10)
    tr=$(median "$tmp/t-$c-$t" 10)
    printf '%-8s %7s %12s %12s %8.2f %10s %10s\n' "$c" "$t" "$ci" "$ti" \
      "$(echo "$ci $ti" | awk '{ print $1 / $2 }')" "$cr" "$tr"
  done
done
echo "($rounds rounds, medians; $(uname -m), $(nproc) cores, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}, $(date -u +%FT%TZ))"
