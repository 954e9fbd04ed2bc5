#!/bin/sh
# SPDX-License-Identifier: MIT
# plugins/template.c builds out of tree, as a plugin author's copy would, with nothing but cc
# and pkg-config against the build tree's flowgmm-uninstalled.pc, and the built flowgmm loads
# it (`flowgmm list --plugin-dir DIR`).  TAP output.
set -u
top=${FG_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
build=${FG_TOP_BUILDDIR:-$top}
CC=${CC:-cc}
[ -f "$build/flowgmm-uninstalled.pc" ] || { echo "1..0 # SKIP no $build/flowgmm-uninstalled.pc"; exit 0; }
command -v pkg-config >/dev/null 2>&1 || { echo "1..0 # SKIP no pkg-config"; exit 0; }
command -v ${CC%% *} >/dev/null 2>&1 || { echo "1..0 # SKIP no C compiler ($CC)"; exit 0; }

work=$(mktemp -d "${TMPDIR:-/tmp}/fg-template.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "1..4"

# Only the build tree's .pc: pkg-config prefers flowgmm-uninstalled.pc for "flowgmm".
PKG_CONFIG_PATH=$build; export PKG_CONFIG_PATH
cflags=$(pkg-config --cflags flowgmm 2>"$work/pc.err") && libs=$(pkg-config --libs flowgmm 2>>"$work/pc.err")
if [ $? -eq 0 ] && echo "$cflags" | grep -q -- "-I$top/core/include"; then
  echo "ok 1 - pkg-config flowgmm resolves to the uninstalled tree ($cflags)"
else
  echo "not ok 1 - pkg-config flowgmm resolves to the uninstalled tree"
  sed 's/^/#   /' "$work/pc.err"
  exit 0
fi

mkdir "$work/src" "$work/plugins"
cp "$top/plugins/template.c" "$work/src/"
if grep -q '^#include "config.h"' "$work/src/template.c"; then
  echo "not ok 2 - template.c includes config.h (it cannot build outside the tree)"
else
  echo "ok 2 - template.c does not include config.h"
fi

# shellcheck disable=SC2086
if (cd "$work/src" && $CC -std=gnu11 -shared -fPIC -fvisibility=hidden -Wall -Werror \
      $cflags template.c -o "$work/plugins/template.so" $libs) >"$work/cc.log" 2>&1; then
  echo "ok 3 - template.c builds out of tree with cc and pkg-config alone"
else
  echo "not ok 3 - template.c builds out of tree with cc and pkg-config alone"
  sed 's/^/#   /' "$work/cc.log" | tail -n 20
  exit 0
fi

# Only DIR: neither the build's plugin path nor an installed directory.
if env FLOWGMM_PLUGIN_PATH= FLOWGMM_PLUGIN_SYSTEM_PATH= "$build/cli/flowgmm" list \
     --plugin-dir "$work/plugins" >"$work/list.log" 2>&1 \
   && grep -q "template.*$work/plugins/template.so" "$work/list.log" \
   && grep -q "baseline  *template-centroid" "$work/list.log"; then
  echo "ok 4 - flowgmm list --plugin-dir DIR loads it"
else
  echo "not ok 4 - flowgmm list --plugin-dir DIR loads it"
  sed 's/^/#   /' "$work/list.log" | tail -n 20
fi
