#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""flowgmm bench: each baseline plugin against scikit-learn's equivalent on the same splits.

For every data set and seed the script draws one split (class-balanced labeled points, the
rest of the training part unlabeled, a fixed held-out test part), preprocesses it once, writes
it as raw float32/int32 files, and runs

  - the C baseline through bench/bench-baselines (fit + predict of the test part), and
  - scikit-learn's peer on exactly the same arrays (the same rows, the same order),

printing both accuracies, the difference, the wall time of each side (fit + predict, minimum
over --repeat runs) and the ratio sklearn / C.  Deterministic methods (knn, logreg, label
spreading) must agree within 0.5 percentage points; the stochastic MLP is compared through the
mean and spread over seeds.

Run it with Debian's python (the one that sees python3-sklearn), from the build directory or
with --build pointing there, after `make bench`:

    /usr/bin/python3 ../bench/baselines_vs_sklearn.py --threads 1,2

Exit status: 0 when every deterministic pair agrees, 1 otherwise, 77 (skip) without sklearn.
"""
import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time

try:
    import numpy as np
    import sklearn
    from sklearn import datasets as skdata
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import normalize
    from sklearn.semi_supervised import LabelSpreading
    from threadpoolctl import threadpool_limits
except ImportError as e:  # pragma: no cover
    print("SKIP: scikit-learn (python3-sklearn) is not available: %s" % e)
    sys.exit(77)

import warnings

from sklearn.exceptions import ConvergenceWarning

warnings.filterwarnings("ignore", category=ConvergenceWarning)
warnings.filterwarnings("ignore", message="Got `batch_size`")  # full-batch MLP, on purpose

HERE = os.path.dirname(os.path.abspath(__file__))
TOLERANCE_PP = 0.5


# ---- data --------------------------------------------------------------------------------------

def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(name, shared):
    """(X_train, y_train, X_test, y_test, preprocessing) as float32 / int32."""
    if name == "mnist":
        d = os.path.join(shared, "mnist")
        xtr = read_idx(os.path.join(d, "train-images-idx3-ubyte.gz")).reshape(60000, -1)
        ytr = read_idx(os.path.join(d, "train-labels-idx1-ubyte.gz"))
        xte = read_idx(os.path.join(d, "t10k-images-idx3-ubyte.gz")).reshape(10000, -1)
        yte = read_idx(os.path.join(d, "t10k-labels-idx1-ubyte.gz"))
        return (xtr.astype(np.float32) / 255, ytr.astype(np.int32),
                xte.astype(np.float32) / 255, yte.astype(np.int32), "x/255")
    loader = {"digits": skdata.load_digits, "breast_cancer": skdata.load_breast_cancer,
              "wine": skdata.load_wine}[name]
    X, y = loader(return_X_y=True)
    # a fixed stratified 30 % test part (seed 0), the same for every cell seed
    rng = np.random.RandomState(0)
    test = np.zeros(len(y), bool)
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        test[rng.choice(rows, int(round(0.3 * len(rows))), replace=False)] = True
    xtr, xte = X[~test], X[test]
    mu, sd = xtr.mean(0), xtr.std(0)
    sd[sd == 0] = 1
    return (((xtr - mu) / sd).astype(np.float32), y[~test].astype(np.int32),
            ((xte - mu) / sd).astype(np.float32), y[test].astype(np.int32),
            "z-score (train mean/std)")


DATASETS = {
    # name: (labeled per class, unlabeled cap (None: all the rest))
    "wine": (5, None),
    "breast_cancer": (10, None),
    "digits": (10, None),
    "mnist": (100, 10000),
}


def split(ytr, per_class, n_unlabeled, seed):
    """Class-balanced labeled rows and a random unlabeled subset of the rest, each sorted."""
    rng = np.random.RandomState(seed)
    lab = np.concatenate([rng.choice(np.flatnonzero(ytr == c), per_class, replace=False)
                          for c in np.unique(ytr)])
    rest = np.setdiff1d(np.arange(len(ytr)), lab)
    if n_unlabeled is not None and n_unlabeled < len(rest):
        rest = rng.choice(rest, n_unlabeled, replace=False)
    return np.sort(lab), np.sort(rest)


def write_split(d, xl, yl, xu, xt, yt, K):
    with open(os.path.join(d, "meta.txt"), "w") as f:
        f.write("%d %d %d %d %d\n" % (len(xl), len(xu), len(xt), xl.shape[1], K))
    for name, a, t in (("xl.f32", xl, np.float32), ("yl.i32", yl, np.int32),
                       ("xu.f32", xu, np.float32), ("xt.f32", xt, np.float32),
                       ("yt.i32", yt, np.int32)):
        np.ascontiguousarray(a, dtype=t).tofile(os.path.join(d, name))


# ---- methods -----------------------------------------------------------------------------------
# Each case: (name, deterministic, C method, C params, sklearn builder, how sklearn sees X).
# "unit": rows scaled to unit norm (our metric = cosine); "raw": as written.

def sk_knn(k):
    return lambda T, seed: ("sup", KNeighborsClassifier(n_neighbors=k, n_jobs=T))


def sk_logreg(C):
    return lambda T, seed: ("sup", LogisticRegression(C=C, multi_class="multinomial",
                                                      max_iter=1000, tol=1e-4))


def sk_ls(**kw):
    return lambda T, seed: ("semi", LabelSpreading(max_iter=1000, tol=1e-3, n_jobs=T, **kw))


def sk_mlp(depth, hidden, epochs, lr):
    return lambda T, seed: ("sup", MLPClassifier(
        hidden_layer_sizes=(hidden,) * depth, alpha=0.0, batch_size=10 ** 9, solver="adam",
        learning_rate_init=lr, max_iter=epochs, tol=0.0, n_iter_no_change=10 ** 9,
        random_state=seed, shuffle=True))


GAMMA = 10.0  # W = exp(−γ (1 − cos)) = exp(−(γ/2) ‖x̂ − ŷ‖²): sklearn's gamma = γ/2

CASES = [
    ("knn k=1 l2", True, "knn", ["k=1", "metric=l2"], sk_knn(1), "raw"),
    ("knn k=5 cosine", True, "knn", ["k=5", "metric=cosine"], sk_knn(5), "unit"),
    ("knn k=10 l2", True, "knn", ["k=10", "metric=l2"], sk_knn(10), "raw"),
    ("logreg C=1", True, "logreg", ["c=1", "tol=1e-4", "max_iter=1000"], sk_logreg(1.0), "raw"),
    ("logreg C=0.05", True, "logreg", ["c=0.05", "tol=1e-4", "max_iter=1000"],
     sk_logreg(0.05), "raw"),
    ("label-spreading knn k=16 a=0.1", True, "label-spreading",
     ["kernel=knn", "k=16", "alpha=0.1", "metric=cosine", "max_unlabeled=-1", "max_iter=1000",
      "tol=1e-3"], sk_ls(kernel="knn", n_neighbors=16, alpha=0.1), "unit"),
    ("label-spreading knn k=7 a=0.9", True, "label-spreading",
     ["kernel=knn", "k=7", "alpha=0.9", "metric=cosine", "max_unlabeled=-1", "max_iter=1000",
      "tol=1e-3"], sk_ls(kernel="knn", n_neighbors=7, alpha=0.9), "unit"),
    ("label-spreading rbf g=10 a=0.2", True, "label-spreading",
     ["kernel=rbf", "gamma=%g" % GAMMA, "alpha=0.2", "metric=cosine", "max_unlabeled=-1",
      "max_iter=1000", "tol=1e-3"], sk_ls(kernel="rbf", gamma=GAMMA / 2, alpha=0.2), "unit"),
    ("mlp 3x512 no dropout", False, "mlp",
     ["depth=3", "hidden=512", "dropout=0", "optimizer=adam", "weight_decay=0",
      "schedule=constant", "lr=1e-3", "epochs=200", "batch=0", "init=glorot"],
     sk_mlp(3, 512, 200, 1e-3), "raw"),
]

# The paper's configurations without an sklearn peer, timed and scored for the record (small
# data sets only).
EXTRA = [
    ("mlp 3x512 dropout 0.5 (paper)", "mlp", ["lr=1e-3", "epochs=200"]),
    ("pi-model 3x512 w=30", "pi-model", ["lr=1e-3", "epochs=20", "unlabeled_batch=500"]),
]


def run_c(binary, d, method, params, T, seed, repeat, env):
    out = subprocess.run([binary, "--threads", str(T), "--repeat", str(repeat), "--seed",
                          str(seed), d, method] + params, env=env, capture_output=True,
                         text=True)
    if out.returncode != 0:
        raise RuntimeError("%s %s: %s" % (method, " ".join(params), out.stderr.strip()))
    r = json.loads(out.stdout)
    return r["accuracy"], r["fit_s"] + r["predict_s"]


def run_sk(builder, view, xl, yl, xu, xt, yt, T, seed, repeat):
    if view == "unit":
        xl, xu, xt = normalize(xl), normalize(xu), normalize(xt)
    best, acc = float("inf"), None
    with threadpool_limits(limits=T):
        for r in range(repeat):
            kind, model = builder(T, seed)
            t0 = time.perf_counter()
            if kind == "semi":
                model.fit(np.concatenate([xl, xu]),
                          np.concatenate([yl, -np.ones(len(xu), np.int32)]))
            else:
                model.fit(xl, yl)
            pred = model.predict(xt)
            best = min(best, time.perf_counter() - t0)
            if acc is None:
                acc = float(np.mean(pred == yt))
    return acc, best


def summarize(rows):
    """Per data set, method and thread count: agreement and median times over the seeds."""
    groups = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["method"], r["threads"]), []).append(r)
    print("# summary: median over seeds of fit + predict seconds; accuracy difference C − sklearn")
    print("%-14s %-32s %2s %5s %9s %9s %9s %7s" % (
        "dataset", "method", "T", "seeds", "max|Δ|pp", "C s", "sk s", "sk/C"))
    for (ds, method, T), rs in groups.items():
        c = float(np.median([r["c_s"] for r in rs]))
        sk = float(np.median([r["sk_s"] for r in rs]))
        if rs[0]["deterministic"]:
            delta = "%9.2f" % max(abs(100 * (r["c_acc"] - r["sk_acc"])) for r in rs)
        else:
            ca = np.array([r["c_acc"] for r in rs])
            sa = np.array([r["sk_acc"] for r in rs])
            delta = "%9s" % ("%.1f±%.1f" % (100 * (ca.mean() - sa.mean()),
                                            100 * max(ca.std(), sa.std())))
        print("%-14s %-32s %2d %5d %s %9.5f %9.5f %7.2f" % (ds, method, T, len(rs), delta, c, sk,
                                                            sk / max(c, 1e-9)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.environ.get("FG_BUILD_DIR", "."),
                    help="build directory (holds bench/bench-baselines and plugins)")
    ap.add_argument("--shared", default=os.environ.get(
        "FG_SHARED_DATA", os.path.join(HERE, "..", "..", "shared", "data")),
                    help="shared data directory (mnist/)")
    ap.add_argument("--datasets", default="wine,breast_cancer,digits,mnist")
    ap.add_argument("--threads", default="1", help="comma list, e.g. 1,2")
    ap.add_argument("--seeds", type=int, default=3, help="splits per data set")
    ap.add_argument("--mlp-seeds", type=int, default=5, help="seeds of the stochastic MLP")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs; the minimum is kept")
    ap.add_argument("--cases", default="", help="only cases whose name contains this")
    ap.add_argument("--skip-mlp", action="store_true", help="deterministic methods only")
    ap.add_argument("--json", help="also write every row here (JSON lines)")
    ap.add_argument("--summarize", metavar="JSONL",
                    help="only print the summary of rows saved earlier with --json")
    args = ap.parse_args()
    if args.summarize:
        summarize([json.loads(line) for line in open(args.summarize)])
        return 0

    binary = os.path.join(args.build, "bench", "bench-baselines")
    if not os.access(binary, os.X_OK):
        sys.exit("no %s: run `make bench` in the build directory first" % binary)
    env = dict(os.environ)
    env["FLOWGMM_PLUGIN_PATH"] = os.path.join(os.path.abspath(args.build), "plugins",
                                              "baselines", ".libs")
    env["FLOWGMM_PLUGIN_SYSTEM_PATH"] = ""
    threads = [int(t) for t in args.threads.split(",")]
    print("# scikit-learn %s, numpy %s; C: %s; threads %s; time = fit + predict(test), "
          "min of %d runs" % (sklearn.__version__, np.__version__, binary, args.threads,
                              args.repeat))
    print("%-14s %-32s %2s %4s %8s %8s %7s %9s %9s %7s" % (
        "dataset", "method", "T", "seed", "C acc", "sk acc", "diff pp", "C s", "sk s",
        "sk/C"))
    rows, worst, failures = [], 0.0, []
    jf = open(args.json, "w") if args.json else None
    for name in args.datasets.split(","):
        xtr, ytr, xte, yte, prep = load(name, args.shared)
        K = int(ytr.max()) + 1
        per_class, n_unl = DATASETS[name]
        for T in threads:
            stoch = {}
            for seed in range(max(args.seeds, 0 if args.skip_mlp else args.mlp_seeds)):
                lab, unl = split(ytr, per_class, n_unl, seed)
                xl, yl, xu = xtr[lab], ytr[lab], xtr[unl]
                with tempfile.TemporaryDirectory() as d:
                    write_split(d, xl, yl, xu, xte, yte, K)
                    for case, det, method, params, builder, view in CASES:
                        if args.cases and args.cases not in case:
                            continue
                        if not det and args.skip_mlp:
                            continue
                        if det and seed >= args.seeds:
                            continue
                        if not det and name == "mnist" and seed >= 2:
                            continue  # two MNIST MLP seeds are enough for the record
                        rep = args.repeat if det else 1
                        ca, ct = run_c(binary, d, method, params, T, seed, rep, env)
                        sa, st = run_sk(builder, view, xl, yl, xu, xte, yte, T, seed, rep)
                        diff = round(100 * (ca - sa), 4) or 0.0  # no "-0.00"
                        if det:
                            worst = max(worst, abs(diff))
                            if abs(diff) > TOLERANCE_PP:
                                failures.append("%s %s seed %d: %+.2f pp" % (name, case, seed,
                                                                              diff))
                        else:
                            stoch.setdefault(case, []).append((ca, sa))
                        row = dict(dataset=name, method=case, threads=T, seed=seed,
                                   c_acc=ca, sk_acc=sa, c_s=ct, sk_s=st, deterministic=det)
                        rows.append(row)
                        if jf:
                            jf.write(json.dumps(row) + "\n")
                        print("%-14s %-32s %2d %4d %8.4f %8.4f %+7.2f %9.5f %9.5f %7.2f" % (
                            name, case, T, seed, ca, sa, diff, ct, st, st / max(ct, 1e-9)),
                            flush=True)
                    if not args.skip_mlp and name != "mnist" and seed < args.mlp_seeds:
                        for case, method, params in EXTRA:
                            if args.cases and args.cases not in case:
                                continue
                            ca, ct = run_c(binary, d, method, params, T, seed, 1, env)
                            stoch.setdefault(case, []).append((ca, float("nan")))
                            print("%-14s %-32s %2d %4d %8.4f %8s %7s %9.5f %9s %7s" % (
                                name, case, T, seed, ca, "-", "-", ct, "-", "-"), flush=True)
            for case, pairs in stoch.items():
                c = np.array([p[0] for p in pairs])
                s = np.array([p[1] for p in pairs])
                line = "%-14s %-32s %2d  C %.4f ± %.4f" % (name, case, T, c.mean(), c.std())
                if not np.isnan(s).all():
                    line += "   sklearn %.4f ± %.4f   |Δmean| %.4f  spread %.4f" % (
                        s.mean(), s.std(), abs(c.mean() - s.mean()), max(c.std(), s.std()))
                print("# summary " + line, flush=True)
    if jf:
        jf.close()
    summarize(rows)
    print("# deterministic methods: largest |C − sklearn| = %.2f pp (tolerance %.1f)" % (
        worst, TOLERANCE_PP))
    for f in failures:
        print("# OUTSIDE TOLERANCE: " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
