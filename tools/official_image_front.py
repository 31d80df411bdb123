"""Golden outputs of the official image front (spec §2.2-2.3): R50 backbone (FrozenBN), the four
input projections with GroupNorm, sine positions + level embed, flattened level-major — the
`src_flatten` and `lvl_pos_embed_flatten` the encoder receives — for a small image, with every
weight given by a formula that the Rust tests reproduce (tests/common/mod.rs `formula_weight`):

    /usr/bin/python3 tools/official_image_front.py OFFICIAL_REPO tests/fixtures/image_front_golden.json
    /usr/bin/python3 tools/official_image_front.py OFFICIAL_REPO tests/fixtures/image_front_golden_swin_tiny.json --backbone swin_tiny

Weight `name` (shape s), element j: v = frac((j·7919 + Σbytes(name)·104729) mod 65521)·2 − 1, then
  conv/linear weights (rank ≥ 2, except embedding tables): v·√(3/fan_in);   BN/GN/LN weight: 1 + 0.1·v;
  running_var: 1 + 0.5·v;   biases, running_mean: 0.1·v;   other rank-1/2 tensors: v.
Images [1,3,H,W] for (H, W) in SIZES, element j: frac((j·104729 + 7) mod 65521)·4 − 2.
"""
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import official_model  # noqa: E402

# two image sizes (levels 8×12 … 1×2 and 6×10 … 1×2)
SIZES = [(64, 96), (48, 80)]
SAMPLES = 4096


def frac(a, m):
    return (a % m) / m


def embedding(name):
    """Lookup tables (queries, anchors, level and text embeddings) keep v; the box MLPs
    (`*_bbox_embed.*.layers.*`) are linear layers."""
    return name.endswith("_embed.weight") or name == "transformer.level_embed" or "embeddings" in name


def formula(name, shape):
    import torch

    n = 1
    for d in shape:
        n *= d
    s = sum(name.encode())
    v = [frac(j * 7919 + s * 104729, 65521) * 2 - 1 for j in range(n)]
    last = name.rsplit(".", 1)[-1]
    norm = any(k in name for k in ("bn", "norm", "LayerNorm", ".downsample.1.")) or (name.startswith("input_proj.") and name.split(".")[2] == "1")
    if last == "running_var":
        v = [1 + 0.5 * x for x in v]
    elif last in ("running_mean", "bias") and len(shape) == 1:
        v = [0.1 * x for x in v]
    elif norm and last == "weight" and len(shape) == 1:
        v = [1 + 0.1 * x for x in v]
    elif len(shape) >= 2 and not embedding(name):
        fan_in = n // shape[0]
        v = [x * math.sqrt(3 / fan_in) for x in v]
    return torch.tensor(v, dtype=torch.float64).float().reshape(shape)


def formula_model(repo, variant="parseda", queries=None, backbone="resnet50"):
    """The official model (`variant` and `backbone` as in tools/official_model.py, num_queries
    its HICO-DET script's unless given) with every float tensor set by `formula`."""
    import torch

    queries = queries or official_model.DEFAULT_QUERIES[variant]
    model, _ = official_model.build(repo, queries, variant=variant, backbone=backbone)
    with torch.no_grad():
        for name, p in model.state_dict().items():
            if p.dtype == torch.float32:
                p.copy_(formula(name, list(p.shape)))
    return model


def image(H, W):
    import torch
    from util.misc import NestedTensor

    img = torch.tensor([frac(j * 104729 + 7, 65521) * 4 - 2 for j in range(3 * H * W)], dtype=torch.float64).float().reshape(1, 3, H, W)
    return NestedTensor(img, torch.zeros(1, H, W, dtype=torch.bool))


def run_front(model, samples):
    """(src_flatten [1,S,256], lvl_pos_embed_flatten [1,S,256], shapes, C5) as hoi.py and the
    transformer prepare them for one unpadded image."""
    import torch
    import torch.nn.functional as F
    from util.misc import NestedTensor

    features, pos = model.backbone(samples)
    srcs = [model.input_proj[l](f.tensors) for l, f in enumerate(features)]
    # the fourth level: a 3×3/s2 projection of C5, its mask resized from the image mask
    src = model.input_proj[len(features)](features[-1].tensors)
    mask = F.interpolate(samples.mask[None].float(), size=src.shape[-2:]).to(torch.bool)[0]
    srcs.append(src)
    pos.append(model.backbone[1](NestedTensor(src, mask)).to(src.dtype))
    le = model.transformer.level_embed
    src_flat = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
    pos_flat = torch.cat([p.flatten(2).transpose(1, 2) + le[l].view(1, 1, -1) for l, p in enumerate(pos)], 1)
    return src_flat, pos_flat, [list(s.shape[-2:]) for s in srcs], features[-1].tensors


def main(repo, out, backbone):
    import torch

    model = formula_model(repo, backbone=backbone)
    cases = []
    with torch.no_grad():
        for H, W in SIZES:
            src_flat, pos_flat, shapes, c5 = run_front(model, image(H, W))
            src_flat, pos_flat = src_flat[0], pos_flat[0]
            total = src_flat.numel()
            idx = [(k * 7919) % total for k in range(SAMPLES)]
            fs, fp = src_flat.flatten(), pos_flat.flatten()
            cases.append({"height": H, "width": W, "spatial_shapes": shapes,
                          "src_sum": float(src_flat.double().sum()), "pos_sum": float(pos_flat.double().sum()),
                          "src_abs_sum": float(src_flat.double().abs().sum()),
                          "positions": idx, "src": [float(fs[i]) for i in idx], "pos": [float(fp[i]) for i in idx],
                          "c5_sum": float(c5.double().sum())})
            print((H, W), shapes, float(src_flat.abs().mean()))
    json.dump({"generator": "tools/official_image_front.py", "backbone": backbone, "cases": cases}, open(out, "w"))


if __name__ == "__main__":
    backbone = sys.argv[sys.argv.index("--backbone") + 1] if "--backbone" in sys.argv else "resnet50"
    main(os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]), backbone)
