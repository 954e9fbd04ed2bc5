#!/bin/sh
# SPDX-License-Identifier: MIT
# flowgmm tests — a run killed with SIGKILL twice resumes from the cell's saved training state
# and ends with the very weights of an uninterrupted run (TAP).
#
# The same method group runs in two directories: once without checkpointing, once with
# `checkpoint_every` (an [experiment] key, so the cells are the same).  The second run is killed
# (kill -9) as soon as a training state exists, run again and killed once the state has moved
# on, then run to the end.  The final weights (the method's `checkpoint` file) must be equal
# byte for byte.  If the machine is so fast that a run ends before it can be killed, the kill
# checks are skipped, never passed.

set -u

if [ -z "${FG_TOP_BUILDDIR:-}" ] || [ -z "${FLOWGMM_PLUGIN_PATH:-}" ]; then
  echo "Bail out! FG_TOP_BUILDDIR and FLOWGMM_PLUGIN_PATH are not set: run this through 'make check'"
  exit 1
fi
FLOWGMM="$FG_TOP_BUILDDIR/cli/flowgmm"
if [ ! -x "$FLOWGMM" ]; then
  echo "Bail out! $FLOWGMM is not built"
  exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/fgkill.XXXXXX") || { echo "Bail out! mktemp failed"; exit 1; }
pid=
trap '[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT

method='[dataset:moons]
plugin = moons

[method:flowgmm]
plugin = flowgmm
flow.layers = 2
flow.hidden = 16
iterations = 6000
unlabeled_batch = 50
unlabeled_order = shuffle
checkpoint = final.fgw'

mkdir "$tmp/once" "$tmp/killed"
printf '[experiment]\nseeds = 0\n\n%s\n' "$method" > "$tmp/once/r.exp"
printf '[experiment]\nseeds = 0\ncheckpoint_every = 100\n\n%s\n' "$method" > "$tmp/killed/r.exp"

echo "1..6"
n=0
failed=0
report () { # report OK DESCRIPTION [SKIP-REASON]
  n=$((n + 1))
  if [ -n "${3:-}" ]; then
    echo "ok $n - $2 # SKIP $3"
  elif [ "$1" = 0 ]; then
    echo "ok $n - $2"
  else
    echo "not ok $n - $2"
    failed=$((failed + 1))
  fi
}

"$FLOWGMM" run -q --no-isolate "$tmp/once/r.exp" > "$tmp/once.log" 2>&1 || cat "$tmp/once.log" | sed "s/^/# /"
report $? "the uninterrupted run succeeds"

state () { find "$tmp/killed/r.out/resume" -name flowgmm-state.fgw 2>/dev/null | head -n 1; }

# Start a run, wait (at most 60 s) until `cond` holds, then kill -9 it.  Sets `killed` to yes
# when the process was still running when killed.
run_and_kill () {
  cond=$1
  "$FLOWGMM" run -q --no-isolate "$tmp/killed/r.exp" > "$tmp/killed.log" 2>&1 &
  pid=$!
  i=0
  while [ $i -lt 6000 ] && kill -0 "$pid" 2>/dev/null && ! eval "$cond"; do
    sleep 0.01
    i=$((i + 1))
  done
  killed=no
  if kill -9 "$pid" 2>/dev/null; then
    killed=yes
  fi
  wait "$pid" 2>/dev/null
  pid=
}

run_and_kill '[ -n "$(state)" ]'
first=$(state)
if [ "$killed" = yes ] && [ -n "$first" ]; then
  sum1=$(cksum < "$first")
  report 0 "killed once with a training state saved"
  run_and_kill '[ -n "$(state)" ] && [ "$(cksum < "$(state)")" != "$sum1" ]'
  if [ "$killed" = yes ]; then
    report 0 "killed again after the state moved on"
  else
    report 0 "killed again" "the run ended before it could be killed"
  fi
else
  report 0 "killed once" "the run ended before it could be killed"
  report 0 "killed again" "the run ended before it could be killed"
fi

"$FLOWGMM" run -q --no-isolate "$tmp/killed/r.exp" > "$tmp/resumed.log" 2>&1
report $? "the resumed run succeeds"

cmp -s "$tmp/once/final.fgw" "$tmp/killed/final.fgw"
report $? "the final weights are bit-identical to the uninterrupted run's"

[ -z "$(state)" ]
report $? "the finished cell's training state is deleted"

exit $((failed > 0))
