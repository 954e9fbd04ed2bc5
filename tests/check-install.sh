#!/bin/sh
# SPDX-License-Identifier: MIT
# A fresh install as a plugin author or a packager gets it: `make install` into a private
# DESTDIR, then, with nothing but pkg-config and the installed files: the template plugin and an
# out-of-tree plugin build, the installed program loads them from the versioned plugin
# directory, an experiment with {data} paths runs, and the installed docs and layout hold
# (no .la among the plugins, LICENSE installed, the plugin guide's links resolve, no private
# dependency in `pkg-config --cflags`).  TAP output.
set -u
top=${FG_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
build=${FG_TOP_BUILDDIR:-$top}
CC=${CC:-cc}
[ -f "$build/Makefile" ] || { echo "1..0 # SKIP no build tree at $build"; exit 0; }
command -v pkg-config >/dev/null 2>&1 || { echo "1..0 # SKIP no pkg-config"; exit 0; }
command -v ${CC%% *} >/dev/null 2>&1 || { echo "1..0 # SKIP no C compiler ($CC)"; exit 0; }

work=$(mktemp -d "${TMPDIR:-/tmp}/fg-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
dest=$work/dest
n=0
fail=0
ok () { n=$((n + 1)); echo "ok $n - $1"; }
not_ok () { n=$((n + 1)); fail=$((fail + 1)); echo "not ok $n - $1"; }
check () { desc=$1; shift; if "$@" >"$work/out" 2>&1; then ok "$desc"; else not_ok "$desc"; sed 's/^/#   /' "$work/out" | tail -n 20; fi; }

# Install.  Unset MAKEFLAGS: inside `make check -jN` the jobserver belongs to the outer make.
if ! env -u MAKEFLAGS -u MFLAGS make -s -C "$build" install DESTDIR="$dest" >"$work/install.log" 2>&1; then
  echo "1..1"; echo "not ok 1 - make install DESTDIR=..."; sed 's/^/#   /' "$work/install.log" | tail -n 30
  exit 0
fi
echo "1..13"
if grep -i 'warning' "$work/install.log" | grep -v -e "has not been installed in" -e "remember to run" >"$work/warn"; then
  not_ok "make install prints no warnings"; sed 's/^/#   /' "$work/warn"
else
  ok "make install prints no relinking or other warnings"
fi

# The installed .pc, relocated into DESTDIR by rewriting its prefix (every directory in it
# derives from prefix).  --define-variable would also move glib's prefix.
pcfile=$(find "$dest" -name flowgmm.pc -path '*/pkgconfig/*' | head -n 1)
prefix=$(sed -n 's/^prefix=//p' "$pcfile")
mkdir -p "$work/pc"
sed "s|^prefix=.*|prefix=$dest$prefix|" "$pcfile" > "$work/pc/flowgmm.pc"
PKG_CONFIG_PATH=$work/pc${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}; export PKG_CONFIG_PATH
pc () { pkg-config "$@" flowgmm; }
plugindir=$(pc --variable=plugindir)
abi=$(pc --variable=plugin_abi)
examples=$(pc --variable=examplesdir)
docdir=$(dirname "$examples")
libdir=$(pc --variable=libdir)

check "plugins installed in the versioned directory plugins-$abi (ABI in plugin.h)" \
  sh -c "[ \"\$(basename '$plugindir')\" = plugins-$abi ] && ls '$plugindir'/*.so &&
         grep -q '^#define FG_PLUGIN_ABI_VERSION ${abi}u' '$top/core/include/flowgmm/plugin.h'"
check "no libtool .la files in the plugin and module directories; both versioned" \
  sh -c "! ls '$plugindir' | grep '\\.la\$' &&
         for d in '$(dirname "$plugindir")'/modules*; do
           [ -e \"\$d\" ] || continue
           [ \"\$(basename \"\$d\")\" = modules-$abi ] && ! ls \"\$d\" | grep '\\.la\$' || exit 1
         done"
check "pkg-config --cflags flowgmm names no private dependency" \
  sh -c "! pkg-config --cflags flowgmm | grep -e json-glib -e openblas -e cairo"
check "LICENSE, NEWS and the plugin guide are installed" \
  sh -c "[ -s '$docdir/LICENSE' ] && [ -s '$docdir/NEWS' ] && [ -s '$docdir/plugin-guide.md' ]"

# Every relative link of the installed Markdown docs leads to an installed file (absolute
# ones: under DESTDIR).
links_resolve () {
  status=0
  for md in "$docdir"/*.md; do
    for target in $(grep -o '](\([^)#]*\))' "$md" | sed 's/^](//; s/)$//' | grep -v '://'); do
      case "$target" in
        /*) path=$dest$target ;;
        *) path=$(dirname "$md")/$target ;;
      esac
      [ -e "$path" ] || { echo "$(basename "$md"): link to $target does not resolve"; status=1; }
    done
  done
  return $status
}
check "the installed docs' links resolve" links_resolve

# Build the installed template and an out-of-tree plugin with pkg-config alone.
mkdir -p "$work/plugins"
build_plugin () {
  $CC -shared -fPIC -fvisibility=hidden -Wall -Werror=implicit-function-declaration \
    -o "$work/plugins/$2.so" "$1" $(pc --cflags --libs)
}
check "the installed template.c builds with pkg-config alone" build_plugin "$examples/template.c" template
check "an out-of-tree plugin builds with pkg-config alone" build_plugin "$top/tests/data/oot-stripes.c" oot-stripes
check "the installed gradcheck helpers compile" \
  $CC -c -Wall -Werror=implicit-function-declaration -o "$work/gradcheck.o" "$examples/gradcheck.c" $(pc --cflags)

# The installed program with the installed library and plugins only.
bin=$(dirname "$libdir")/bin/flowgmm
[ -x "$bin" ] || bin=$dest$prefix/bin/flowgmm
fg () {
  env -u FLOWGMM_PLUGIN_PATH LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    FLOWGMM_PLUGIN_SYSTEM_PATH="$plugindir" "$bin" "$@"
}
list_ok () {
  fg list --plugin-dir "$work/plugins" >"$work/list" 2>&1 || { cat "$work/list"; return 1; }
  cat "$work/list"
  for c in template-blobs template-centroid oot-stripes knn synthetic csv; do
    grep -q " $c " "$work/list" || grep -q " $c\$" "$work/list" || { echo "missing: $c"; return 1; }
  done
  ! grep -q "Rejected" "$work/list"
}
check "flowgmm list --plugin-dir DIR loads the installed and the new plugins" list_ok

# An experiment whose data path goes through the data directory ({data}).
mkdir -p "$work/data"
awk 'BEGIN { for (i = 0; i < 90; i++) printf "%d,%.3f,%d\n", i % 3, (i % 3) * 5 + (i % 7) * 0.1, i % 3 }' \
  > "$work/data/points.csv"
cat > "$work/run.exp" <<EXP
[experiment]
seeds = 0

[dataset:stripes]
plugin     = oot-stripes
labeled    = 6
validation = 20

[dataset:points]
plugin     = csv
path       = {data}/points.csv
header     = none
test       = 30
labeled    = 6
validation = 15

[method:centroid]
plugin = template-centroid

[method:knn]
plugin = knn
k      = 1
EXP
run_ok () {
  FLOWGMM_DATA_DIR=$work/data fg run --plugin-dir "$work/plugins" -q "$work/run.exp" \
    --out "$work/run.out" || return 1
  [ "$(grep -c '"status":"ok"' "$work/run.out/results.jsonl")" -eq 4 ] || {
    cat "$work/run.out/results.jsonl"; return 1; }
}
check "an experiment with out-of-tree plugins and a {data} path runs from the install" run_ok
key_wins () {
  { echo "[experiment]"; echo "data_dir = data"; sed 1d "$work/run.exp"; } > "$work/run3.exp"
  FLOWGMM_DATA_DIR=$work/nowhere fg run --plugin-dir "$work/plugins" -q "$work/run3.exp" \
    --out "$work/run3.out" || return 1
  [ "$(grep -c '"status":"ok"' "$work/run3.out/results.jsonl")" -eq 4 ] || {
    cat "$work/run3.out/results.jsonl"; return 1; }
}
check "the data_dir key (relative to the file) wins over \$FLOWGMM_DATA_DIR" key_wins
check "installed experiment files name no path of the source tree" \
  sh -c "! grep -rn -e '\\.\\./shared' -e 'flowgmm-uninstalled' '$(pc --variable=datadir)/flowgmm/experiments'"
[ "$fail" -eq 0 ]
