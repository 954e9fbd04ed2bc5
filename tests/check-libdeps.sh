#!/bin/sh
# SPDX-License-Identifier: MIT
# libflowgmm must not depend on cairo: figures are drawn by a module of their own
# (core/experiment/figure-render.c), built where cairo is and opened when figures are drawn.
# TAP output.
set -u
top=${FG_TOP_BUILDDIR:-.}
lib=$top/core/.libs/libflowgmm.so
module=$top/core/experiment/.libs/figure-render.so
if ! command -v readelf >/dev/null 2>&1; then
  echo "1..0 # SKIP readelf (binutils) is not installed"
  exit 0
fi
if [ ! -f "$lib" ]; then
  echo "Bail out! $lib is not built"
  exit 1
fi
echo "1..3"
needed () { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }

if needed "$lib" | grep -q cairo; then
  echo "not ok 1 - libflowgmm links cairo: $(needed "$lib" | tr '\n' ' ')"
else
  echo "ok 1 - libflowgmm does not link cairo"
fi
if [ ! -f "$module" ]; then
  echo "ok 2 # SKIP no figure renderer module (built without cairo)"
  echo "ok 3 # SKIP no figure renderer module (built without cairo)"
  exit 0
fi
if needed "$module" | grep -q cairo && needed "$module" | grep -q libflowgmm; then
  echo "ok 2 - the figure renderer module links cairo and libflowgmm"
else
  echo "not ok 2 - the figure renderer module does not link cairo and libflowgmm: $(needed "$module" | tr '\n' ' ')"
fi
exported=$(readelf --dyn-syms -W "$module" | awk '$5 == "GLOBAL" && $7 != "UND" { print $8 }' | sort -u | tr '\n' ' ')
if [ "$exported" = "fg_figure_renderer_query " ]; then
  echo "ok 3 - the module exports only fg_figure_renderer_query"
else
  echo "not ok 3 - the module exports: $exported"
fi
