"""Shared inputs for the Python tests: seeded MSDA problems in the official layouts, and the
grid_sample formulation of the op (PyTorch's own ops, the reference the drop-in is held to)."""

import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools"))

LEVELS = [(9, 11), (5, 6), (1, 1)]


def problem(seed=0, batch=2, queries=37, heads=4, channels=16, points=3, levels=LEVELS, dtype=np.float32):
    """value, spatial_shapes, level_start_index, sampling_locations, attention_weights (numpy)."""
    rng = np.random.default_rng(seed)
    shapes = np.array(levels, dtype=np.int64)
    sizes = shapes[:, 0] * shapes[:, 1]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    s = int(sizes.sum())
    value = rng.uniform(-1, 1, (batch, s, heads, channels)).astype(dtype)
    # locations around [0, 1], some outside the validity band
    loc = rng.uniform(-0.1, 1.1, (batch, queries, heads, len(levels), points, 2)).astype(dtype)
    logits = rng.uniform(-3, 3, (batch, queries, heads, len(levels) * points))
    w = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    weights = w.reshape(batch, queries, heads, len(levels), points).astype(dtype)
    return value, shapes, starts, loc, weights


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def rlipv2_bin():
    """The `rlipv2` CLI built beside the wheel (target/release), for the detector comparison."""
    path = os.environ.get("RLIPV2_BIN", os.path.join(ROOT, "target", "release", "rlipv2"))
    if not os.path.exists(path):
        pytest.fail(f"the rlipv2 CLI is not built at {path} (cargo build --release, or set RLIPV2_BIN)")
    return path


def run_cli(*args):
    """Runs the CLI; a failure fails the test with the CLI's own stderr (a full disk, a refused
    file), not only its exit status."""
    done = subprocess.run([rlipv2_bin(), *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"rlipv2 {' '.join(map(str, args))} exited {done.returncode}:\n{done.stderr[-4000:]}")
    return done
