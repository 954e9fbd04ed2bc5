#!/bin/sh
# SPDX-License-Identifier: MIT
# flowgmm tests — the command-line program, as a TAP producer.
#
# Runs the built program ($FG_TOP_BUILDDIR/cli/flowgmm, a libtool wrapper) with the build
# tree's plugins ($FLOWGMM_PLUGIN_PATH, set by tests/Makefile.am.inc) on tests/data/tiny.exp.
# Without that environment it bails out (an error for the TAP driver), never passes silently.

set -u

if [ -z "${FG_TOP_SRCDIR:-}" ]; then
  echo "Bail out! FG_TOP_SRCDIR is not set: run this through 'make check'"
  exit 1
fi
. "$FG_TOP_SRCDIR/tests/tap.sh"
tap_require FG_TOP_BUILDDIR FLOWGMM_PLUGIN_PATH
FLOWGMM="$FG_TOP_BUILDDIR/cli/flowgmm"
DATA="$FG_TOP_SRCDIR/tests/data"
if [ ! -x "$FLOWGMM" ]; then
  echo "Bail out! $FLOWGMM is not built"
  exit 1
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fgcli.XXXXXX") || { echo "Bail out! mktemp failed"; exit 1; }
trap 'rm -rf "$tmp"' EXIT
out="$tmp/out"

echo "1..33"

# After a failure: what the program said, as TAP diagnostics.
tap_diag () {
  for f in "$tmp/stdout" "$tmp/stderr"; do
    [ -f "$f" ] && sed -e 's/^/# /' "$f" | head -n 20
  done
}

# run EXPECTED_STATUS ARGS...: runs flowgmm, keeps its output, checks its exit status.
run () {
  expected=$1
  shift
  "$FLOWGMM" "$@" >"$tmp/stdout" 2>"$tmp/stderr"
  status=$?
  if [ "$status" -ne "$expected" ]; then
    echo "# flowgmm $*: exit status $status, expected $expected"
    return 1
  fi
  return 0
}

out_has () { grep -q -e "$1" "$tmp/stdout"; }
err_has () { grep -q -e "$1" "$tmp/stderr"; }

# --- help and version
check "no arguments prints the help and exits 0" \
  eval 'run 0 && out_has "^Usage:" && out_has "run FILE" && out_has "describe NAME"'
check "--help prints the help" eval 'run 0 --help && out_has "table DIR"'
check "help run shows the run options" eval 'run 0 help run && out_has "--retry-failed"'
check "--version prints the version" eval 'run 0 --version && out_has "^flowgmm [0-9][0-9.]*$"'

# --- usage errors: exit 2 with "flowgmm: ..." on stderr
check "an unknown command is a usage error (2)" \
  eval 'run 2 no-such-command && err_has "^flowgmm: unknown command"'
check "run without a file is a usage error (2)" eval 'run 2 run && err_has "^flowgmm: "'
check "an unknown option is a usage error (2)" \
  eval 'run 2 run --no-such-option "$DATA/tiny.exp" && err_has "^flowgmm: "'
check "a negative --jobs is a usage error (2)" \
  eval 'run 2 run --jobs=-1 "$DATA/tiny.exp"'

# --- list and describe
check "list shows the template plugin and its components" \
  eval 'run 0 list && out_has "template" && out_has "baseline *template-centroid" && out_has "dataset *template-blobs"'
check "describe template-centroid lists its parameters" \
  eval 'run 0 describe template-centroid && out_has "^template-centroid (baseline)" && out_has "shrink" && out_has "\[0, 1\]" && out_has "use_unlabeled"'
check "describe split lists the split keys" \
  eval 'run 0 describe split && out_has "labeled_per_class" && out_has "validation"'
check "describe of an unknown name fails (1)" \
  eval 'run 1 describe no-such-component && err_has "^flowgmm: no component"'

# --- run, resume, table
check "run --quiet on tiny.exp succeeds and prints no table" \
  eval 'run 0 run --quiet --out "$out" "$DATA/tiny.exp" && test ! -s "$tmp/stdout"'
check "run --quiet prints nothing on stderr" test ! -s "$tmp/stderr"
check "results.jsonl holds one line per cell" \
  eval 'test "$(wc -l < "$out/results.jsonl")" -eq 6'
check "the table files are written" \
  eval 'test -s "$out/table.md" && test -s "$out/table.csv" && test -s "$out/table.tex" && test -s "$out/experiment.exp"'
