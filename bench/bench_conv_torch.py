#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""PyTorch reference of the training step timed by bench/bench-conv.c.

The model is the authors' image RealNVP (flow_ssl/realnvp/realnvp.py with the ResNet of
flow_ssl/resnet_realnvp/resnet.py; doc/image-flow.md): iLogits, then per scale three
checkerboard couplings, squeeze, three channel-wise couplings and a factor-out of half the
channels, and four checkerboard couplings at the last scale; s/t networks are ResNets with
weight-normalised convolutions and batch norm.  One step: forward in training mode (fresh
dequantisation noise), loss mean(0.5*|z|^2 - logdet), backward, Adam(lr 1e-4) step, as the C
side.

  /usr/bin/python3 bench/bench_conv_torch.py --mid 64 --blocks 8 --threads 1 --seconds 10

Set OPENBLAS_NUM_THREADS / OMP_NUM_THREADS to the same count (bench-conv.sh does).
Prints "images/s X step_ms Y steps N params P peak_rss_mb R loss L cpu_ms_step C" (process
CPU time per timed step, all threads).
"""
import argparse
import math
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class WNConv2d(nn.Module):
    def __init__(self, cin, cout, k, padding, bias=True):
        super().__init__()
        self.conv = nn.utils.weight_norm(nn.Conv2d(cin, cout, k, padding=padding, bias=bias))

    def forward(self, x):
        return self.conv(x)


class ResidualBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.in_norm = nn.BatchNorm2d(c)
        self.in_conv = WNConv2d(c, c, 3, 1, bias=False)
        self.out_norm = nn.BatchNorm2d(c)
        self.out_conv = WNConv2d(c, c, 3, 1, bias=True)

    def forward(self, x):
        skip = x
        x = self.in_conv(F.relu(self.in_norm(x)))
        x = self.out_conv(F.relu(self.out_norm(x)))
        return x + skip


class ResNet(nn.Module):
    def __init__(self, cin, mid, cout, blocks, double_after_norm):
        super().__init__()
        self.in_norm = nn.BatchNorm2d(cin)
        self.double_after_norm = double_after_norm
        self.in_conv = WNConv2d(2 * cin, mid, 3, 1, bias=True)
        self.in_skip = WNConv2d(mid, mid, 1, 0, bias=True)
        self.blocks = nn.ModuleList([ResidualBlock(mid) for _ in range(blocks)])
        self.skips = nn.ModuleList([WNConv2d(mid, mid, 1, 0, bias=True) for _ in range(blocks)])
        self.out_norm = nn.BatchNorm2d(mid)
        self.out_conv = WNConv2d(mid, cout, 1, 0, bias=True)

    def forward(self, x):
        x = self.in_norm(x)
        if self.double_after_norm:
            x = x * 2.0
        x = F.relu(torch.cat((x, -x), dim=1))
        x = self.in_conv(x)
        x_skip = self.in_skip(x)
        for block, skip in zip(self.blocks, self.skips):
            x = block(x)
            x_skip = x_skip + skip(x)
        return self.out_conv(F.relu(self.out_norm(x_skip)))


class Coupling(nn.Module):
    def __init__(self, c, mid, blocks, checker, reverse):
        super().__init__()
        self.checker, self.reverse = checker, reverse
        cin = c if checker else c // 2
        self.st_net = ResNet(cin, mid, 2 * cin, blocks, checker)
        self.rescale = nn.Parameter(torch.ones(1, cin, 1, 1))

    def forward(self, x, ld):
        if self.checker:
            h, w = x.shape[2], x.shape[3]
            i = torch.arange(h).view(h, 1)
            j = torch.arange(w).view(1, w)
            b = ((i + j) % 2).float().view(1, 1, h, w)
            if self.reverse:
                b = 1 - b
            st = self.st_net(x * b)
            s, t = st.chunk(2, dim=1)
            s = (self.rescale * torch.tanh(s)) * (1 - b)
            t = t * (1 - b)
            x = (x + t) * torch.exp(s)
        else:
            if self.reverse:
                x_id, x_ch = x.chunk(2, dim=1)
            else:
                x_ch, x_id = x.chunk(2, dim=1)
            st = self.st_net(x_id)
            s, t = st.chunk(2, dim=1)
            s = self.rescale * torch.tanh(s)
            x_ch = (x_ch + t) * torch.exp(s)
            x = torch.cat((x_id, x_ch), 1) if self.reverse else torch.cat((x_ch, x_id), 1)
        return x, ld + s.flatten(1).sum(1)


def squeeze(x):
    n, c, h, w = x.shape
    x = x.view(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).contiguous()
    return x.view(n, 4 * c, h // 2, w // 2)


class RealNVP(nn.Module):
    def __init__(self, scales, c, mid, blocks):
        super().__init__()
        self.layers = nn.ModuleList()
        self.plan = []
        for s in range(scales):
            for r in (False, True, False):
                self.layers.append(Coupling(c, mid, blocks, True, r))
                self.plan.append("c")
            if s == scales - 1:
                self.layers.append(Coupling(c, mid, blocks, True, True))
                self.plan.append("c")
            else:
                self.plan.append("squeeze")
                for r in (False, True, False):
                    self.layers.append(Coupling(4 * c, 2 * mid, blocks, False, r))
                    self.plan.append("c")
                self.plan.append(("split", 2 * c))
            c *= 2
            mid *= 2

    def forward(self, x):
        u = (x * 255.0 + torch.rand_like(x)) / 256.0
        p = 0.05 + 0.9 * u
        y = p.log() - (1 - p).log()
        ld = (F.softplus(y) + F.softplus(-y)).flatten(1).sum(1) + y[0].numel() * math.log(0.9)
        zs = []
        it = iter(self.layers)
        for step in self.plan:
            if step == "c":
                y, ld = next(it)(y, ld)
            elif step == "squeeze":
                y = squeeze(y)
            else:
                k = step[1]
                zs.append(y[:, k:].flatten(1))
                y = y[:, :k]
        zs.append(y.flatten(1))
        return torch.cat(zs, 1), ld


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mid", type=int, default=64)
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--scales", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--warmup", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    net = RealNVP(a.scales, a.channels, a.mid, a.blocks)
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    x = torch.randint(0, 256, (a.batch, a.channels, a.size, a.size)).float() / 255.0
    steps, loss_sum, t0, c0 = 0, 0.0, None, None
    it = 0
    while True:
        if it == a.warmup:
            t0 = time.perf_counter()
            c0 = time.process_time()
        z, ld = net(x)
        loss = (0.5 * (z * z).sum(1) - ld).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if it >= a.warmup:
            steps += 1
            loss_sum += loss.item()
            if time.perf_counter() - t0 >= a.seconds and steps >= 2:
                break
        it += 1
    dt = time.perf_counter() - t0
    dc = time.process_time() - c0
    params = sum(p.numel() for p in net.parameters())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print("images/s %.3f step_ms %.1f steps %d params %d peak_rss_mb %.0f loss %.4g cpu_ms_step %.1f"
          % (steps * a.batch / dt, 1e3 * dt / steps, steps, params, rss, loss_sum / steps,
             1e3 * dc / steps))


if __name__ == "__main__":
    main()
