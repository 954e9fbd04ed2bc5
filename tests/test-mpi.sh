#!/bin/sh
# SPDX-License-Identifier: MIT
# flowgmm tests — experiments over MPI ranks (a build configured --with-mpi), as a TAP producer.
#
#   - a 2-rank run of tests/data/mpi.exp stores the same records and table as a 1-process run;
#   - a run whose worker rank is killed mid-run, then rerun (with another number of ranks):
#     nothing finished is lost or stored twice, and the records equal the 1-process run's;
#   - data-parallel training (ranks_per_cell = 2): the ranks of a group end with bit-identical
#     parameters, the result matches one process training the same batches (relative 1e-5 on
#     the test NLL: the sums differ only in order), and 4 ranks in 2 groups give exactly the
#     records of 2 ranks in 1 group;
#   - realnvp-conv's ActNorm under ranks_per_cell = 2: its data-dependent init sees the whole
#     first batch on every rank, so the ranks start alike and as one process does (an init
#     from each rank's slice fails both checks);
#   - the group sums (tests/test-group) equal a naive sum in rank order on 3 ranks.
#
# Records are compared without "seconds" and "finished", the only fields that differ between
# two runs of the same cells.  mpirun gets only standard options (-np); Open MPI's
# oversubscription and root permission come from the environment, which MPICH ignores.

set -u

if [ -z "${FG_TOP_SRCDIR:-}" ]; then
  echo "Bail out! FG_TOP_SRCDIR is not set: run this through 'make check'"
  exit 1
fi
. "$FG_TOP_SRCDIR/tests/tap.sh"
tap_require FG_TOP_BUILDDIR FG_MPIEXEC
FLOWGMM="$FG_TOP_BUILDDIR/cli/flowgmm"
DATA="$FG_TOP_SRCDIR/tests/data"
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Quiet Open MPI's transports on a machine without a fast network.
export OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_base_warn_component_unused=0
export OPENBLAS_NUM_THREADS=1

tmp=$(mktemp -d "${TMPDIR:-/tmp}/fgmpi.XXXXXX") || { echo "Bail out! mktemp failed"; exit 1; }
trap 'rm -rf "$tmp"' EXIT

echo "1..11"
tap_diag () { [ -f "$tmp/log" ] && sed -e 's/^/# /' "$tmp/log" | tail -n 20; }

