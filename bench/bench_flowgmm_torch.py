#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""PyTorch reference of the FlowGMM training step timed by bench/bench-flowgmm.c.

The model is the authors' RealNVPTabular (flow_ssl/realnvp; doc/flowgmm-method.md):

  coupling l, mask b (halves split at floor(D/2), alternating; 1 = identity):
    st     = Linear(D->k) -> ReLU -> Dropout(0.5) -> Linear(k->k) -> ReLU -> Linear(k->2D) of x*b
    s, t   = st[:, :D], st[:, D:]
    s      = w * tanh(s) * (1-b),  t = t * (1-b)        (w: per-feature rescale, starts at 1)
    y      = x*b + (x*(1-b) + t) * exp(s),  logdet += sum(s)

  latent: K isotropic Gaussians N(mu_k, sigma^2 I), fixed means (the authors' tabular rule),
  sigma = softplus(1); loss = mean_lab[-(log N(z; mu_y) + logdet)]
                              + a * mean_unlab[-(logsumexp_k log N(z; mu_k) - log K + logdet)]
  AdamW(lr 3e-4, weight decay 1e-5), clip_grad_norm_(100), cosine LambdaLR stepped per step.

Same batch as the C side (one forward over all rows: the labeled ones first), same dropout,
same number of couplings, one inner layer as the authors.  Differences from the authors' code
that only remove cost from PyTorch's side, never add to it: the Gaussian log-density is
computed in closed form (the authors build a MultivariateNormal with a D x D covariance per
component and call, a Cholesky and a D x D triangular solve per step); the rescale is a plain
parameter (the authors wrap it in weight_norm, which makes w = g*sign(v), the same function);
no NaN check on exp(s) in the forward.  --authors restores the last two.

  /usr/bin/python3 bench/bench_flowgmm_torch.py --config d21 --threads 1
  /usr/bin/python3 bench/bench_flowgmm_torch.py --verify DIR   (after bench-flowgmm --verify DIR)

Set OPENBLAS_NUM_THREADS to the same count before starting Python (torch's Linear calls the
system OpenBLAS, whose pool does not follow torch.set_num_threads); bench-flowgmm.sh does.
"""
import argparse
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIGS = {
    "d21": dict(D=21, K=2, L=7, k=256),
    "d768": dict(D=768, K=4, L=7, k=512),
}
SIGMA = math.log1p(math.e)  # softplus(1) = 1.3132616875182228


class Coupling(nn.Module):
    def __init__(self, D, k, l, dropout, authors):
        super().__init__()
        split = D // 2
        b = torch.zeros(D)
        if l % 2 == 0:
            b[:split] = 1
        else:
            b[split:] = 1
        self.register_buffer("b", b)
        self.register_buffer("nb", 1 - b)
        self.authors = authors
        self.st_net = nn.Sequential(
            nn.Linear(D, k), nn.ReLU(),
            nn.Dropout(dropout) if dropout > 0 else nn.Sequential(),
            nn.Linear(k, k), nn.ReLU(),
            nn.Linear(k, 2 * D))
        if authors:
            # the authors' RescaleTabular under weight_norm: w = g * v / |v| (per element)
            self.rescale_v = nn.Parameter(torch.ones(D))
            self.rescale_g = nn.Parameter(torch.ones(D))
        else:
            self.rescale = nn.Parameter(torch.ones(D))

    def weight(self):
        if self.authors:
            return self.rescale_g * self.rescale_v / self.rescale_v.abs()
        return self.rescale

    def forward(self, x, ld):
        x_id = x * self.b
        x_change = x * self.nb
        st = self.st_net(x_id)
        s, t = st.chunk(2, dim=1)
        s = self.weight() * torch.tanh(s)
        s = s * self.nb
        t = t * self.nb
        exp_s = s.exp()
        if self.authors and torch.isnan(exp_s).any():
            raise RuntimeError("Scale factor has NaN entries")
        x = x_id + (x_change + t) * exp_s
        return x, ld + s.sum(-1)


class FlowGMM(nn.Module):
    def __init__(self, D, K, L, k, dropout, authors, means):
        super().__init__()
        self.layers = nn.ModuleList(Coupling(D, k, l, dropout, authors) for l in range(L))
        self.register_buffer("means", means)
        self.K, self.D = K, D
        self.c0 = -0.5 * D * math.log(2 * math.pi) - D * math.log(SIGMA)
        self.h = 0.5 / (SIGMA * SIGMA)

    def forward(self, x):
        ld = torch.zeros(x.shape[0])
        for layer in self.layers:
            x, ld = layer(x, ld)
        return x, ld

    def loss(self, x, y, n_lab, unlab_weight):
        z, ld = self(x)
        # log N(z; mu_k, sigma^2 I) for every k: [N, K]
        d2 = (z * z).sum(1, keepdim=True) - 2 * z @ self.means.t() + (self.means ** 2).sum(1)
        comp = self.c0 - self.h * d2
        lab = comp[:n_lab].gather(1, y[:, None])[:, 0] + ld[:n_lab]
        unlab = torch.logsumexp(comp[n_lab:], dim=1) - math.log(self.K) + ld[n_lab:]
        loss = 0.0
        if n_lab > 0:
            loss = loss - lab.mean()
        if x.shape[0] > n_lab:
            loss = loss - unlab_weight * unlab.mean()
        return loss


def tabular_means(D, K, gen):
    """The authors' rule (REFERENCE §1.2): K = 2: mu0 = 3.75 m/|m|, mu1 = -mu0; else 0.56 eps."""
    if K == 2:
        m = 0.8 * torch.randn(D, generator=gen)
        mu0 = m * 7.5 / (2 * m.norm())
        return torch.stack([mu0, -mu0])
    return 0.56 * torch.randn(K, D, generator=gen)


def make_trainer(model, total_steps, foreach):
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=1e-5, foreach=foreach)
    # oil's cosLr, stepped every iteration (REFERENCE §1.3)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: max(0.5 * (1 + math.cos(math.pi * t / total_steps)), 1e-3))
    return opt, sched


