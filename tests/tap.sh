# SPDX-License-Identifier: MIT
# flowgmm tests — what the shell TAP producers share.  Sourced by them after they have checked
# $FG_TOP_SRCDIR:   . "$FG_TOP_SRCDIR/tests/tap.sh"
#
#   tap_require VAR...   bail out (an error for the TAP driver) unless each VAR is set: the
#                        scripts run through `make check`, never silently outside it
#   check DESC CMD...    runs CMD and prints "ok N - DESC" or "not ok N - DESC"; after a
#                        failure it calls tap_diag, which a script may define to print what
#                        the failing command said (as "# " lines)
#   tap_summary          "# F of N failed"; its status is 0 when nothing failed

n=0
failed=0

tap_require () {
  for var in "$@"; do
    eval "value=\${$var:-}"
    if [ -z "$value" ]; then
      echo "Bail out! $var is not set: run this through 'make check'"
      exit 1
    fi
  done
}

tap_diag () { :; }

check () {
  n=$((n + 1))
  desc=$1
  shift
  if "$@"; then
    echo "ok $n - $desc"
  else
    echo "not ok $n - $desc"
    failed=$((failed + 1))
    tap_diag
  fi
}

tap_summary () {
  echo "# $failed of $n failed"
  test "$failed" -eq 0
}
