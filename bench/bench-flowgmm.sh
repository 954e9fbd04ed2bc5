#!/bin/sh
# SPDX-License-Identifier: MIT
# flowgmm — the FlowGMM training step, C trainer against the PyTorch reference, side by side.
#
#   cd BUILDDIR && make bench && sh SRCDIR/bench/bench-flowgmm.sh [options]
#
# Options (all optional):
#   --configs "d21 d768"   configurations (bench-flowgmm --config)
#   --threads "1 2"        thread counts tried for each side
#   --rounds N             rounds of C then PyTorch back to back (default 3; medians reported)
#   --seconds S            time budget of each timed run (default 4)
#   --no-verify            skip the loss comparison (bench-flowgmm --verify, then torch)
#   --python PATH          the Python that sees torch (default /usr/bin/python3: Debian's
#                          python3-torch; the python3 first on PATH may not see it)
#
# For each round, configuration and thread count, the C trainer and then the PyTorch script
# run one after the other, so a slow spell of a shared machine hits both; the table reports
# the median samples/s of each over the rounds, their ratio, and the fraction of the machine's
# sgemm rate on the step's own products that each reaches.  That rate (bench-flowgmm --sgemm:
# each layer on its own operands; at 1 thread, and at 2 the better of OpenBLAS's own threads
# and rows split over the core's pool) is measured twice a round, right before the first C run
# and right after the last one, and each round's runs are divided by the higher of the two: a
# run is compared with the machine as it was at that time, and a slow spell that happens to
# hit the reference cannot flatter C.  The "% of sgemm" columns are medians of those per-round
# shares; the notes list them, and C's share of the 1-thread rate with every operand hot in
# cache, an upper bound.  The C runs also time the reference interleaved with the training
# steps (bench-flowgmm --interleave: after every four steps, four passes over one step's
# products, OpenBLAS's threads and rows split over the pool in turn, the better median kept),
# so that both are measured in the same seconds; "C % of sgemm, interleaved" is the median over rounds of that
# share, a cross-check (the interleaved reference has spells of its own).  The "best" rows
# compare each side at its best thread count.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
configs="d21 d768"
threads="1 2"
rounds=3
seconds=4
verify=1
python=/usr/bin/python3
while [ $# -gt 0 ]; do
  case $1 in
    --configs) configs=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --no-verify) verify=0; shift ;;
    --python) python=$2; shift 2 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "bench-flowgmm.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

bench=./bench/bench-flowgmm
if [ ! -x "$bench" ]; then
  echo "bench-flowgmm.sh: run it from the build directory after 'make bench' ($bench missing)" >&2
  exit 2
fi
top=$(pwd)
FLOWGMM_PLUGIN_PATH="$top/plugins/.libs:$top/plugins/flows/.libs:$top/plugins/losses/.libs"
export FLOWGMM_PLUGIN_PATH
torch="$here/bench_flowgmm_torch.py"
log=$(mktemp "${TMPDIR:-/tmp}/bench-flowgmm.XXXXXX")
trap 'rm -f "$log"' EXIT

cfg_args=
for c in $configs; do cfg_args="$cfg_args --config $c"; done

echo "# $(date -u '+%Y-%m-%d %H:%M UTC') $(uname -m), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'); $("$python" -c 'import torch; print("torch", torch.__version__)')"

if [ "$verify" = 1 ]; then
  vdir=$(mktemp -d "${TMPDIR:-/tmp}/bench-flowgmm-verify.XXXXXX")
  # shellcheck disable=SC2086
  "$bench" $cfg_args --verify "$vdir" --steps 10 --warmup 1 --quiet > /dev/null
  # shellcheck disable=SC2086
  OPENBLAS_NUM_THREADS=1 "$python" "$torch" $cfg_args --verify "$vdir" --quiet | grep '^VERIFY'
  rm -rf "$vdir"
fi

# The sgemm rate of the step's own products at 1 and 2 threads, as a SGEMM line of round $2.
sgemm_rate () {
  "$bench" --config "$1" --threads 1 --steps 5 --warmup 1 --sgemm --quiet \
    | sed "s/^RESULT impl=c/SGEMM round=$2/" >> "$log"
}

last_t=
for t in $threads; do last_t=$t; done
r=1
while [ "$r" -le "$rounds" ]; do
  for c in $configs; do
    sgemm_rate "$c" "$r"
    for t in $threads; do
      "$bench" --config "$c" --threads "$t" --seconds "$seconds" --interleave --quiet \
        | sed "s/^RESULT/RESULT round=$r/" >> "$log"
      [ "$t" = "$last_t" ] && sgemm_rate "$c" "$r"
      OPENBLAS_NUM_THREADS=$t OMP_NUM_THREADS=$t \
        "$python" "$torch" --config "$c" --threads "$t" --seconds "$seconds" --quiet \
        | sed "s/^RESULT/RESULT round=$r/" >> "$log"
    done
  done
  r=$((r + 1))
done

