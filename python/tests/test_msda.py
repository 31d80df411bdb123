"""The op from Python against PyTorch's grid_sample formulation, forward and backward; the
bindings' input checks; memory across calls; the GPU backends (lavapipe in CI)."""

import os

import numpy as np
import pytest

import rlipv2
from conftest import LEVELS, problem


def grid_sample_reference(torch, value, shapes, loc, weights):
    from msda_torch_baseline import msda_grid_sample

    return msda_grid_sample(value, [tuple(int(x) for x in hw) for hw in shapes], loc, weights)


def test_forward_matches_grid_sample_numpy_and_torch(torch):
    value, shapes, starts, loc, weights = problem(1)
    want = grid_sample_reference(torch, *(torch.from_numpy(x).double() for x in (value,)), shapes,
                                 torch.from_numpy(loc).double(), torch.from_numpy(weights).double())
    got_np = rlipv2.ms_deform_attn(value, shapes, starts, loc, weights, backend="cpu")
    assert isinstance(got_np, np.ndarray) and got_np.dtype == np.float32 and got_np.shape == (2, 37, 64)
    np.testing.assert_allclose(got_np, want.numpy(), rtol=1e-5, atol=2e-6)
    t = [torch.from_numpy(x) for x in (value, shapes, starts, loc, weights)]
    got_t = rlipv2.ms_deform_attn(*t, backend="cpu")
    assert isinstance(got_t, torch.Tensor) and got_t.dtype == torch.float32
    np.testing.assert_array_equal(got_t.numpy(), got_np)


def test_backward_matches_autograd_through_grid_sample(torch):
    value, shapes, starts, loc, weights = problem(2)
    g = np.random.default_rng(3).uniform(-1, 1, (2, 37, 64)).astype(np.float32)
    leaves = [torch.from_numpy(x).double().requires_grad_(True) for x in (value, loc, weights)]
    out = grid_sample_reference(torch, leaves[0], shapes, leaves[1], leaves[2])
    want = torch.autograd.grad(out, leaves, torch.from_numpy(g).double())
    got = rlipv2.ms_deform_attn_backward(value, shapes, starts, loc, weights, g, backend="cpu")
    names = ["grad_value", "grad_sampling_locations", "grad_attention_weights"]
    # grid_sample's gradient differs from the official op's only at the validity band's edge,
    # which these locations (U(−0.1, 1.1)) do not hit exactly
    for name, a, b in zip(names, got, want):
        scale = float(b.abs().max())
        assert scale > 0.1, name
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-4, atol=1e-5 * scale, err_msg=name)


def test_backward_is_deterministic_and_returns_torch_for_torch(torch):
    value, shapes, starts, loc, weights = problem(4)
    g = np.random.default_rng(5).uniform(-1, 1, (2, 37, 64)).astype(np.float32)
    t = [torch.from_numpy(x) for x in (value, shapes, starts, loc, weights, g)]
    a = rlipv2.ms_deform_attn_backward(*t, backend="cpu")
    b = rlipv2.ms_deform_attn_backward(*t, backend="cpu")
    assert all(isinstance(x, torch.Tensor) for x in a)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_float64_runs_on_the_reference_only():
    value, shapes, starts, loc, weights = problem(6, dtype=np.float64)
    out = rlipv2.ms_deform_attn(value, shapes, starts, loc, weights, backend="reference")
    assert out.dtype == np.float64
    with pytest.raises(ValueError, match="float64 arrays run on the f64 reference only"):
        rlipv2.ms_deform_attn(value, shapes, starts, loc, weights, backend="cpu")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: {**a, "value": a["value"][:, :-1]}, "ms_deform_attn: value: S = 129 tokens"),
        (lambda a: {**a, "value": a["value"][..., :12]}, "multiple of 8"),
        (lambda a: {**a, "loc": a["loc"][..., :1]}, "tensor `sampling_locations` has shape"),
        (lambda a: {**a, "weights": a["weights"][:, :, :, :, :2]}, "tensor `attention_weights` has shape"),
        (lambda a: {**a, "shapes": a["shapes"][:2]}, "tensor `level_start_index` has shape"),
        (lambda a: {**a, "shapes": np.array([[0, 11], [5, 6], [1, 1]])}, "H and W must be in 1..="),
        (lambda a: {**a, "starts": np.array([0, -1, 5])}, "level 1 starts at -1"),
        (lambda a: {**a, "shapes": a["shapes"].astype(np.float32)}, "`spatial_shapes` has dtype float32"),
        (lambda a: {**a, "value": a["value"].astype(np.float16)}, "tensor `value` has dtype float16"),
        (lambda a: {**a, "loc": a["loc"].astype(np.float64)}, "`sampling_locations` has dtype float64, expected float32"),
    ],
)
def test_bad_inputs_raise_with_the_cli_messages(change, message):
    value, shapes, starts, loc, weights = problem(7)
    a = change({"value": value, "shapes": shapes, "starts": starts, "loc": loc, "weights": weights})
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        rlipv2.ms_deform_attn(a["value"], a["shapes"], a["starts"], a["loc"], a["weights"], backend="cpu")


