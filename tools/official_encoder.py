"""Golden outputs of the official ALIF encoder (spec §2.5: `RLIPv2_DeformableTransformerEncoder`,
three VLFuse + RoBERTa-layer rounds before encoder layers 0, 2, 4, MSDA through its grid_sample
twin) on the image front of tools/official_image_front.py (same images, same formula weights) and
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

    model = front.formula_model(repo)
    cases = []
    with torch.no_grad():
        for H, W in front.SIZES:
            src_flat, pos_flat, shapes, _ = front.run_front(model, front.image(H, W))
            shapes = torch.tensor(shapes, dtype=torch.long)
            starts = torch.cat((shapes.new_zeros((1,)), shapes.prod(1).cumsum(0)[:-1]))
            S = src_flat.shape[1]
            lang = torch.tensor([front.frac(j * 7919 + 11, 65521) * 2 - 1 for j in range(T * 768)], dtype=torch.float64).float().reshape(1, T, 768)
            memory, lang_states = model.transformer.encoder(src_flat, shapes, starts, torch.ones(1, 4, 2), pos_flat, torch.zeros(1, S, dtype=torch.bool), lang, torch.zeros(1, T, dtype=torch.bool))
            mem = memory[0].flatten()
            idx = [(k * 7919) % mem.numel() for k in range(SAMPLES)]
            lang_idx = [(k * 7919) % (T * 768) for k in range(1024)]
            cases.append({"height": H, "width": W, "tokens": S, "positions": idx, "memory": [float(mem[i]) for i in idx],
                          "lang_positions": lang_idx, "lang": [[float(lang_states[r, 0].flatten()[i]) for i in lang_idx] for r in range(lang_states.shape[0])]})
            print((H, W), memory.shape, lang_states.shape, float(memory.abs().mean()))
    json.dump({"generator": "tools/official_encoder.py", "t": T, "cases": cases}, open(out, "w"))


if __name__ == "__main__":
    main(os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]))
