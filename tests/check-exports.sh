#!/bin/sh
# SPDX-License-Identifier: MIT
# libflowgmm exports exactly its public API: every dynamic symbol it defines is an fg_* name
# declared in core/include/flowgmm/ (doc/versioning.md).  Catches a private helper that leaks
# (e.g. the ifuncs that gcc's target_clones makes ignore -fvisibility=hidden).  TAP output.
set -u
top=${FG_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
build=${FG_TOP_BUILDDIR:-$top}
lib=$build/core/.libs/libflowgmm.so
[ -f "$lib" ] || { echo "1..0 # SKIP no $lib (static build?)"; exit 0; }
if command -v nm >/dev/null 2>&1; then
  syms=$(nm -D --defined-only "$lib" | awk 'NF >= 3 { print $3 }')
elif command -v readelf >/dev/null 2>&1; then
  syms=$(readelf -W --dyn-syms "$lib" | awk '$7 != "UND" && $5 != "LOCAL" && $8 != "" { print $8 }')
else
  echo "1..0 # SKIP neither nm nor readelf"; exit 0
fi
syms=$(printf '%s\n' "$syms" | sed 's/@.*//' | LC_ALL=C sort -u)
headers=$(ls "$top"/core/include/flowgmm/*.h)

echo "1..3"
n_syms=$(printf '%s\n' "$syms" | grep -c .)
if [ "$n_syms" -gt 100 ]; then
  echo "ok 1 - libflowgmm exports $n_syms symbols"
else
  echo "not ok 1 - libflowgmm exports only $n_syms symbols (is the listing broken?)"
fi

bad=$(printf '%s\n' "$syms" | grep -v '^fg_' || true)
if [ -z "$bad" ]; then
  echo "ok 2 - every exported symbol starts with fg_"
else
  echo "not ok 2 - exported symbols outside the fg_ namespace:"
  printf '%s\n' "$bad" | sed 's/^/#   /'
fi

undeclared=""
for s in $(printf '%s\n' "$syms" | grep '^fg_'); do
  grep -qw -- "$s" $headers || undeclared="$undeclared $s"
done
if [ -z "$undeclared" ]; then
  echo "ok 3 - every exported symbol is declared in a public header"
else
  echo "not ok 3 - exported but declared in no public header (make it static or hidden):"
  for s in $undeclared; do echo "#   $s"; done
fi
