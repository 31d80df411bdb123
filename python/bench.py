#!/usr/bin/env python3
"""Times rlipv2's MSDA called from Python against PyTorch, forward and backward, on the RLIPv2
encoder shape (B=1, Q=S=22223, M=8, D=32, L=4, P=4; the input recipe of
`rlipv2 bench ms_deform_attn --case encoder`), side by side and interleaved:

- rlipv2 (`rlipv2.ms_deform_attn` / `ms_deform_attn_backward` on torch CPU tensors, backend cpu
  unless --backend), recorded as backend `cpu`;
- PyTorch's grid_sample formulation (forward; backward = autograd through it), backend `torch`;
- the official CUDA op when importable (`MultiScaleDeformableAttention`) and a GPU is present,
  backend `torch-cuda-official`.

Also the binding's overhead: µs per call on a one-sample problem (the compute is nil there).
Writes `bench.json` in the layout of `rlipv2 bench suite` (chart it with `rlipv2 bench render`).

Run: python python/bench.py [--repeat 5] [--threads 2] [--out bench-python]
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch

# this file sits beside the package's sources: import the installed wheel, not the source folder
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != HERE]
import rlipv2  # noqa: E402

sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from msda_torch_baseline import LEVELS, encoder_inputs, msda_grid_sample  # noqa: E402

SHAPE = "Q=22223 S=22223 (100×167,50×84,25×42,13×21)"


def timed(fn, repeat):
    fn()  # warm-up (a GPU backend compiles its pipelines here)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times), min(times)


def record(op, backend, device, median_min, timing="host-to-host", skipped=None):
    med, mn = median_min if median_min else (None, None)
    return {"op": op, "case": "rlipv2", "size": 22223, "shape": SHAPE, "backend": backend, "dtype": "f32",
            "device": device, "timing": timing, "median_ms": med, "min_ms": mn, "throughput": None, "unit": "",
            "skipped": skipped}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--out", default="bench-python")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("RAYON_NUM_THREADS", str(args.threads))
    value, loc, weights = encoder_inputs()
    shapes = torch.tensor(LEVELS, dtype=torch.long)
    starts = torch.cat([shapes.new_zeros(1), (shapes[:, 0] * shapes[:, 1]).cumsum(0)[:-1]])
    grad = torch.rand(1, value.shape[1], 256, generator=torch.Generator().manual_seed(5)) * 2 - 1
    leaves = [t.clone().requires_grad_(True) for t in (value, loc, weights)]
    out = msda_grid_sample(*leaves[:1], LEVELS, *leaves[1:])

    cells = {
        ("ms_deform_attn", "cpu"): lambda: rlipv2.ms_deform_attn(value, shapes, starts, loc, weights,
                                                                  backend=args.backend),
        ("ms_deform_attn", "torch"): lambda: msda_grid_sample(value, LEVELS, loc, weights),
        ("ms_deform_attn_backward", "cpu"): lambda: rlipv2.ms_deform_attn_backward(
            value, shapes, starts, loc, weights, grad, backend=args.backend),
        ("ms_deform_attn_backward", "torch"): lambda: torch.autograd.grad(out, leaves, grad, retain_graph=True),
    }
    results = {k: [] for k in cells}
    for _ in range(2):  # two rounds, the cells interleaved; min over both
        for key, fn in cells.items():
            results[key].append(timed(fn, args.repeat))
    device = f"{os.cpu_count()}-core CPU, {args.threads} threads"
    records = []
    for (op, backend), runs in results.items():
        med = statistics.median(r[0] for r in runs)
        mn = min(r[1] for r in runs)
        records.append(record(f"python/{op}", backend, device, (med, mn)))
        print(f"{op:<26} {backend:<6} median {med:9.2f} ms  min {mn:9.2f} ms  (rounds: "
              + ", ".join(f"{r[0]:.1f}" for r in runs) + ")")
    for op in ("ms_deform_attn", "ms_deform_attn_backward"):
        ours = min(r[1] for r in results[(op, "cpu")])
        theirs = min(r[1] for r in results[(op, "torch")])
        print(f"{op}: rlipv2 from Python is {theirs / ours:.1f}× PyTorch (min vs min)")

    try:
        import MultiScaleDeformableAttention as official  # noqa: F401
        have_official = torch.cuda.is_available()
    except ImportError:
        have_official = False
    if not have_official:
        records.append(record("python/ms_deform_attn", "torch-cuda-official", "-", None,
                              skipped="the official CUDA op is not installed here (or no GPU)"))

    # the binding's own cost: a one-sample problem, where the kernel does almost nothing
    tiny = [torch.rand(1, 1, 1, 8), torch.tensor([[1, 1]]), torch.tensor([0]), torch.rand(1, 1, 1, 1, 1, 2),
            torch.ones(1, 1, 1, 1, 1)]
    calls = 2000
    for _ in range(100):
        rlipv2.ms_deform_attn(*tiny, backend="cpu")
    t = time.perf_counter()
    for _ in range(calls):
        rlipv2.ms_deform_attn(*tiny, backend="cpu")
    per_call = (time.perf_counter() - t) / calls * 1e6
    print(f"binding overhead: {per_call:.1f} µs per call (one-sample problem, {calls} calls, cpu backend)")

    os.makedirs(args.out, exist_ok=True)
    report = {"schema": 1, "rlipv2": "python", "features": ["python"], "created_unix": int(time.time()),
              "quick": False, "repeat": args.repeat, "records": records,
              "python_binding_overhead_us_per_call": per_call}
    with open(os.path.join(args.out, "bench.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {args.out}/bench.json (chart: rlipv2 bench render {args.out}/bench.json --out {args.out})")


if __name__ == "__main__":
    main()