def train_step(model, opt, sched, x, y, n_lab):
    loss = model.loss(x, y, n_lab, 1.0)
    opt.zero_grad(set_to_none=False)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 100.0)
    opt.step()
    sched.step()
    return loss


def bench(args, name):
    cfg = CONFIGS[name]
    D, K, L, k = cfg["D"], cfg["K"], cfg["L"], cfg["k"]
    gen = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    model = FlowGMM(D, K, L, k, args.dropout, args.authors, tabular_means(D, K, gen))
    n, n_lab = args.batch, args.labeled
    x = torch.randn(n, D, generator=gen)
    y = torch.arange(n_lab) % K
    steps = args.steps
    if steps == 0:
        opt, sched = make_trainer(model, 1000, args.foreach)
        for _ in range(3):
            train_step(model, opt, sched, x, y, n_lab)
        t0 = time.perf_counter()
        for _ in range(3):
            train_step(model, opt, sched, x, y, n_lab)
        per = (time.perf_counter() - t0) / 3
        steps = int(min(max(args.seconds / per, 10), 100000))
        model = FlowGMM(D, K, L, k, args.dropout, args.authors, tabular_means(D, K, gen))
    opt, sched = make_trainer(model, steps + args.warmup, args.foreach)
    times, cpus, losses = [], [], []
    t_all = time.perf_counter()
    for i in range(steps + args.warmup):
        t0, c0 = time.perf_counter(), time.process_time()
        loss = train_step(model, opt, sched, x, y, n_lab)
        losses.append(float(loss))
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    wall = time.perf_counter() - t_all
    dt = sorted(times[args.warmup:])
    med = dt[len(dt) // 2] if len(dt) % 2 else 0.5 * (dt[len(dt) // 2 - 1] + dt[len(dt) // 2])
    mean = sum(dt) / len(dt)
    dc = sorted(cpus[args.warmup:])
    cpu = dc[len(dc) // 2]
    sps = n / med
    if not args.quiet:
        print(f"# torch {torch.__version__} {name}: D={D} K={K} couplings={L} hidden={k} inner=1 "
              f"dropout={args.dropout} batch={n} ({n_lab} labeled) authors={args.authors} "
              f"foreach={args.foreach}")
        print(f"# threads {args.threads} (OPENBLAS_NUM_THREADS="
              f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}): {len(dt)} timed steps after "
              f"{args.warmup} warm-up ({wall:.1f} s in all): median {med * 1e3:.3f} ms, "
              f"mean {mean * 1e3:.3f} ms per step; process CPU {cpu * 1e3:.3f} ms per step")
        print(f"# loss: step 1 {losses[0]:.6g}, step {len(losses)} {losses[-1]:.6g}")
    print(f"RESULT impl=torch config={name} threads={args.threads} batch={n} "
          f"samples_per_s={sps:.1f} step_ms={med * 1e3:.4f} loss_first={losses[0]:.6g} "
          f"loss_last={losses[-1]:.6g} cpu_ms={cpu * 1e3:.4f}", flush=True)


# ------------------------------------------------------------------ --verify

def read_fgw(path):
    """A flowgmm weight checkpoint (doc/checkpoint.md): {name: float32 array}."""
    blob = open(path, "rb").read()
    assert blob[:8] == b"FGWEIGHT", path
    version, count = struct.unpack_from("<II", blob, 8)
    assert version == 1
    off, out = 16, {}
    for _ in range(count):
        (nlen,) = struct.unpack_from("<I", blob, off)
        off += 4
        name = blob[off:off + nlen].decode()
        off += nlen
        (ndim,) = struct.unpack_from("<I", blob, off)
        off += 4
        shape = struct.unpack_from("<" + "Q" * ndim, blob, off)
        off += 8 * ndim
        numel = int(np.prod(shape))
        out[name] = np.frombuffer(blob, "<f4", numel, off).reshape(shape).copy()
        off += 4 * numel
    return out


