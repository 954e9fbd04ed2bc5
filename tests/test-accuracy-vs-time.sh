#!/bin/sh
# SPDX-License-Identifier: MIT
# flowgmm tests — experiments/accuracy-vs-time.sh (TAP): a cell trained in slices gets one row
# per slice, the last row is the result of an uninterrupted run of the same cell (the slices'
# training state resumes bit for bit), a rerun adds nothing, and the figure has every point.

set -u
if [ -z "${FG_TOP_SRCDIR:-}" ]; then
  echo "Bail out! FG_TOP_SRCDIR is not set: run this through 'make check'"
  exit 1
fi
. "$FG_TOP_SRCDIR/tests/tap.sh"
tap_require FG_TOP_BUILDDIR FLOWGMM_PLUGIN_PATH
FLOWGMM="$FG_TOP_BUILDDIR/cli/flowgmm"
SCRIPT="$FG_TOP_SRCDIR/experiments/accuracy-vs-time.sh"
export OPENBLAS_NUM_THREADS=1

tmp=$(mktemp -d "${TMPDIR:-/tmp}/fgavt.XXXXXX") || { echo "Bail out! mktemp failed"; exit 1; }
trap 'rm -rf "$tmp"' EXIT
tap_diag () { for f in "$tmp/log" "$tmp/out/train.log" "$tmp/out/eval.log"; do [ -f "$f" ] && sed -e 's/^/# /' "$f" | tail -n 10; done; }

cat > "$tmp/m.exp" <<'EXP'
[experiment]
title = avt
seeds = 3;4
metrics = accuracy;nll

[dataset:moons]
plugin = moons

[method:fg]
plugin = flowgmm
flow.layers = 2
flow.hidden = 16
iterations = 300
unlabeled_batch = 50
EXP

echo "1..6"
check "three slices of 100 steps give three rows" \
  eval 'sh "$SCRIPT" --slice 100 --seed 4 --eval-metrics accuracy --flowgmm "$FLOWGMM" "$tmp/m.exp" fg "$tmp/out" >"$tmp/log" 2>&1 &&
        test "$(cut -f1 "$tmp/out/curve.tsv" | tr "\n" " ")" = "step 100 200 300 "'
check "the evaluations ran the one cell with --eval-metrics" \
  eval 'grep -q "^metrics = accuracy\$" "$tmp/out/eval.exp" && grep -q "^methods = fg\$" "$tmp/out/eval.exp" &&
        test "$(grep -c "^metrics" "$tmp/out/eval.exp")" -eq 1'
check "every row has a test accuracy in (0.5, 1]" \
  eval 'awk -F "\t" "NR > 1 && !(\$4 > 0.5 && \$4 <= 1) { bad = 1 } END { exit bad }" "$tmp/out/curve.tsv"'
# the same cell without slices
sed -e '/^run_steps/d' "$tmp/out/train.exp" > "$tmp/full.exp"
check "the last row is an uninterrupted run's test accuracy" \
  eval '"$FLOWGMM" run -q "$tmp/full.exp" --out "$tmp/full.out" >"$tmp/log" 2>&1 &&
        full=$(sed -n "s/.*\"test_accuracy\":\([0-9.e-]*\).*/\1/p" "$tmp/full.out/results.jsonl") &&
        test -n "$full" && test "$(tail -n 1 "$tmp/out/curve.tsv" | cut -f4)" = "$full"'
check "a rerun after the end adds no row" \
  eval 'sh "$SCRIPT" --slice 100 --seed 4 --flowgmm "$FLOWGMM" "$tmp/m.exp" fg "$tmp/out" >"$tmp/log" 2>&1 &&
        test "$(wc -l < "$tmp/out/curve.tsv")" -eq 4'
check "the figure has a polyline through the three points" \
  eval 'test "$(grep -c "<circle" "$tmp/out/curve.svg")" -eq 3 && grep -q "<polyline" "$tmp/out/curve.svg"'
tap_summary
