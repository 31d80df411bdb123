"""rlipv2 from Python: RLIPv2's multi-scale deformable attention (forward and a deterministic
backward, on the CPU or any GPU rlipv2 runs on) and the human-object-interaction detector.

- ``ms_deform_attn`` / ``ms_deform_attn_backward`` take numpy arrays or torch CPU tensors in the
  official layouts and return the same kind.
- ``rlipv2.torch.MSDeformAttnFunction`` is a drop-in for the official ``MSDeformAttnFunction``.
- ``Detector`` runs a model converted by ``rlipv2 convert``.

Errors are Python exceptions carrying the CLI's messages: ``ValueError`` for bad input,
``OSError`` for files, ``RuntimeError`` for a backend or device that cannot run the call.
"""

import json
import os

import numpy as np

from . import _rlipv2

__all__ = ["ms_deform_attn", "ms_deform_attn_backward", "Detector", "backends"]

_OP = "ms_deform_attn"


def _is_torch(x):
    return type(x).__module__.split(".")[0] == "torch"


def _float_array(x, name, op, want=None):
    """``(kept, shape, address, dtype)`` of a contiguous float32/float64 host copy-or-view of
    ``x``; ``kept`` must stay alive while the address is used."""
    if _is_torch(x):
        import torch

        if x.device.type != "cpu":
            raise ValueError(
                f"{op}: tensor `{name}` is on {x.device}; this build takes CPU tensors "
                "(move it with .cpu(), or use the GPU backends through backend=)"
            )
        dtypes = {torch.float32: "float32", torch.float64: "float64"}
        dtype = dtypes.get(x.dtype)
        if dtype is None or (want is not None and dtype != want):
            raise ValueError(f"{op}: tensor `{name}` has dtype {x.dtype}, expected {want or 'float32'}")
        t = x.detach().contiguous()
        return t, list(t.shape), t.data_ptr(), dtype
    a = np.asarray(x)
    dtype = str(a.dtype)
    if dtype not in ("float32", "float64") or (want is not None and dtype != want):
        raise ValueError(f"{op}: tensor `{name}` has dtype {a.dtype}, expected {want or 'float32'}")
    a = np.ascontiguousarray(a)
    return a, list(a.shape), a.ctypes.data, dtype


def _index_array(x, name, op):
    """``(shape, values)`` of an integer tensor (the level table)."""
    if _is_torch(x):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.dtype.kind not in "iu":
        raise ValueError(f"{op}: tensor `{name}` has dtype {a.dtype}, expected int64")
    return list(a.shape), [int(v) for v in a.reshape(-1)]


def _empty_like_kind(like, shape, dtype):
    if _is_torch(like):
        import torch

        return torch.empty(shape, dtype=getattr(torch, dtype))
    return np.empty(shape, dtype=dtype)


def _address(a):
    return a.data_ptr() if _is_torch(a) else a.ctypes.data


