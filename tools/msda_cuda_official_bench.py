#!/usr/bin/env python3
"""On a CUDA machine: build the official MultiScaleDeformableAttention op from the fetched
official source (never committed; carried in .official/ops/src) with PyTorch's extension builder,
and time it (forward and backward) side by side with the grid_sample formulation (forward, and
its PyTorch autograd backward) on the RLIPv2 encoder shape
(B=1, Q=S=22223, M=8, D=32, L=4, P=4), same input recipe as `rlipv2 bench ms_deform_attn`.

The official source predates PyTorch 2; a copy is patched mechanically for the removed
`Tensor::type()` / `Tensor::data<T>()` / `AT_ASSERTM` / `AT_ERROR` APIs before building.
"""
import json
import os
import re
import shutil
import statistics
import sys
import time

import torch
from torch.utils.cpp_extension import load

sys.path.insert(0, os.path.dirname(__file__))
from msda_torch_baseline import LEVELS, encoder_inputs, msda_grid_sample  # noqa: E402


def build(src_dir, work="/tmp/msda_official"):
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(src_dir, work)
    for root, _, files in os.walk(work):
        for f in files:
            p = os.path.join(root, f)
            s = open(p).read()
            s = s.replace(".type().is_cuda()", ".is_cuda()")
            s = re.sub(r"AT_DISPATCH_FLOATING_TYPES\((\w+)\.type\(\)", r"AT_DISPATCH_FLOATING_TYPES(\1.scalar_type()", s)
            s = s.replace(".data<", ".data_ptr<").replace("AT_ASSERTM(", "TORCH_CHECK(").replace("AT_ERROR(", "TORCH_CHECK(false, ")
            open(p, "w").write(s)
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "9.0")
    os.environ.setdefault("MAX_JOBS", "16")
    t0 = time.time()
    mod = load(
        name="MultiScaleDeformableAttention",
        sources=[f"{work}/vision.cpp", f"{work}/cpu/ms_deform_attn_cpu.cpp", f"{work}/cuda/ms_deform_attn_cuda.cu"],
        extra_include_paths=[work],
        extra_cflags=["-O3", "-DWITH_CUDA"],
        extra_cuda_cflags=["-O3", "-DWITH_CUDA", "-DCUDA_HAS_FP16=1"],
        with_cuda=True,
        verbose=False,
    )
    print(f"built official op in {time.time() - t0:.0f} s", flush=True)
    return mod


def cuda_time(fn, repeat=50, warmup=5):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times), min(times)


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else ".official/ops/src"
    out_dir = os.environ.get("OUT", "/tmp")
    dev = torch.device("cuda")
    value, loc, weights = (t.to(dev) for t in encoder_inputs())
    shapes = torch.tensor(LEVELS, dtype=torch.int64, device=dev)
    starts = torch.cat([shapes.new_zeros(1), (shapes[:, 0] * shapes[:, 1]).cumsum(0)[:-1]])
    rows = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda}
    with torch.no_grad():
        ref = msda_grid_sample(value.double(), LEVELS, loc.double(), weights.double())
        rows["grid_sample_f32_ms"] = cuda_time(lambda: msda_grid_sample(value, LEVELS, loc, weights))
        try:
            mod = build(src)
            official = lambda: mod.ms_deform_attn_forward(value, shapes, starts, loc, weights, 64)  # noqa: E731
            got = official()
            rows["official_max_abs_err_vs_f64"] = (got.double() - ref).abs().max().item()
            rows["official_f32_ms"] = cuda_time(official)
        except Exception as e:  # report, keep the grid_sample numbers
            rows["official_error"] = repr(e)[:2000]
            mod = None
    # backward: the official col2im kernel (float atomicAdd: are its bits the same twice?) and
    # PyTorch autograd through grid_sample, for one grad_output
    grad = torch.Generator().manual_seed(5)
    g = (torch.rand(ref.shape, generator=grad) * 2 - 1).float().to(dev)
    leaves = [t.clone().requires_grad_(True) for t in (value, loc, weights)]
    out = msda_grid_sample(leaves[0], LEVELS, leaves[1], leaves[2])
    rows["grid_sample_autograd_backward_f32_ms"] = cuda_time(
        lambda: torch.autograd.grad(out, leaves, g, retain_graph=True), repeat=20
    )
    if mod is not None:
        try:
            back = lambda: mod.ms_deform_attn_backward(value, shapes, starts, loc, weights, g.contiguous(), 64)  # noqa: E731
            first, second = back(), back()
            rows["official_backward_f32_ms"] = cuda_time(back)
            rows["official_backward_grad_value_bits_differ_run_to_run"] = int(
                (first[0].view(torch.int32) != second[0].view(torch.int32)).sum().item()
            )
            auto = torch.autograd.grad(out, leaves, g, retain_graph=True)
            rows["official_backward_max_abs_err_vs_autograd"] = [
                (a - b).abs().max().item() for a, b in zip(first, auto)
            ]
        except Exception as e:
            rows["official_backward_error"] = repr(e)[:2000]
    print(json.dumps(rows, indent=1))
    with open(os.path.join(out_dir, "official.json"), "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
