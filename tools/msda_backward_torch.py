#!/usr/bin/env python3
"""PyTorch autograd through the grid_sample formulation of ms_deform_attn (the official op's
semantics: bilinear, zeros padding, align_corners=False, grid = 2·loc − 1) — the reference for the
backward pass that is not ours.

  golden: /usr/bin/python3 tools/msda_backward_torch.py golden tests/fixtures/msda_backward_golden.json
          a small official-form case (some samples outside the level, so the validity rule and the
          zero padding are exercised), its inputs, grad_output and PyTorch's f32 gradients.
  time:   /usr/bin/python3 tools/msda_backward_torch.py time [--threads 2] [--repeat 5] [--write IN.safetensors]
          the RLIPv2 encoder shape (B=1, Q=S=22223, M=8, D=32, L=4, P=4), the input recipe of
          tools/msda_torch_baseline.py: times autograd's backward (after one forward) and, with
          --write, saves the inputs and grad_output for `rlipv2 op ms_deform_attn_backward` and
          compares its gradients (--compare GRADS.safetensors).

Needs Debian's python3-torch (/usr/bin/python3).
"""
import argparse
import json
import os
import statistics
import struct
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from msda_torch_baseline import LEVELS, encoder_inputs, msda_grid_sample  # noqa: E402

GOLDEN_LEVELS = [(5, 6), (3, 3)]


def grads(value, shapes, loc, weights, grad_out):
    """(grad_value, grad_sampling_locations, grad_attention_weights) by autograd."""
    value, loc, weights = (t.detach().clone().requires_grad_(True) for t in (value, loc, weights))
    out = msda_grid_sample(value, shapes, loc, weights)
    return torch.autograd.grad(out, (value, loc, weights), grad_out)


def golden(path):
    g = torch.Generator().manual_seed(11)
    b, q, m, d, p = 1, 6, 2, 8, 2
    s = sum(h * w for h, w in GOLDEN_LEVELS)
    value = torch.rand(b, s, m, d, generator=g) * 2 - 1
    # U(−0.15, 1.15): a few samples past the borders, some beyond the validity band
    loc = torch.rand(b, q, m, len(GOLDEN_LEVELS), p, 2, generator=g) * 1.3 - 0.15
    weights = (torch.rand(b, q, m, len(GOLDEN_LEVELS) * p, generator=g) * 6 - 3).softmax(-1).view(b, q, m, len(GOLDEN_LEVELS), p)
    grad_out = torch.rand(b, q, m * d, generator=g) * 2 - 1
    gv, gl, ga = grads(value, GOLDEN_LEVELS, loc, weights, grad_out)
    flat = lambda t: [float(x) for x in t.flatten()]  # noqa: E731
    case = {
        "torch": torch.__version__,
        "batch": b, "queries": q, "heads": m, "channels": d, "points": p, "levels": GOLDEN_LEVELS,
        "value": flat(value), "sampling_locations": flat(loc), "attention_weights": flat(weights),
        "grad_output": flat(grad_out),
        "grad_value": flat(gv), "grad_sampling_locations": flat(gl), "grad_attention_weights": flat(ga),
    }
    with open(path, "w") as f:
        json.dump(case, f)
    print(f"wrote {path}: |grad_value| max {gv.abs().max():.4f}, |grad_loc| max {gl.abs().max():.4f}")


def write_safetensors(path, tensors):
    """A minimal safetensors writer: an 8-byte header length, the JSON header, the raw bytes."""
    header, blobs, at = {}, [], 0
    for name, t in tensors:
        data = t.contiguous().numpy().tobytes()
        dtype = {torch.float32: "F32", torch.int64: "I64"}[t.dtype]
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [at, at + len(data)]}
        blobs.append(data)
        at += len(data)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, z = info["data_offsets"]
        out[name] = torch.frombuffer(bytearray(raw[8 + n + a:8 + n + z]), dtype=torch.float32).view(info["shape"])
    return out


def timing(args):
    torch.set_num_threads(args.threads)
    value, loc, weights = encoder_inputs()
    grad_out = torch.rand(1, value.shape[1], value.shape[2] * value.shape[3], generator=torch.Generator().manual_seed(8)) * 2 - 1
    v, l, a = (t.clone().requires_grad_(True) for t in (value, loc, weights))
    out = msda_grid_sample(v, LEVELS, l, a)
    torch.autograd.grad(out, (v, l, a), grad_out, retain_graph=True)  # warm-up
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        torch.autograd.grad(out, (v, l, a), grad_out, retain_graph=True)
        times.append(time.perf_counter() - t0)
    print(f"torch {torch.__version__} autograd backward of the grid_sample ms_deform_attn, encoder shape, "
          f"{args.threads} threads: median {statistics.median(times) * 1e3:.1f} ms, min {min(times) * 1e3:.1f} ms over {args.repeat}")
    if args.write:
        shapes = torch.tensor(LEVELS, dtype=torch.int64)
        starts = torch.cat((torch.zeros(1, dtype=torch.int64), (shapes[:, 0] * shapes[:, 1]).cumsum(0)[:-1]))
        write_safetensors(args.write, [("value", value), ("spatial_shapes", shapes), ("level_start_index", starts),
                                       ("sampling_locations", loc), ("attention_weights", weights), ("grad_output", grad_out)])
        print(f"wrote {args.write}")
    if args.compare:
        ours = read_safetensors(args.compare)
        theirs = torch.autograd.grad(out, (v, l, a), grad_out)
        for name, t in zip(("grad_value", "grad_sampling_locations", "grad_attention_weights"), theirs):
            diff = (ours[name] - t).abs()
            print(f"{name}: max |ours − torch| {diff.max():.3e}, max |torch| {t.abs().max():.3e}, "
                  f"max rel (|torch| > 1e-3) {(diff / t.abs().clamp_min(1e-3)).max():.3e}")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("golden")
    g.add_argument("path")
    t = sub.add_parser("time")
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--repeat", type=int, default=5)
    t.add_argument("--write")
    t.add_argument("--compare")
    args = ap.parse_args()
    golden(args.path) if args.cmd == "golden" else timing(args)


if __name__ == "__main__":
    main()
