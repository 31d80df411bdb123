"""`rlipv2.Detector` on the test fixture model equals `rlipv2 detect`; its errors; memory across
calls."""

import json
import os

import numpy as np
import pytest

import rlipv2
from conftest import ROOT, rlipv2_bin, run_cli  # noqa: F401  (rlipv2_bin: for the Ray tests)

FIXTURE = os.path.join(ROOT, "tests", "fixtures", "official_format_r50_parseda_v2_q128.pth")
IMAGE = os.path.join(ROOT, "tests", "fixtures", "images", "rgb_64x48.png")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """The fixture checkpoint converted by the CLI (labels baked through a byte-level tokenizer)."""
    d = tmp_path_factory.mktemp("model")
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, **{chr(b): 4 + b - 33 for b in range(33, 127)}, "\u0120": 98}

    def special(i, s):
        return {"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False, "normalized": True,
                "special": True}

    tok = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [special(0, "<s>"), special(1, "<pad>"), special(2, "</s>"), special(3, "<unk>")],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": {"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 0], "trim_offsets": True,
                           "add_prefix_space": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "vocab": vocab, "merges": []},
    }
    (d / "tok.json").write_text(json.dumps(tok))
    out = d / "m.safetensors"
    run_cli("convert", FIXTURE, out, "--tokenizer", d / "tok.json")
    return out


def test_one_detector_serves_several_threads(model, tmp_path):
    """Ray Data actors, web servers and thread pools call from threads other than the one that
    made the Detector: each call gives the same detections, and calls never overlap."""
    import concurrent.futures

    image = tmp_path / "thin.png"  # 400×20: pre-processed to 1333×67, quick
    write_png(image, np.random.default_rng(3).integers(0, 256, (20, 400, 3), dtype=np.uint8))
    det = rlipv2.Detector(model, backend="cpu")
    want = det.detect(image, top_k=10)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        got = list(pool.map(lambda _: det.detect(image, top_k=10), range(2)))
    assert got == [want, want] and want
    assert json.loads(det.document(image, top_k=10))["detections"] == want


def test_detect_equals_the_cli(model, tmp_path):
    run_cli("detect", "--weights", model, "--backend", "cpu", "--top-k", "20", "--draw", "0", "--out", tmp_path, IMAGE)
    cli = json.loads((tmp_path / "rgb_64x48.json").read_text())["detections"]
    det = rlipv2.Detector(model, backend="cpu")
    got = det.detect(IMAGE, top_k=20)
    assert len(got) == len(cli) > 0
    assert got == cli
    info = det.info()
    assert info["backend"] == "cpu" and info["config"]["num_queries"] == 128, info


def write_png(path, rgb):
    """A minimal RGB PNG writer (no imaging library needed)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path.write_bytes(png)


def test_an_array_equals_its_png_and_the_person_filter_runs(model, tmp_path):
    ys, xs = np.mgrid[0:40, 0:56]
    rgb = np.stack([xs * 4, ys * 6, (xs + ys) * 2], -1).astype(np.uint8)
    write_png(tmp_path / "grad.png", rgb)
    det = rlipv2.Detector(model, backend="cpu")
    from_array = det.detect(rgb, top_k=10)
    assert from_array == det.detect(tmp_path / "grad.png", top_k=10)
    person = det.detect(rgb, top_k=10, person_only=True)
    assert all(set(r) == {"subject_box", "object_box", "object", "verb", "score", "pair"} for r in person)


def test_bad_inputs_raise(model, tmp_path):
    with pytest.raises(OSError, match="no_such.safetensors"):
        rlipv2.Detector(tmp_path / "no_such.safetensors")
    det = rlipv2.Detector(model, backend="cpu")
    with pytest.raises(OSError, match="missing.png"):
        det.detect(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="uint8"):
        det.detect(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="top_k"):
        det.detect(IMAGE, top_k=-1)
    with pytest.raises(ValueError, match="unknown backend"):
        rlipv2.Detector(model, backend="tpu")
    with pytest.raises(OSError, match="nolabels.json"):
        det.detect(IMAGE, labels=str(tmp_path / "nolabels.json"))
