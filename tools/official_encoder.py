"""Golden outputs of the official ALIF encoder (spec §2.5: `RLIPv2_DeformableTransformerEncoder`,
three VLFuse + RoBERTa-layer rounds before encoder layers 0, 2, 4, MSDA through its grid_sample
twin) on the image front of tools/official_image_front.py (same image, same formula weights) and
T = 7 language tokens given by a formula:

    /usr/bin/python3 tools/official_encoder.py OFFICIAL_REPO tests/fixtures/encoder_golden.json

Language token element j: frac((j·7919 + 11) mod 65521)·2 − 1.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import official_image_front as front  # noqa: E402
import official_model  # noqa: E402

T = 7
SAMPLES = 4096


def main(repo, out):
    import torch
    import torch.nn.functional as F

    model, _ = official_model.build(repo, 128)
    from util.misc import NestedTensor

    with torch.no_grad():
        for name, p in model.state_dict().items():
            if p.dtype == torch.float32:
                p.copy_(front.formula(name, list(p.shape)))
        H, W = front.H, front.W
        img = torch.tensor([front.frac(j * 104729 + 7, 65521) * 4 - 2 for j in range(3 * H * W)], dtype=torch.float64).float().reshape(1, 3, H, W)
        samples = NestedTensor(img, torch.zeros(1, H, W, dtype=torch.bool))
        features, pos = model.backbone(samples)
        srcs = [model.input_proj[l](f.tensors) for l, f in enumerate(features)]
        src = model.input_proj[len(features)](features[-1].tensors)
        mask = F.interpolate(samples.mask[None].float(), size=src.shape[-2:]).to(torch.bool)[0]
        srcs.append(src)
        pos.append(model.backbone[1](NestedTensor(src, mask)).to(src.dtype))
        le = model.transformer.level_embed
        src_flat = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
        pos_flat = torch.cat([p.flatten(2).transpose(1, 2) + le[l].view(1, 1, -1) for l, p in enumerate(pos)], 1)
        shapes = torch.tensor([list(s.shape[-2:]) for s in srcs], dtype=torch.long)
        starts = torch.cat((shapes.new_zeros((1,)), shapes.prod(1).cumsum(0)[:-1]))
        S = src_flat.shape[1]
        lang = torch.tensor([front.frac(j * 7919 + 11, 65521) * 2 - 1 for j in range(T * 768)], dtype=torch.float64).float().reshape(1, T, 768)
        memory, lang_states = model.transformer.encoder(src_flat, shapes, starts, torch.ones(1, 4, 2), pos_flat, torch.zeros(1, S, dtype=torch.bool), lang, torch.zeros(1, T, dtype=torch.bool))
    mem = memory[0].flatten()
    idx = [(k * 7919) % mem.numel() for k in range(SAMPLES)]
    lang_idx = [(k * 7919) % (T * 768) for k in range(1024)]
    json.dump({"generator": "tools/official_encoder.py", "t": T, "tokens": S,
               "positions": idx, "memory": [float(mem[i]) for i in idx], "memory_abs_sum": float(memory.double().abs().sum()),
               "lang_positions": lang_idx, "lang": [[float(lang_states[r, 0].flatten()[i]) for i in lang_idx] for r in range(lang_states.shape[0])]},
              open(out, "w"))
    print(memory.shape, lang_states.shape, float(memory.abs().mean()), float(lang_states.abs().mean()))


if __name__ == "__main__":
    main(os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]))