def _inputs(op, value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
    v = _float_array(value, "value", op)
    loc = _float_array(sampling_locations, "sampling_locations", op, v[3])
    w = _float_array(attention_weights, "attention_weights", op, v[3])
    shapes = (
        v[1],
        _index_array(spatial_shapes, "spatial_shapes", op),
        _index_array(level_start_index, "level_start_index", op),
        loc[1],
        w[1],
    )
    return v, loc, w, shapes


def ms_deform_attn(value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
                   backend="auto", dtype="f32"):
    """Multi-scale deformable attention, official semantics and layouts.

    value ``[B,S,M,D]``, spatial_shapes ``[L,2]`` (H, W) int, level_start_index ``[L]`` int,
    sampling_locations ``[B,Q,M,L,P,2]`` normalized (x, y), attention_weights ``[B,Q,M,L,P]``
    → output ``[B,Q,M·D]``, as numpy arrays or torch CPU tensors (the output is the same kind).
    float32 on any backend (``dtype`` = the storage type inside the kernel: f32, f16, bf16);
    float64 on ``backend="reference"`` only (computed in f64 end to end).
    """
    v, loc, w, shapes = _inputs(_OP, value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    b, q, md = _rlipv2.check(shapes)
    out = _empty_like_kind(value, (b, q, md), v[3])
    _rlipv2.ms_deform_attn(shapes, [v[2], loc[2], w[2], _address(out)], backend, dtype, v[3] == "float64")
    return out


def ms_deform_attn_backward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
                            grad_output, backend="auto", dtype="f32"):
    """The gradients ``(grad_value, grad_sampling_locations, grad_attention_weights)`` of
    ``ms_deform_attn`` for ``grad_output [B,Q,M·D]``, each shaped as its input. Deterministic:
    the same inputs give bit-identical gradients on every backend, run to run."""
    op = "ms_deform_attn_backward"
    v, loc, w, shapes = _inputs(op, value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    g = _float_array(grad_output, "grad_output", op, v[3])
    b, q, md = _rlipv2.check(shapes)
    if g[1] != [b, q, md]:
        raise ValueError(f"{op}: tensor `grad_output` has shape {g[1]}, expected {[b, q, md]}")
    grads = [_empty_like_kind(value, s, v[3]) for s in (v[1], loc[1], w[1])]
    addrs = [v[2], loc[2], w[2], g[2]] + [_address(t) for t in grads]
    _rlipv2.ms_deform_attn_backward(shapes, addrs, backend, dtype, v[3] == "float64")
    return tuple(grads)


def backends():
    """Every backend: ``{"name", "available", "detail"}`` (the device, or why it cannot open)."""
    return [{"name": n, "available": ok, "detail": d} for n, ok, d in _rlipv2.backends()]


class Detector:
    """A model converted by ``rlipv2 convert``, on one backend (``auto``, ``cpu``, ``wgpu``,
    ``cubecl-wgpu``, ``cubecl-cuda``, ``reference``). ``tokenizer``: the roberta-base
    tokenizer.json, for label sets not baked into the model file."""

    def __init__(self, weights, backend="auto", tokenizer=None):
        self._d = _rlipv2.Detector(os.fspath(weights), backend, None if tokenizer is None else os.fspath(tokenizer))

    def detect(self, image_or_path, labels="hico", top_k=100, person_only=False, threshold=0.0):
        """⟨subject, verb, object⟩ detections, best first, as ``rlipv2 detect`` writes them:
        dicts with ``subject_box``, ``object_box`` (x1, y1, x2, y2 in pixels), ``object``,
        ``verb``, ``score`` and ``pair``. ``image_or_path``: a PNG/JPEG path, or an RGB
        ``uint8 [H,W,3]`` array. ``labels``: ``hico``, ``vcoco``, ``model`` (the head the
        checkpoint was fine-tuned for) or a JSON file of ``{"objects": [...], "verbs": [...]}``. ``person_only``: keep pairs whose subject is
        a person (the zero-shot evaluation)."""
        if not isinstance(top_k, int) or top_k < 0:
            raise ValueError(f"detect: top_k must be a non-negative integer, got {top_k!r}")
        if isinstance(image_or_path, (str, os.PathLike)):
            image = os.fspath(image_or_path)
        else:
            a = np.asarray(image_or_path)
            if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
                raise ValueError(f"detect: an image array must be uint8 [H,W,3] RGB, got {a.dtype} {list(a.shape)}")
            image = (a.shape[0], a.shape[1], np.ascontiguousarray(a).tobytes())
        return json.loads(self._d.detect_json(image, labels, top_k, bool(person_only), float(threshold)))

    def document(self, path, labels="hico", top_k=100, person_only=False, threshold=0.0):
        """The JSON line ``rlipv2 detect --format jsonl`` writes for the image file ``path``
        (a ``str``, byte for byte the CLI's: ``image`` as given, ``width``, ``height``,
        ``labels``, ``backend``, ``post``, ``model``, ``detections``). For dataset runs from
        Python (see ``python/examples/ray_detect.py``); raises ``ValueError`` for an undecodable
        image, ``OSError`` for one that cannot be opened."""
        if not isinstance(top_k, int) or top_k < 0:
            raise ValueError(f"document: top_k must be a non-negative integer, got {top_k!r}")
        return self._d.document_json(os.fspath(path), labels, top_k, bool(person_only), float(threshold))

    def info(self):
        """The model's configuration (variant, backbone, queries, …) and the backend."""
        return json.loads(self._d.info_json())
