"""Writes a full-size benchmark checkpoint that behaves like a trained RLIP_ParSeDA_v2 model, in the
official save format, plus the photo-like image it was calibrated on (issue 18: speed claims are
measured on this, not on the formula-weight test fixture, because speed can depend on values).

    /tmp/venv/bin/python tools/realistic_model.py OFFICIAL_REPO OUT.pth [--image OUT.png]
        [--backbone resnet50|swin_tiny|swin_large] [--queries 128] [--seed 0]

Calibration, on one forward of the official model over the image (CPU, fp32):
- every FrozenBatchNorm2d takes its running mean and variance from the activations it sees, as
  BatchNorm statistics of a trained network are (a pre-hook sets them just before it runs, so the
  layers after it already see calibrated inputs); its affine weights are drawn around 1 (around
  0.25 for the last BN of each bottleneck, as trained ResNets keep the residual branch small) and
  its biases slightly negative, so about half of the ReLU outputs are zero;
- every box MLP's last layer (zero in the official init) gets weights, so boxes move with the image;
- MSDA sampling offsets get per-query variation (about one level pixel) around the official grid
  initialisation, so they stay in the image, and the attention-weight projection is scaled so the
  softmax over levels × points is peaked rather than uniform;
- the text projection is scaled so the class logits spread (std ≈ 2 around the official prior
  bias −4.6, a constant), as a focal-loss-trained head's do.

It prints what the calibrated model does on the image (share of zero ReLU outputs, sampling
locations inside [0, 1], attention peak, logit spread, subnormal values per stage) so a reader can
see it is trained-like. Needs what tools/official_model.py needs, plus Pillow.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import official_model  # noqa: E402

H, W = 800, 1066  # the pre-processed size of a 4:3 photo: the resize keeps it as it is


def photo(seed):
    """A seeded photo-like RGB image (H×W×3 uint8): smooth lighting, overlapping objects with their
    own colour and texture, edges, and fine 1/f noise — statistics closer to a photo than noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    img = np.empty((H, W, 3), np.float32)
    base = rng.uniform(60, 200, 3)
    for c in range(3):
        img[..., c] = base[c] + 40 * np.sin(x / W * rng.uniform(1, 3) + rng.uniform(0, 6)) * np.cos(y / H * rng.uniform(1, 3))
    for _ in range(40):
        cy, cx = rng.uniform(0, H), rng.uniform(0, W)
        ry, rx = rng.uniform(20, 220), rng.uniform(20, 220)
        inside = ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 < 1 if rng.random() < 0.6 else (abs(y - cy) < ry) & (abs(x - cx) < rx)
        colour = rng.uniform(0, 255, 3)
        stripes = 20 * np.sin((x * rng.uniform(-0.3, 0.3) + y * rng.uniform(-0.3, 0.3)))
        for c in range(3):
            img[..., c][inside] = (colour[c] + stripes)[inside]
    # 1/f noise: white noise shaped in the frequency domain
    f = np.sqrt(np.fft.fftfreq(H)[:, None] ** 2 + np.fft.fftfreq(W)[None, :] ** 2)
    f[0, 0] = 1
    for c in range(3):
        n = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((H, W))) / f))
        img[..., c] += 12 * n / n.std()
    return np.clip(img, 0, 255).astype(np.uint8)


def tensor_of(img):
    import torch

    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    x = (img.astype(np.float32) / 255 - mean) / std
    return torch.from_numpy(x.astype(np.float32).transpose(2, 0, 1)).unsqueeze(0).contiguous()


def calibrate(model, samples, text, seed):
    import torch

    gen = torch.Generator().manual_seed(seed)
    frozen = [(n, m) for n, m in model.named_modules() if type(m).__name__ == "FrozenBatchNorm2d"]

    def bn_hook(name):
        def hook(m, inputs):
            x = inputs[0]
            m.running_mean.copy_(x.mean((0, 2, 3)))
            m.running_var.copy_(x.var((0, 2, 3)))
            last = name.endswith("bn3") or name.endswith("downsample.1")  # feeds the residual sum, no ReLU
            n = m.weight.numel()
            m.weight.copy_((0.25 if name.endswith("bn3") else 1.0) * (0.6 + 0.8 * torch.rand(n, generator=gen)))
            m.bias.copy_((0.0 if last else -0.1) + 0.2 * torch.randn(n, generator=gen))
        return hook

    handles = [m.register_forward_pre_hook(bn_hook(n)) for n, m in frozen]
    with torch.no_grad():
        for n, m in model.named_modules():
            if type(m).__name__ == "MSDeformAttn":
                d_in = m.sampling_offsets.weight.shape[1]
                m.sampling_offsets.weight.copy_(torch.randn(m.sampling_offsets.weight.shape, generator=gen) / d_in ** 0.5)
                m.attention_weights.weight.copy_(2.0 * torch.randn(m.attention_weights.weight.shape, generator=gen) / d_in ** 0.5)
            if type(m).__name__ == "MLP" and "bbox_embed" in n:
                # the official init zeroes each box MLP's last layer, so boxes would be the
                # input-independent anchors: a trained model's refine them per image
                last = m.layers[-1]
                last.weight.copy_(0.5 * torch.randn(last.weight.shape, generator=gen) / last.weight.shape[1] ** 0.5)
        cache = model(samples, encode_and_save=True, text=text)
        out = model(samples, encode_and_save=False, memory_cache=cache)
    for h in handles:
        h.remove()

    # the class head: logits are linear in projection_text's weights (plus the constant prior
    # bias_c = -4.6, not a parameter); aim at std 2
    with torch.no_grad():
        s = 2.0 / np.mean([float(out[k].std()) for k in ("pred_obj_logits", "pred_verb_logits")])
        model.projection_text.weight.mul_(s)
        model.projection_text.bias.mul_(s)
    return model


