#!/bin/sh
# SPDX-License-Identifier: MIT
# flowgmm — test accuracy of one training cell against its training time, as a table and an SVG
# figure (the paper's image runs: how far FlowGMM gets in a given number of hours).
#
#   accuracy-vs-time.sh [options] FILE.exp METHOD OUTDIR
#
# Trains the cell of METHOD (one data set, one seed) in slices of --slice steps with the
# runner's resumable training state (`run_steps`), and after each slice evaluates a copy of
# that state on the test set in a separate run (`init_checkpoint`, `epochs = 0`), so the
# training itself never sees the test set and its weights are those of an uninterrupted run.
# Run it again after a kill and it goes on from the last slice.  Writes
#   OUTDIR/curve.tsv   step, training wall seconds, training CPU seconds (user + system; empty
#                      without GNU time), test accuracy, test bits/dim (empty unless the file's
#                      `metrics` has bpd)
#   OUTDIR/curve.svg   test accuracy (%) against training wall time
#   OUTDIR/train.out   the run's output directory (the finished cell's record and table)
#
# Options:
#   --slice N          steps per slice (default 500)
#   --dataset NAME     the data set group (default: the file's only or first one)
#   --seed S           the seed (default: the file's first)
#   --flowgmm PATH     the program (default: flowgmm on PATH)
#   --nice N           run training and evaluation under nice -n N (default 0)
#   --title TEXT       the figure's title (default: FILE METHOD)
#   --plot-only        only draw OUTDIR/curve.svg again from OUTDIR/curve.tsv
#   --eval-metrics L   `metrics` of the evaluation runs (default: the file's); e.g. `accuracy`
#                      when the file's bpd also scores every training image
# The thread count comes from the environment as for flowgmm run (OPENBLAS_NUM_THREADS).
set -eu

slice=500
dataset=
seed=
flowgmm=flowgmm
niceness=0
title=
plot_only=
eval_metrics=
while [ $# -gt 0 ]; do
  case $1 in
    --slice) slice=$2; shift 2 ;;
    --dataset) dataset=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --flowgmm) flowgmm=$2; shift 2 ;;
    --nice) niceness=$2; shift 2 ;;
    --title) title=$2; shift 2 ;;
    --plot-only) plot_only=yes; shift ;;
    --eval-metrics) eval_metrics=$2; shift 2 ;;
    -h|--help) sed -n '3,31p' "$0"; exit 0 ;;
    -*) echo "accuracy-vs-time.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
if [ $# -ne 3 ]; then
  echo "usage: accuracy-vs-time.sh [options] FILE.exp METHOD OUTDIR (--help for more)" >&2
  exit 2
fi
exp=$1 method=$2 dir=$3
[ -r "$exp" ] || { echo "accuracy-vs-time.sh: cannot read $exp" >&2; exit 2; }
case $slice in ''|*[!0-9]*|0) echo "accuracy-vs-time.sh: --slice must be a positive integer" >&2; exit 2 ;; esac
grep -q "^\[method:$method\]" "$exp" || {
  echo "accuracy-vs-time.sh: $exp has no group [method:$method]" >&2; exit 2; }
[ -n "$title" ] || title="$(basename "$exp" .exp) $method"
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
timer=
[ -x /usr/bin/time ] && /usr/bin/time -f '%U %S' true 2>/dev/null && timer=/usr/bin/time

[ -n "$dataset" ] || dataset=$(sed -n 's/^\[dataset:\([^]]*\)\].*/\1/p' "$exp" | head -n 1)