# mpirun NP ARGS...: flowgmm over NP ranks, output in $tmp/log.
mpi () {
  np=$1
  shift
  timeout 120 "$FG_MPIEXEC" -np "$np" "$FLOWGMM" "$@" >"$tmp/log" 2>&1
}
# The records of a results file without the fields that change from run to run, sorted.
norm () { sed -e 's/"seconds":[^,]*,//' -e 's/"finished":"[^"]*"//' "$1/results.jsonl" | sort; }
same_records () { norm "$1" >"$tmp/a.n" && norm "$2" >"$tmp/b.n" && cmp -s "$tmp/a.n" "$tmp/b.n"; }
no_duplicates () {
  test -z "$(sed -e 's/^{"key":"\([^"]*\)".*/\1/' "$1/results.jsonl" | sort | uniq -d)"
}
# key test_nll of the flowgmm cells
nlls () { grep '"method":"flowgmm"' "$1/results.jsonl" \
            | sed -e 's/^{"key":"\([^"]*\)".*"test_nll":\([^,}]*\).*/\1 \2/' | sort; }

# --- cells across ranks
"$FLOWGMM" run -q --out "$tmp/one" "$DATA/mpi.exp" >"$tmp/log" 2>&1
check "2 ranks: the records of a 1-process run" \
  eval 'mpi 2 run -q --out "$tmp/two" "$DATA/mpi.exp" && same_records "$tmp/one" "$tmp/two"'
check "2 ranks: the same table" cmp -s "$tmp/one/table.csv" "$tmp/two/table.csv"
check "3 ranks, rerun: nothing to do, nothing stored twice" \
  eval 'mpi 3 run --out "$tmp/two" "$DATA/mpi.exp" && grep -q "0 run now" "$tmp/log" && same_records "$tmp/one" "$tmp/two"'

# --- a rank killed mid-run: longer cells (a grid of 8 FlowGMM fits of 1500 iterations)
sed -e 's/^iterations .*/iterations      = 1500/' -e 's/^lr .*/lr = 1e-3;2e-3;3e-3;5e-4/' \
    -e 's/^seeds .*/seeds   = 0;1/' "$DATA/mpi.exp" >"$tmp/slow.exp"
"$FLOWGMM" run -q --out "$tmp/slow-one" "$tmp/slow.exp" >"$tmp/log" 2>&1
total=$(wc -l <"$tmp/slow-one/results.jsonl")
cat >"$tmp/rank.sh" <<EOS
#!/bin/sh
echo \$\$ >"$tmp/pid.\${OMPI_COMM_WORLD_RANK:-\${PMI_RANK:-\${PMIX_RANK:-x}}}"
exec "$FLOWGMM" "\$@"
EOS
chmod +x "$tmp/rank.sh"
timeout 120 "$FG_MPIEXEC" -np 2 "$tmp/rank.sh" run -q --out "$tmp/slow" "$tmp/slow.exp" \
  >"$tmp/log" 2>&1 &
job=$!
killed=no
for i in $(seq 1 600); do
  if [ -s "$tmp/slow/results.jsonl" ] && [ "$(wc -l <"$tmp/slow/results.jsonl")" -ge 1 ] \
     && [ -s "$tmp/pid.1" ]; then
    kill -9 "$(cat "$tmp/pid.1")" && killed=yes
    break
  fi
  sleep 0.05
done
wait $job
stored=$(wc -l <"$tmp/slow/results.jsonl" 2>/dev/null || echo 0)
echo "# killed rank 1 with $stored of $total cells stored"
check "killing a rank stops the run early, finished cells stored once" \
  eval 'test $killed = yes && test "$stored" -lt "$total" && no_duplicates "$tmp/slow"'
check "rerun after the kill (1 rank): every cell once, the records of a 1-process run" \
  eval 'mpi 1 run -q --out "$tmp/slow" "$tmp/slow.exp" && no_duplicates "$tmp/slow" && same_records "$tmp/slow-one" "$tmp/slow"'

# --- data-parallel training
sed -e 's/^metrics = accuracy;nll$/&\nranks_per_cell = 2/' "$DATA/mpi.exp" >"$tmp/dp.exp"
checksums_pair () {
  grep -o 'parameters checksum [0-9a-f]*' "$tmp/log" | sort | uniq -c >"$tmp/sums"
  test "$(wc -l <"$tmp/sums")" -eq 3 && test -z "$(awk '$1 != 2' "$tmp/sums")"
}
check "ranks_per_cell = 2 on 2 ranks: both ranks end with the same parameters" \
  eval 'G_MESSAGES_DEBUG=flowgmm mpi 2 run -q --out "$tmp/dp2" "$tmp/dp.exp" && checksums_pair'
nlls "$tmp/one" >"$tmp/nll1"
nlls "$tmp/dp2" >"$tmp/nll2"
check "data-parallel training matches one process (test NLL, relative 1e-5)" \
  eval 'test -s "$tmp/nll1" && join "$tmp/nll1" "$tmp/nll2" | awk "{ d = \$2 - \$3; if (d < 0) d = -d; if (d > 1e-5 * (\$2 < 0 ? -\$2 : \$2)) bad = 1 } END { exit bad }"'
check "4 ranks in 2 groups of 2: exactly the records of 1 group of 2" \
  eval 'mpi 4 run -q --out "$tmp/dp4" "$tmp/dp.exp" && same_records "$tmp/dp2" "$tmp/dp4"'

# --- data-parallel ActNorm: its data-dependent init sees the whole batch on every rank.  One
# step at lr 1e-9: the model is the init (a 4-step run differs from one process by ~2 % in
# this NLL through Adam's first, sign-like steps on near-zero gradients).
# A tiny image set (1×4×4, two classes: a bright top or bottom half, deterministic texture).
images () {
  awk -v n="$1" -v seed="$2" 'BEGIN {
    for (i = 0; i < n; i++) {
      y = i % 2; line = ""
      for (p = 0; p < 16; p++) {
        bright = (y == 0) == (p < 8)
        v = (bright ? 0.6 : 0.1) + 0.3 * ((i * 37 + p * 11 + seed * 5) % 17) / 17
        line = line sprintf("%.4f,", v)
      }
      print line y
    } }'
}
images 96 1 >"$tmp/img-train.csv"
images 40 2 >"$tmp/img-test.csv"
cat >"$tmp/actnorm.exp" <<EOS
[experiment]
title   = actnorm
seeds   = 0
metrics = accuracy;nll
ranks_per_cell = 2

[dataset:img]
plugin      = csv
path        = $tmp/img-train.csv
test_path   = $tmp/img-test.csv
header      = none
label       = -1
image_shape = 1,4,4
labeled     = 16

[method:flowgmm]
plugin            = flowgmm
flow              = realnvp-conv
flow.scales       = 1
flow.mid_channels = 4
flow.blocks       = 1
flow.variant      = actnorm
loss              = flowgmm-nll
means             = random
sigma             = 1
optimizer         = adam
lr                = 1e-9
schedule          = constant
iterations        = 1
labeled_batch     = 8
unlabeled_batch   = 32
EOS
sed -e '/^ranks_per_cell/d' "$tmp/actnorm.exp" >"$tmp/actnorm1.exp"
"$FLOWGMM" run -q --out "$tmp/an1" "$tmp/actnorm1.exp" >"$tmp/log" 2>&1
checksums_once () {
  grep -o 'parameters checksum [0-9a-f]*' "$tmp/log" | sort | uniq -c >"$tmp/sums"
  test "$(wc -l <"$tmp/sums")" -eq 1 && test -z "$(awk '$1 != 2' "$tmp/sums")"
}
check "realnvp-conv ActNorm, ranks_per_cell = 2: both ranks end with the same parameters" \
  eval 'G_MESSAGES_DEBUG=flowgmm mpi 2 run -q --out "$tmp/an2" "$tmp/actnorm.exp" && checksums_once'
nlls "$tmp/an1" >"$tmp/nll1"
nlls "$tmp/an2" >"$tmp/nll2"
check "realnvp-conv ActNorm data-parallel init matches one process (test NLL, relative 1e-4)" \
  eval 'test -s "$tmp/nll1" && join "$tmp/nll1" "$tmp/nll2" | awk "{ d = \$2 - \$3; if (d < 0) d = -d; if (d > 1e-4 * (\$2 < 0 ? -\$2 : \$2)) bad = 1 } END { exit bad }"'

# --- the group sums against a naive reference
check "group sums on 3 ranks equal a naive sum in rank order" \
  eval 'timeout 60 "$FG_MPIEXEC" -np 3 "$FG_TOP_BUILDDIR/tests/test-group" >"$tmp/log" 2>&1'

tap_summary
