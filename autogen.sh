#!/bin/sh
# SPDX-License-Identifier: MIT
# Bootstrap the build system from a git checkout: ./autogen.sh && ./configure && make
set -e
srcdir=$(dirname "$0")
cd "$srcdir"
autoreconf --force --install --verbose