# narrow LINES EDIT: a copy of FILE narrowed to the one cell, with LINES (\n-separated) added
# to [experiment]; EDIT is more awk run before the line is printed (`sec`: the current group).
narrow () {
  awk -v m="$method" -v d="$dataset" -v s="$seed" -v lines="$1" "
    /^\\[/ { sec = \$0 }
    sec == \"[experiment]\" && (/^(methods|datasets|run_steps|image_figures) *=/ || (s != \"\" && /^seeds *=/)) { next }
    $2
    { print }
    /^\\[experiment\\]/ {
      print \"methods = \" m
      print \"datasets = \" d
      if (s != \"\") print \"seeds = \" s
      if (lines != \"\") print lines
    }" "$exp"
}
[ -n "$plot_only" ] || narrow "run_steps = $slice" "" > "$dir/train.exp"

curve=$dir/curve.tsv
[ -f "$curve" ] || printf 'step\twall_s\tcpu_s\ttest_accuracy\ttest_bpd\n' > "$curve"
last=$(tail -n 1 "$curve")
case $last in
  step*) step=0 wall=0 cpu=0 ;;
  *) step=$(echo "$last" | cut -f1) wall=$(echo "$last" | cut -f2) cpu=$(echo "$last" | cut -f3) ;;
esac

# metric NAME FILE: the first "NAME":value of a results file
metric () { sed -n "s/.*\"$1\":\([-0-9.eE+]*\).*/\1/p" "$2" | head -n 1; }

# draw: the figure, test accuracy (%) against hours of training through the rows so far.
draw () {
awk -F '\t' -v title="$title" '
  NR > 1 && $4 != "" { n++; x[n] = $2 / 3600; y[n] = 100 * $4; s[n] = $1
                       if (x[n] > xmax) xmax = x[n]; if (n == 1 || y[n] < ymin) ymin = y[n] }
  END {
    W = 640; H = 400; L = 60; R = 20; T = 40; B = 50
    if (xmax <= 0) xmax = 1
    ymin = int(ymin / 10) * 10; if (ymin > 90) ymin = 90
    printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H
    printf "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, H
    printf "<text x=\"%d\" y=\"20\" text-anchor=\"middle\">%s</text>\n", W / 2, title
    printf "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", L, H - B, W - R, H - B
    printf "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", L, T, L, H - B
    for (i = 0; i <= 5; i++) {
      gx = L + i * (W - L - R) / 5; gy = H - B - i * (H - T - B) / 5
      printf "<text x=\"%g\" y=\"%d\" text-anchor=\"middle\">%.2g</text>\n", gx, H - B + 16, i * xmax / 5
      printf "<text x=\"%d\" y=\"%g\" text-anchor=\"end\">%.4g</text>\n", L - 6, gy + 4, ymin + i * (100 - ymin) / 5
      printf "<line x1=\"%d\" y1=\"%g\" x2=\"%d\" y2=\"%g\" stroke=\"#ddd\"/>\n", L, gy, W - R, gy
    }
    printf "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">training wall time (hours)</text>\n", (L + W - R) / 2, H - 12
    printf "<text x=\"16\" y=\"%d\" text-anchor=\"middle\" transform=\"rotate(-90 16 %d)\">test accuracy (%%)</text>\n", (T + H - B) / 2, (T + H - B) / 2
    printf "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\""
    for (i = 1; i <= n; i++)
      printf "%g,%g ", L + x[i] / xmax * (W - L - R), H - B - (y[i] - ymin) / (100 - ymin) * (H - T - B)
    printf "\"/>\n"
    for (i = 1; i <= n; i++)
      printf "<circle cx=\"%g\" cy=\"%g\" r=\"3\" fill=\"#1f77b4\"><title>step %s: %.2f %%</title></circle>\n", L + x[i] / xmax * (W - L - R), H - B - (y[i] - ymin) / (100 - ymin) * (H - T - B), s[i], y[i]
    printf "</svg>\n"
  }' "$curve" > "$dir/curve.svg"
}

if [ -n "$plot_only" ]; then
  [ -r "$curve" ] || { echo "accuracy-vs-time.sh: no $curve to draw" >&2; exit 2; }
  draw
  exit 0
fi
# the training state of the cell, if it is paused (one file; more means more than one cell)
training_state () {
  states=$(ls "$dir"/train.out/resume/*/*.fgw 2>/dev/null || true)
  if [ "$(echo "$states" | grep -c .)" -gt 1 ]; then
    echo "accuracy-vs-time.sh: more than one cell is training: give --seed (and --dataset)" >&2
    exit 2
  fi
  echo "$states"
}
# the step of the last pause, from the runner's line "... (run_steps) at step N of TOTAL; ..."
paused_at () { sed -n 's/.*(run_steps) at step \([0-9]*\) of \([0-9]*\).*/\'"$1"'/p' "$dir/train.log" 2>/dev/null | tail -n 1; }
row () {
  [ -n "$timer" ] || cpu=
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$wall" "$cpu" "$2" "$3" >> "$curve"
  draw
}

# evaluate STATE STEP: a copy of the training state on the test set, in a run of its own
evaluate () {
  cp "$1" "$dir/eval.fgw"
  # the method group: evaluate the copied state (no training, no checkpoint of its own)
  narrow "${eval_metrics:+metrics = $eval_metrics}" \
    "sec == \"[method:$method]\" && /^\\[method:/ { print; print \"epochs = 0\"; print \"init_checkpoint = $dir/eval.fgw\"; next }
    sec == \"[method:$method]\" && /^(iterations|epochs|checkpoint|init_checkpoint) *=/ { next }
    sec == \"[experiment]\" && /^(checkpoint_every|checkpoint_minutes) *=/ { next }
    sec == \"[experiment]\" && \"$eval_metrics\" != \"\" && /^metrics *=/ { next }" \
    > "$dir/eval.exp"
  rm -rf "$dir/eval.out"
  if ! nice -n "$niceness" "$flowgmm" run "$dir/eval.exp" --out "$dir/eval.out" > "$dir/eval.log" 2>&1; then
    echo "accuracy-vs-time.sh: evaluating the state at step $2 failed; see $dir/eval.log" >&2
    exit 1
  fi
  row "$2" "$(metric test_accuracy "$dir/eval.out/results.jsonl")" \
      "$(metric test_bpd "$dir/eval.out/results.jsonl")"
  rm -f "$dir/eval.fgw"
}

while :; do
  state=$(training_state)
  if [ -z "$state" ] && grep -q '"test_accuracy":[0-9]' "$dir/train.out/results.jsonl" 2>/dev/null; then
    # the cell is finished (now, or a rerun after the end): its own result is the last row
    step=$(paused_at 2); [ -n "$step" ] || step=end
    grep -q "^$step	" "$curve" || row "$step" "$(metric test_accuracy "$dir/train.out/results.jsonl")" \
                                       "$(metric test_bpd "$dir/train.out/results.jsonl")"
    break
  fi
  # a paused state not evaluated yet (also after a kill during an evaluation)
  step=$(paused_at 1)
  if [ -n "$state" ] && [ -n "$step" ] && ! grep -q "^$step	" "$curve"; then
    evaluate "$state" "$step"
  fi
  t0=$(date +%s.%N)
  set +e
  if [ -n "$timer" ]; then
    $timer -f '%U %S' -o "$dir/slice.time" nice -n "$niceness" "$flowgmm" run "$dir/train.exp" \
      --out "$dir/train.out" >> "$dir/train.log" 2>&1
  else
    nice -n "$niceness" "$flowgmm" run "$dir/train.exp" --out "$dir/train.out" >> "$dir/train.log" 2>&1
  fi
  rc=$?
  set -e
  t1=$(date +%s.%N)
  wall=$(awk -v a="$wall" -v b="$t0" -v c="$t1" 'BEGIN { printf "%.0f", a + c - b }')
  if [ -n "$timer" ]; then
    cpu=$(awk -v a="$cpu" '{ c = $1 + $2 } END { printf "%.0f", a + c }' "$dir/slice.time")
  fi
  if [ -z "$(training_state)" ] && ! grep -q '"test_accuracy":[0-9]' "$dir/train.out/results.jsonl" 2>/dev/null; then
    echo "accuracy-vs-time.sh: the training run stopped without a result (status $rc); see $dir/train.log" >&2
    exit 1
  fi
done
draw
echo "accuracy-vs-time.sh: $(($(wc -l < "$curve") - 1)) points in $curve, figure $dir/curve.svg"
