#!/bin/sh
# SPDX-License-Identifier: MIT
# CI stage: the Debian packaging check (packaging/check-deb.sh): build the .deb packages from the
# `make dist` tarball, lintian them, install them here, use them, remove them.  About 3 minutes
# on 2 cores, most of it the package build and its test suite.  Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
# Packaging tools, the build dependencies of packaging/debian/control, and scikit-learn's data
# for the installed experiment that the check runs.
if ! { $sudo apt-get update -q && $sudo apt-get install -y -q --no-install-recommends \
         dpkg-dev debhelper lintian devscripts fakeroot \
         build-essential autoconf automake libtool pkg-config \
         libglib2.0-dev libjson-glib-dev libopenblas-dev libcsv-dev libzip-dev liblbfgs-dev \
         libcairo2-dev python3-sklearn; } >/tmp/fg-packaging-apt.log 2>&1; then
  tail -n 20 /tmp/fg-packaging-apt.log
  echo "packaging: apt-get could not install the packaging tools"
  echo "0 passed, 1 failed"
  exit 1
fi
exec sh packaging/check-deb.sh