"$python" - "$log" <<'EOF'
import statistics, sys
rows, sgemm = {}, {}
for line in open(sys.argv[1]):
    f = line.split()
    if not f or f[0] not in ("RESULT", "SGEMM"):
        continue
    kv = dict(x.split("=", 1) for x in f[1:])
    if f[0] == "SGEMM":
        # the round's reference: the higher of its two measurements (before and after C)
        key = (kv["config"], int(kv["round"]))
        best = sgemm.setdefault(key, dict(kv))
        for k in ("sgemm1", "sgemm1hot", "sgemm2", "sgemm2split"):
            best[k] = str(max(float(best[k]), float(kv[k])))
        continue
    key = (kv["config"], kv["impl"], int(kv["threads"]))
    rows.setdefault(key, []).append(kv)

def ref(config, rnd, threads):
    """The round's sgemm rate in GFLOP/s at `threads` (2: OpenBLAS's threads or rows split)."""
    s = sgemm[(config, rnd)]
    if threads == 1:
        return float(s["sgemm1"])
    return max(float(s["sgemm2"]), float(s["sgemm2split"])) if threads == 2 else float("nan")

def med(key, field):
    v = [float(r[field]) for r in rows.get(key, [])]
    return statistics.median(v) if v else float("nan")

def shares(key):
    """Per-round % of that round's sgemm rate."""
    c, _, t = key
    return [100 * float(r["samples_per_s"])
            * float(sgemm[(c, int(r["round"]))]["flops_per_sample"]) / 1e9
            / ref(c, int(r["round"]), t) for r in rows.get(key, [])]

def med_share(key):
    v = shares(key)
    return statistics.median(v) if v else float("nan")

def med_ref(c, t):
    v = [ref(c, r, t) for (cc, r) in sgemm if cc == c]
    return statistics.median(v) if v else float("nan")

print()
def ishares(key):
    """Per-round % of the reference interleaved with the C run's own steps."""
    return [100 * float(r["gflops"]) / float(r["isgemm"]) for r in rows.get(key, [])
            if "isgemm" in r and float(r["isgemm"]) > 0]

def med_ishare(key):
    v = ishares(key)
    return statistics.median(v) if v else float("nan")

print("| config | threads | C samples/s | PyTorch samples/s | C / PyTorch | C % of sgemm | C % of sgemm, interleaved | PyTorch % of sgemm | sgemm GFLOP/s |")
print("|---|---|---|---|---|---|---|---|---|")
configs = sorted({k[0] for k in rows}, key=lambda c: ["d21", "d768"].index(c) if c in ("d21", "d768") else 9)
for c in configs:
    threads = sorted({k[2] for k in rows if k[0] == c})
    best = {}
    for t in threads:
        cs, ts = med((c, "c", t), "samples_per_s"), med((c, "torch", t), "samples_per_s")
        for impl, v in (("c", cs), ("torch", ts)):
            if v == v and (impl not in best or v > best[impl][0]):
                best[impl] = (v, t)
        print(f"| {c} | {t} | {cs:,.0f} | {ts:,.0f} | {cs / ts:.2f} | {med_share((c, 'c', t)):.0f} % | "
              f"{med_ishare((c, 'c', t)):.0f} % | {med_share((c, 'torch', t)):.0f} % | {med_ref(c, t):.1f} |")
    if "c" in best and "torch" in best:
        (cv, ct), (tv, tt) = best["c"], best["torch"]
        print(f"| {c} | best: C {ct}, PyTorch {tt} | {cv:,.0f} | {tv:,.0f} | **{cv / tv:.2f}** | "
              f"{med_share((c, 'c', ct)):.0f} % | {med_ishare((c, 'c', ct)):.0f} % | "
              f"{med_share((c, 'torch', tt)):.0f} % | |")
print()
for c in configs:
    rs = sorted(r for (cc, r) in sgemm if cc == c)
    s0 = sgemm[(c, rs[0])]
    hot = max(float(sgemm[(c, r)]["sgemm1hot"]) for r in rs)
    c1 = med((c, "c", 1), "samples_per_s")
    print(f"# {c}: {float(s0['flops_per_sample']) / 1e6:.2f} MFLOP/sample counted (effective; the "
          f"dense layers PyTorch runs: {float(s0['dense_flops_per_sample']) / 1e6:.2f}); sgemm on "
          f"the step's products, round by round: at 1 thread "
          + " ".join(f"{ref(c, r, 1):.1f}" for r in rs)
          + " GFLOP/s, at 2 " + " ".join(f"{ref(c, r, 2):.1f}" for r in rs)
          + f"; best 1-thread rate with every operand hot in cache {hot:.1f} "
          f"(C at 1 thread is {100 * c1 * float(s0['flops_per_sample']) / 1e9 / hot:.0f} % of that)")
for key in sorted(rows):
    v = rows[key]
    print(f"# {key[0]} {key[1]:5s} {key[2]} threads: samples/s "
          + " ".join(f"{float(r['samples_per_s']):.0f}" for r in v)
          + "; % of the round's sgemm " + " ".join(f"{x:.0f}" for x in shares(key))
          + ("; % of the interleaved sgemm " + " ".join(f"{x:.0f}" for x in ishares(key))
             if key[1] == "c" else "")
          + "; CPU ms/step " + " ".join(f"{float(r['cpu_ms']):.2f}" for r in v)
          + f"; loss first/last {v[-1]['loss_first']}/{v[-1]['loss_last']}")
EOF