cp "$out/results.jsonl" "$tmp/results.before" 2>/dev/null
check "a second run computes nothing new and prints the table" \
  eval 'run 0 run --jobs 2 --out "$out" "$DATA/tiny.exp" && err_has "0 run now" && err_has "6 already stored" && out_has "| centroid |" && out_has "| centroid-u |"'
check "the second run leaves results.jsonl unchanged" cmp -s "$tmp/results.before" "$out/results.jsonl"
check "table DIR prints the same table" \
  eval 'run 0 table "$out" && cmp -s "$tmp/stdout" "$out/table.md"'

# --- errors: exit 1 with "flowgmm: ..." on stderr
check "run on a missing file fails (1)" \
  eval 'run 1 run --out "$tmp/none" "$tmp/no-such.exp" && err_has "^flowgmm: "'
printf '[dataset:d]\nplugin = template-blobs\ncolour = red\n[method:m]\nplugin = template-centroid\n' \
  > "$tmp/bad.exp"
check "an invalid experiment names file, group and key (1)" \
  eval 'run 1 run --out "$tmp/bad.out" "$tmp/bad.exp" && err_has "bad.exp:3: \[dataset:d\] key .colour."'
check "an invalid experiment writes nothing" test ! -e "$tmp/bad.out"
check "table on a directory without results fails (1)" \
  eval 'run 1 table "$tmp" && err_has "^flowgmm: "'
printf '[experiment]\ntitle = other\n[dataset:d]\nplugin = template-blobs\n[method:m]\nplugin = template-centroid\n' \
  > "$tmp/other.exp"
check "run into the output of another experiment is refused (1)" \
  eval 'run 1 run --quiet --out "$out" "$tmp/other.exp" && err_has "not .other."'

# --- crashes and failures: exit 3, reported even with --quiet
plugins="$tmp/plugins"
mkdir -p "$plugins"
if [ -n "${FG_FIXTURE_PLUGIN_DIR:-}" ] && cp "$FG_FIXTURE_PLUGIN_DIR/good.so" "$FG_FIXTURE_PLUGIN_DIR/crash.so" "$plugins/"; then
  check "a run with crashing cells goes on, stores them and exits 3" \
    eval 'run 3 run --quiet -P "$plugins" --out "$tmp/crash.out" "$DATA/crash.exp" && grep -q "| segv | error |" "$tmp/crash.out/table.md" && grep -q "| after |" "$tmp/crash.out/table.md" && test "$(wc -l < "$tmp/crash.out/results.jsonl")" -eq 12'
  check "--quiet still reports the crashed cells on stderr" \
    eval 'err_has "crashed: SIGSEGV in baseline .crash-baseline. during fit" && err_has "crashed: SIGABRT" && err_has "8 cells failed"'
  check "--retry-failed --jobs 2 runs the crashed cells again" \
    eval 'run 3 run --quiet --retry-failed --jobs 2 -P "$plugins" --out "$tmp/crash.out" "$DATA/crash.exp" && test "$(wc -l < "$tmp/crash.out/results.jsonl")" -eq 20'
  stray="$tmp/stray"
  mkdir -p "$stray"
  cp "$plugins/good.so" "$stray/"
  check "a component two plugin files provide is an error naming both (1)" \
    eval 'run 1 run --quiet -P "$plugins" -P "$stray" --out "$tmp/amb.out" "$DATA/fail.exp" && err_has "good-data. is provided by two plugin files" && err_has "$plugins/good.so" && err_has "$stray/good.so"'
  check "--prefer says which one wins" \
    eval 'run 3 run --quiet -P "$plugins" -P "$stray" --prefer "$stray" --out "$tmp/amb.out" "$DATA/fail.exp" && grep -q "| broken | error |" "$tmp/amb.out/table.md"'
  check "the same directory as option and in the environment is loaded once" \
    eval 'FLOWGMM_PLUGIN_PATH="$FLOWGMM_PLUGIN_PATH:$plugins" run 0 list -P "$plugins" && out_has "crash-baseline" && ! out_has "Rejected"'
else
  for i in 1 2 3 4 5 6; do n=$((n + 1)); echo "ok $n # SKIP FG_FIXTURE_PLUGIN_DIR is not set"; done
fi
check "--plugin-dir naming a missing directory is an error (1)" \
  eval 'run 1 list -P "$tmp/no-such-dir" && err_has "no such directory"'
check "--plugin-dir naming a file is an error (1)" \
  eval 'run 1 list -P "$DATA/tiny.exp" && err_has "not a directory"' 
check "help run shows --no-isolate" eval 'run 0 help run && out_has "--no-isolate"'

[ "$n" -eq 33 ] || echo "# planned 33 checks but ran $n"
tap_summary
