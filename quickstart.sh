#!/bin/sh
# SPDX-License-Identifier: MIT
# flowgmm quick start on Debian 12.
#
#   ./quickstart.sh          install dependencies, build, run the main job (paper Fig. 1/2/4:
#                            FlowGMM on the 2-D synthetic data sets; no downloads)
#   ./quickstart.sh check    install dependencies, build, run the test suite; the last line
#                            reads "N passed, N failed"
#
# Dependencies come from Debian's archive with apt-get (through sudo when not root).  The build
# happens in ./build; run it again at any time: finished steps are not repeated.
set -eu

# Build and test dependencies (one list; keep doc/ and the README in sync with it).
PACKAGES="build-essential autoconf automake libtool pkg-config gzip \
  libglib2.0-dev libjson-glib-dev libopenblas-dev libcsv-dev libzip-dev liblbfgs-dev \
  libcairo2-dev"
# Real data the tests read when present: scikit-learn's bundled CSVs, Fashion-MNIST.
TEST_PACKAGES="python3-sklearn dataset-fashion-mnist"

mode=${1:-run}
top=$(cd "$(dirname "$0")" && pwd)
cd "$top"

install_packages () {
  missing=""
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
  done
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  echo "quickstart: installing$missing" >&2
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q $missing
}

build () {
  [ -x configure ] || ./autogen.sh
  mkdir -p build
  cd build
  [ -f Makefile ] || ../configure
  make -j"$(nproc 2>/dev/null || echo 2)"
}

case "$mode" in
  run)
    install_packages $PACKAGES
    build
    ./flowgmm-uninstalled run ../experiments/synthetic.exp --out synthetic.out
    ;;
  check)
    install_packages $PACKAGES $TEST_PACKAGES
    build
    status=0
    make -j"$(nproc 2>/dev/null || echo 2)" check || status=$?
    # automake's TAP driver counts every test case; its totals head test-suite.log.
    pass=$(sed -n 's/^# PASS: *//p' test-suite.log | head -n1)
    xfail=$(sed -n 's/^# XFAIL: *//p' test-suite.log | head -n1)
    skip=$(sed -n 's/^# SKIP: *//p' test-suite.log | head -n1)
    fail=$(sed -n 's/^# FAIL: *//p' test-suite.log | head -n1)
    xpass=$(sed -n 's/^# XPASS: *//p' test-suite.log | head -n1)
    err=$(sed -n 's/^# ERROR: *//p' test-suite.log | head -n1)
    passed=$(( ${pass:-0} + ${xfail:-0} ))
    failed=$(( ${fail:-0} + ${xpass:-0} + ${err:-0} ))
    if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
    echo "${skip:-0} skipped"
    echo "$passed passed, $failed failed"
    exit "$status"
    ;;
  *)
    echo "usage: $0 [run|check]" >&2
    exit 2
    ;;
esac
