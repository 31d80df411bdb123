#!/usr/bin/env python3
"""PyTorch CPU baseline for ms_deform_attn: the grid_sample formulation of the official op
(bilinear, zeros padding, align_corners=False, grid = 2·loc − 1), timed on the same shape and the
same input recipe as `rlipv2 bench ms_deform_attn --case encoder` (query point = the query's own
pixel centre, offsets U(−4,4) pixels per level, softmaxed weights).

Run with Debian's python3-torch:  /usr/bin/python3 tools/msda_torch_baseline.py [--threads 2] [--repeat 5]
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

LEVELS = [(100, 167), (50, 84), (25, 42), (13, 21)]


def msda_grid_sample(value, shapes, loc, weights):
    """value [B,S,M,D], loc [B,Q,M,L,P,2] in [0,1], weights [B,Q,M,L,P] → [B,Q,M·D]."""
    b, _, m, d = value.shape
    _, q, _, l, p, _ = loc.shape
    per_level = value.split([h * w for h, w in shapes], dim=1)
    grid = 2.0 * loc - 1.0
    sampled = []
    for i, (h, w) in enumerate(shapes):
        v = per_level[i].flatten(2).transpose(1, 2).reshape(b * m, d, h, w)
        g = grid[:, :, :, i].transpose(1, 2).flatten(0, 1)  # [B·M, Q, P, 2]
        sampled.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    a = weights.transpose(1, 2).reshape(b * m, 1, q, l * p)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * a).sum(-1).view(b, m * d, q)
    return out.transpose(1, 2).contiguous()


def encoder_inputs(seed=7, heads=8, channels=32, points=4):
    g = torch.Generator().manual_seed(seed)
    s = sum(h * w for h, w in LEVELS)
    value = torch.rand(1, s, heads, channels, generator=g) * 2 - 1
    pts = []
    for h, w in LEVELS:
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        pts.append(torch.stack([(xs.flatten() + 0.5) / w, (ys.flatten() + 0.5) / h], -1))
    ref = torch.cat(pts)[None, :, None, None, None, :]  # [1,Q,1,1,1,2]
    size = torch.tensor([[w, h] for h, w in LEVELS], dtype=torch.float32)[None, None, None, :, None, :]
    off = torch.rand(1, s, heads, len(LEVELS), points, 2, generator=g) * 8 - 4
    loc = ref + off / size
    logits = torch.rand(1, s, heads, len(LEVELS) * points, generator=g) * 6 - 3
    weights = logits.softmax(-1).view(1, s, heads, len(LEVELS), points)
    return value, loc, weights


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    value, loc, weights = encoder_inputs()
    with torch.no_grad():
        msda_grid_sample(value, LEVELS, loc, weights)  # warm-up
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            msda_grid_sample(value, LEVELS, loc, weights)
            times.append(time.perf_counter() - t0)
    print(f"torch {torch.__version__} grid_sample ms_deform_attn encoder (B=1 Q=S=22223 M=8 D=32 L=4 P=4), "
          f"{args.threads} threads: median {statistics.median(times) * 1e3:.1f} ms, min {min(times) * 1e3:.1f} ms over {args.repeat}")


if __name__ == "__main__":
    main()
