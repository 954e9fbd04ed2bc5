#!/bin/sh
# SPDX-License-Identifier: MIT
# CI stage: make check of a build with AddressSanitizer, LeakSanitizer and UBSan
# (configure --enable-sanitizers) in its own build directory.  Leaks of libraries outside
# flowgmm (fontconfig's caches) are suppressed by tests/lsan.supp.  Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/../.." || exit 1
[ -x configure ] || ./autogen.sh
rm -rf build-sanitizers
mkdir build-sanitizers && cd build-sanitizers || exit 1
jobs=$(nproc 2>/dev/null || echo 2)
status=0
# MPI has its own stage; its launcher is not built for sanitizers.
{ ../configure --enable-sanitizers --without-mpi && make -j"$jobs" && make -j"$jobs" check; } || status=$?
pass=$(sed -n 's/^# PASS: *//p' test-suite.log 2>/dev/null | head -n1)
fail=$(sed -n 's/^# FAIL: *//p' test-suite.log 2>/dev/null | head -n1)
xpass=$(sed -n 's/^# XPASS: *//p' test-suite.log 2>/dev/null | head -n1)
err=$(sed -n 's/^# ERROR: *//p' test-suite.log 2>/dev/null | head -n1)
passed=${pass:-0}
failed=$(( ${fail:-0} + ${xpass:-0} + ${err:-0} ))
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
if [ "$status" -eq 0 ] && [ "$passed" -eq 0 ]; then
  echo "sanitizers: no test ran"
  status=1
  failed=$((failed + 1))
fi
echo "sanitizers: $passed passed, $failed failed"
exit "$status"
