"""`python/examples/ray_detect.py` on a local Ray cluster (`ray.init()` on this machine) writes
what `rlipv2 detect --format jsonl` writes for the same directory — every line byte for byte,
the same failure records — and a rerun resumes instead of repeating."""

import json
import os
import subprocess
import sys

import numpy as np

# Run in their own virtual environment (Ray brings NumPy 2, which Debian's PyTorch cannot
# share); the converted fixture model and the PNG writer are the main tests'.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from test_detector import ROOT, model, rlipv2_bin, write_png  # noqa: E402,F401  (model: a fixture)

EXAMPLE = os.path.join(ROOT, "python", "examples", "ray_detect.py")


def lines(path):
    with open(path, encoding="utf-8") as f:
        return sorted(f.read().splitlines())


def test_ray_run_equals_the_cli(model, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    # 400×20: pre-processing makes them 1333×67, a fifth of a photo's work
    for name in ("a.png", "b.png", "c.png"):
        write_png(images / name, rng.integers(0, 256, (20, 400, 3), dtype=np.uint8))
    data = (images / "a.png").read_bytes()
    (images / "cut.png").write_bytes(data[: len(data) // 2])
    (images / "notes.txt").write_text("not an image")

    cli = subprocess.run([rlipv2_bin(), "detect", "--weights", str(model), "--backend", "cpu", "--format", "jsonl",
                          "--out", str(tmp_path / "cli"), str(images)], capture_output=True, text=True)
    assert cli.returncode != 0 and "failed: 1" in cli.stderr, cli.stderr

    cmd = [sys.executable, EXAMPLE, "--weights", str(model), "--images", str(images), "--out", str(tmp_path / "ray"),
           "--actors", "2", "--cpus-per-actor", "1", "--batch-size", "1"]
    ray = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert ray.returncode == 1 and "done: 3 images, failed: 1" in ray.stderr, ray.stderr[-3000:]
    got, want = lines(tmp_path / "ray" / "detections.jsonl"), lines(tmp_path / "cli" / "detections.jsonl")
    assert len(want) == 3 and got == want
    assert lines(tmp_path / "ray" / "failures.jsonl") == lines(tmp_path / "cli" / "failures.jsonl")
    doc = json.loads(got[0])
    assert doc["backend"] == "cpu" and doc["model"]["file"] == "m.safetensors" and doc["detections"]

    # a rerun skips the three done images and retries the bad one only
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 1 and "already done: 3" in again.stderr, again.stderr[-3000:]
    assert lines(tmp_path / "ray" / "detections.jsonl") == want
