#!/bin/sh
# SPDX-License-Identifier: MIT
# CI stage: the build with MPI (configure --with-mpi) and its make check, which runs the MPI
# tests (tests/test-mpi.sh: runs over 1 to 4 ranks of Open MPI).  Installs Open MPI first; the
# default build (quickstart.sh) does not need it.  Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/../.." || exit 1
if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
if ! { $sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q \
         libopenmpi-dev openmpi-bin; }; then
  echo "mpi: cannot install Open MPI"
  echo "0 passed, 1 failed"
  exit 1
fi
# CI runs as root: Open MPI refuses that unless told twice.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
[ -x configure ] || ./autogen.sh
rm -rf build-mpi
mkdir build-mpi && cd build-mpi || exit 1
status=0
{ ../configure --with-mpi && make -j"$(nproc 2>/dev/null || echo 2)" \
    && make -j"$(nproc 2>/dev/null || echo 2)" check; } || status=$?
pass=$(sed -n 's/^# PASS: *//p' test-suite.log 2>/dev/null | head -n1)
fail=$(sed -n 's/^# FAIL: *//p' test-suite.log 2>/dev/null | head -n1)
xpass=$(sed -n 's/^# XPASS: *//p' test-suite.log 2>/dev/null | head -n1)
err=$(sed -n 's/^# ERROR: *//p' test-suite.log 2>/dev/null | head -n1)
passed=${pass:-0}
failed=$(( ${fail:-0} + ${xpass:-0} + ${err:-0} ))
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
if [ "$status" -eq 0 ] && ! grep -q '^ok ' tests/test-mpi.sh.log 2>/dev/null; then
  echo "mpi: the MPI tests did not run"
  status=1
  failed=$((failed + 1))
fi
echo "mpi: $passed passed, $failed failed"
exit "$status"