def verify(args, name):
    """Load the C side's data and initial weights, train --verify-steps steps without dropout
    and compare the per-step losses with those the C trainer reported."""
    base = os.path.join(args.verify, name)
    raw = open(base + ".data", "rb").read()
    D, K, n_lab, n_unlab = struct.unpack_from("<4I", raw, 0)
    n = n_lab + n_unlab
    x = torch.from_numpy(np.frombuffer(raw, "<f4", n * D, 16).reshape(n, D).copy())
    y = torch.from_numpy(np.frombuffer(raw, "<i4", n_lab, 16 + 4 * n * D).astype(np.int64))
    c_losses = [float(v) for v in open(base + ".losses").read().split()]
    w = read_fgw(base + ".init.fgw")
    cfg = CONFIGS[name]
    assert (D, K) == (cfg["D"], cfg["K"])
    torch.set_default_dtype(torch.float32)
    model = FlowGMM(D, K, cfg["L"], cfg["k"], 0.0, False, torch.from_numpy(w["gmm.means"]))
    # The C flow stores only live weights (realnvp-mlp.c): the first layer's rows at identity
    # coordinates, the last layer's s and t columns and the rescale at transformed ones.  The
    # dense PyTorch layers get them at those places and zeros (rescale: ones) at the dead ones,
    # which the masks make irrelevant.
    def dense(shape, fill, rows=None, cols=None, value=None):
        out = torch.full(shape, fill)
        r = torch.arange(shape[0]) if rows is None else rows
        c = torch.arange(shape[1]) if cols is None else cols
        out[r[:, None], c[None, :]] = torch.from_numpy(value).reshape(len(r), len(c))
        return out

    with torch.no_grad():
        for l, layer in enumerate(model.layers):
            p = f"coupling{l}"
            ident = torch.nonzero(layer.b).reshape(-1)
            ch = torch.nonzero(layer.nb).reshape(-1)
            st_cols = torch.cat([ch, D + ch])
            k = cfg["k"]
            lin = [m for m in layer.st_net if isinstance(m, nn.Linear)]
            lin[0].weight.copy_(dense((D, k), 0.0, rows=ident, value=w[p + ".in.weight"]).t())
            lin[0].bias.copy_(torch.from_numpy(w[p + ".in.bias"]).reshape(-1))
            lin[1].weight.copy_(torch.from_numpy(w[p + ".hidden0.weight"]).t())
            lin[1].bias.copy_(torch.from_numpy(w[p + ".hidden0.bias"]).reshape(-1))
            lin[2].weight.copy_(dense((k, 2 * D), 0.0, cols=st_cols,
                                      value=w[p + ".out.weight"]).t())
            lin[2].bias.copy_(dense((1, 2 * D), 0.0, cols=st_cols,
                                    value=w[p + ".out.bias"]).reshape(-1))
            layer.rescale.copy_(dense((1, D), 1.0, cols=ch, value=w[p + ".rescale"]).reshape(-1))
    opt, sched = make_trainer(model, len(c_losses), args.foreach)
    worst = 0.0
    print(f"# verify {name}: {len(c_losses)} steps without dropout from the C side's initial "
          f"weights and data ({n_lab} labeled + {n_unlab} unlabeled, D={D}, K={K})")
    print(f"# {'step':>4} {'C loss':>14} {'torch loss':>14} {'rel. diff':>10}")
    for i, cl in enumerate(c_losses):
        tl = float(train_step(model, opt, sched, x, y, n_lab))
        rel = abs(tl - cl) / max(abs(cl), 1e-12)
        worst = max(worst, rel)
        if i < 3 or i == len(c_losses) - 1 or not args.quiet:
            print(f"# {i + 1:4d} {cl:14.7g} {tl:14.7g} {rel:10.2e}")
    ok = worst < args.tolerance
    print(f"VERIFY config={name} steps={len(c_losses)} max_rel_diff={worst:.3e} "
          f"tolerance={args.tolerance:g} {'OK' if ok else 'MISMATCH'}", flush=True)
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", action="append", choices=sorted(CONFIGS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--labeled", type=int, default=16)
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--dropout", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--authors", action="store_true",
                    help="weight_norm rescale and the NaN check of the authors' forward")
    ap.add_argument("--foreach", type=int, choices=(0, 1), default=1,
                    help="AdamW's multi-tensor path (1, PyTorch's faster one) or per tensor (0)")
    ap.add_argument("--verify", metavar="DIR",
                    help="compare with bench-flowgmm --verify DIR instead of timing")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--quiet", "-q", action="store_true")
    args = ap.parse_args()
    args.foreach = bool(args.foreach)
    torch.set_num_threads(args.threads)
    configs = args.config or sorted(CONFIGS)
    if args.verify:
        ok = all([verify(args, c) for c in configs])
        return 0 if ok else 1
    for c in configs:
        bench(args, c)
    return 0


if __name__ == "__main__":
    sys.exit(main())
