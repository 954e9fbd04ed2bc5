#!/bin/sh
# SPDX-License-Identifier: MIT
# The core's layers go one way: numeric <- data <- loader <- method <- experiment (doc/layers.md).
# A file may include the private headers of its own folder and of the folders before it, and the
# public headers of its own layer and the layers before it; the public headers obey the same rule.
# TAP output: one test per checked file.
set -u
top=${FG_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$top/core" || { echo "1..0 # SKIP no core/ at $top"; exit 0; }

# The layer of a folder, or of a public header (by name, without .h).
layer_of_folder () {
  case "$1" in
    numeric) echo 1 ;; data) echo 2 ;; loader) echo 3 ;; method) echo 4 ;; experiment) echo 5 ;;
    *) echo 99 ;;
  esac
}
layer_of_header () {
  case "$1" in
    error|vecmath|parallel|tensor|rng|weights|tape|optim|group) echo 1 ;;
    params|dataset|split|io) echo 2 ;;
    plugin|registry) echo 3 ;;
    gmm|loss|neighbors|analysis) echo 4 ;;
    experiment|figure|flowgmm|mpi) echo 5 ;;
    *) echo 99 ;;
  esac
}

files=$(find numeric data loader method experiment include/flowgmm -name '*.[ch]' | LC_ALL=C sort)
n=0
for f in $files; do n=$((n + 1)); done
echo "1..$n"
i=0
fail=0
for f in $files; do
  i=$((i + 1))
  case "$f" in
    include/flowgmm/*) own=$(layer_of_header "$(basename "$f" .h)") ;;
    *) own=$(layer_of_folder "${f%%/*}") ;;
  esac
  bad=""
  # Private headers: "folder/name.h" paths relative to core/.
  for inc in $(sed -n 's|^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*|\1|p' "$f"); do
    case "$inc" in
      config.h) continue ;;
      */*) l=$(layer_of_folder "${inc%%/*}") ;;
      *) bad="$bad $inc(no-folder)"; continue ;;
    esac
    [ "$l" -le "$own" ] || bad="$bad $inc"
  done
  for h in $(sed -n 's|^[[:space:]]*#[[:space:]]*include[[:space:]]*<flowgmm/\([a-z0-9_-]*\)\.h>.*|\1|p' "$f"); do
    l=$(layer_of_header "$h")
    [ "$l" -le "$own" ] || bad="$bad <flowgmm/$h.h>"
  done
  if [ -n "$bad" ]; then
    echo "not ok $i - core/$f (layer $own) includes a later layer:$bad"
    fail=1
  else
    echo "ok $i - core/$f"
  fi
done
exit 0
