#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Reference side of bench/bench-load: the same files loaded the usual Python way.

    /usr/bin/python3 bench/bench_load_pandas.py csv FILE [--label NAME] [--repeat N] [--memory]
    /usr/bin/python3 bench/bench_load_pandas.py idx IMAGES LABELS [--repeat N] [--memory]

csv: pandas.read_csv(FILE) (Debian python3-pandas, C parser, float64), and what a user needs
     next, the float32 feature matrix and the labels: df.drop(columns=label).to_numpy(float32).
idx: gzip + numpy.frombuffer, scaled to float32 k/255 (what torchvision's MNIST gives).

Prints one line like bench-load: rows, columns, seconds (median and min over --repeat loads),
the float32 matrix size, the peak resident set (ru_maxrss) and the resident set before the
first load.  --memory: one load only, for a clean peak in a fresh process.
"""
import argparse
import gzip
import resource
import statistics
import sys
import time

import numpy as np
import pandas as pd


def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return float(line.split()[1]) / 1024.0
    return 0.0


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def load_csv(path, label):
    t0 = time.perf_counter()
    df = pd.read_csv(path)
    t1 = time.perf_counter()
    y = df[label].to_numpy(np.int32)
    x = df.drop(columns=[label]).to_numpy(np.float32)
    t2 = time.perf_counter()
    return x, y, t1 - t0, t2 - t0


def load_idx(images, labels):
    t0 = time.perf_counter()
    with gzip.open(images, "rb") as f:
        raw = f.read()
    n, h, w = np.frombuffer(raw, ">u4", 3, 4)
    x = np.frombuffer(raw, np.uint8, int(n) * int(h) * int(w), 16)
    x = (x.astype(np.float32) / np.float32(255.0)).reshape(int(n), 1, int(h), int(w))
    with gzip.open(labels, "rb") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int32)
    t = time.perf_counter() - t0
    return x.reshape(len(x), -1), y, t, t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["csv", "idx"])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--label", default="label")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--memory", action="store_true")
    a = ap.parse_args()
    repeat = 1 if a.memory else a.repeat
    before = rss_mib()
    first, full, peak = [], [], 0.0
    for r in range(repeat):
        if a.kind == "csv":
            x, y, t_read, t_all = load_csv(a.files[0], a.label)
        else:
            x, y, t_read, t_all = load_idx(a.files[0], a.files[1])
        first.append(t_read)
        full.append(t_all)
        if r == 0:
            peak = peak_mib()
        rows, cols = x.shape
        del x, y
    matrix = rows * cols * 4 / 2**20
    what = "pandas.read_csv" if a.kind == "csv" else "gzip+numpy"
    extra = ""
    if a.kind == "csv":
        extra = "; + to float32 numpy %.3f s (median)" % statistics.median(full)
    print("%s %s: %d x %d in %.3f s (median of %d, min %.3f)%s; matrix %.1f MiB; peak RSS %.1f MiB "
          "(%.2fx the matrix), %.1f MiB before the load (peak - before = %.2fx the matrix)"
          % (what, a.files[0], rows, cols, statistics.median(first), repeat, min(first), extra,
             matrix, peak, peak / matrix, before, (peak - before) / matrix))


if __name__ == "__main__":
    sys.exit(main())