def report(model, samples, text):
    """What the calibrated model does on the image, stage by stage."""
    import torch

    tiny = torch.finfo(torch.float32).tiny
    stats = {}

    def count(stage):
        def hook(_m, _i, out):
            for t in (out if isinstance(out, (tuple, list)) else [out]):
                if isinstance(t, torch.Tensor) and t.is_floating_point():
                    s = stats.setdefault(stage, [0, 0, 0])
                    s[0] += t.numel()
                    s[1] += int(((t != 0) & (t.abs() < tiny)).sum())
                    s[2] += int((t == 0).sum())
        return hook

    handles, locs, peaks = [], [], []
    for n, m in model.named_modules():
        if len(list(m.children())):
            continue
        stage = ("backbone" if n.startswith("backbone") else "encoder" if ".encoder." in n or "fusion" in n.lower()
                 else "decoders" if "decoder" in n else "heads/other")
        handles.append(m.register_forward_hook(count(stage)))
        if n.endswith("attention_weights"):
            handles.append(m.register_forward_hook(lambda _m, _i, o: peaks.append(o.reshape(*o.shape[:-1], 8, -1).softmax(-1).amax(-1).mean().item())))
    import importlib

    mods = [importlib.import_module(m) for m in ("models.ops.modules.ms_deform_attn", "models.dab_deformable.ops.modules.ms_deform_attn")]
    twin = mods[0].MSDeformAttnFunction

    class Spy:  # the share of sampling locations inside the image, as MSDA receives them
        @staticmethod
        def apply(value, shapes, starts, loc, weights, step):
            locs.append(float(((loc >= 0) & (loc <= 1)).all(-1).float().mean()))
            return twin.apply(value, shapes, starts, loc, weights, step)

    for m in mods:
        m.MSDeformAttnFunction = Spy
    with torch.no_grad():
        cache = model(samples, encode_and_save=True, text=text)
        out = model(samples, encode_and_save=False, memory_cache=cache)
    for m in mods:
        m.MSDeformAttnFunction = twin
    for h in handles:
        h.remove()
    for stage, (n, sub, zero) in stats.items():
        print(f"  {stage}: {n / 1e6:.1f} M outputs, {100 * zero / n:.1f} % zeros, {sub} subnormal", flush=True)
    print(f"  MSDA: {100 * np.mean(locs):.1f} % of sampling locations inside the image")
    print(f"  MSDA attention: mean peak weight {np.mean(peaks):.3f} over its levels × points (uniform would be {1 / 16:.3f})")
    for k in ("pred_obj_logits", "pred_verb_logits", "pred_sub_boxes", "pred_obj_boxes"):
        t = out[k]
        print(f"  {k}: mean {t.mean():.2f}, std {t.std():.2f}, min {t.min():.2f}, max {t.max():.2f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("repo")
    p.add_argument("out")
    p.add_argument("--image", help="also write the calibration image here (PNG, 1066×800)")
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--queries", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    import torch
    from PIL import Image

    torch.manual_seed(a.seed)
    torch.set_num_threads(os.cpu_count())
    model, args = official_model.build(os.path.abspath(a.repo), a.queries, backbone=a.backbone)
    img = photo(a.seed)
    if a.image:
        Image.fromarray(img).save(a.image)
    from util.misc import NestedTensor

    samples = NestedTensor(tensor_of(img), torch.zeros(1, H, W, dtype=torch.bool))
    T = 198  # the HICO label tokens, as tools/official_time.py feeds them
    text = (torch.zeros(T, 1, dtype=torch.bool), torch.randn(T, 1, 768), torch.tensor([[81, 117]]))
    calibrate(model, samples, text, a.seed)
    print(f"calibrated {official_model.NAME['parseda']} {a.backbone} on a {W}×{H} photo-like image:", flush=True)
    report(model, samples, text)
    torch.save({"model": model.state_dict(), "optimizer": {}, "lr_scheduler": {}, "epoch": 0, "args": args}, a.out)
    print(f"wrote {a.out} ({os.path.getsize(a.out) / 1e6:.0f} MB)")


if __name__ == "__main__":
    main()