def test_bad_backend_dtype_and_grad_output_raise():
    value, shapes, starts, loc, weights = problem(8)
    with pytest.raises(ValueError, match="unknown backend"):
        rlipv2.ms_deform_attn(value, shapes, starts, loc, weights, backend="tpu")
    with pytest.raises(ValueError, match="unknown dtype"):
        rlipv2.ms_deform_attn(value, shapes, starts, loc, weights, dtype="f8")
    with pytest.raises(ValueError, match="tensor `grad_output` has shape"):
        rlipv2.ms_deform_attn_backward(value, shapes, starts, loc, weights, np.zeros((2, 37, 63), np.float32))


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    pytest.skip("no /proc/self/status")


def test_no_memory_growth_across_calls():
    """100 forward+backward calls after a warm-up: the resident set stays within 8 MB
    (one call's inputs and outputs are ≈ 0.3 MB, so a leak of one buffer per call would show)."""
    value, shapes, starts, loc, weights = problem(9, queries=200)
    g = np.ones((2, 200, 64), np.float32)
    for _ in range(10):
        rlipv2.ms_deform_attn_backward(value, shapes, starts, loc, weights, g, backend="cpu")
    before = rss_bytes()
    for _ in range(100):
        rlipv2.ms_deform_attn(value, shapes, starts, loc, weights, backend="cpu")
        rlipv2.ms_deform_attn_backward(value, shapes, starts, loc, weights, g, backend="cpu")
    grown = rss_bytes() - before
    print(f"RSS growth over 100 calls: {grown / 1e6:.2f} MB")
    assert grown < 8e6, f"RSS grew {grown / 1e6:.1f} MB over 100 calls"


def required_backends():
    return [b.strip() for b in os.environ.get("RLIPV2_REQUIRE_BACKENDS", "").split(",") if b.strip()]


@pytest.mark.parametrize("backend", ["wgpu", "cubecl-wgpu"])
def test_gpu_backends_match_cpu(backend):
    available = {b["name"]: b for b in rlipv2.backends()}
    if not available[backend]["available"]:
        if backend in required_backends():
            pytest.fail(f"{backend} is required but unavailable: {available[backend]['detail']}")
        pytest.skip(f"{backend}: {available[backend]['detail']}")
    value, shapes, starts, loc, weights = problem(10)
    g = np.random.default_rng(11).uniform(-1, 1, (2, 37, 64)).astype(np.float32)
    cpu = rlipv2.ms_deform_attn(value, shapes, starts, loc, weights, backend="cpu")
    np.testing.assert_allclose(rlipv2.ms_deform_attn(value, shapes, starts, loc, weights, backend=backend), cpu,
                               rtol=1e-5, atol=2e-6)
    want = rlipv2.ms_deform_attn_backward(value, shapes, starts, loc, weights, g, backend="cpu")
    got = rlipv2.ms_deform_attn_backward(value, shapes, starts, loc, weights, g, backend=backend)
    again = rlipv2.ms_deform_attn_backward(value, shapes, starts, loc, weights, g, backend=backend)
    for a, b, c in zip(got, want, again):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(a, c)  # deterministic on the GPU backends too
