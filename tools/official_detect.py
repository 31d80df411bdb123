"""Golden head outputs of the official model end to end (hoi.py `RLIP_ParSeDA.forward` twice, as
engine.py evaluates: `encode_and_save=True` then the decoders and heads from the memory cache),
for the image, formula weights and language tokens of tools/official_encoder.py with
T = 6 object texts (the last standing for `no objects`) + 4 verb texts:

    /usr/bin/python3 tools/official_detect.py OFFICIAL_REPO tests/fixtures/detect_golden.json
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import official_image_front as front  # noqa: E402
import official_model  # noqa: E402

OBJECTS, VERBS = 6, 4


def main(repo, out):
    import torch

    model, _ = official_model.build(repo, 128)
    from util.misc import NestedTensor

    T = OBJECTS + VERBS
    with torch.no_grad():
        for name, p in model.state_dict().items():
            if p.dtype == torch.float32:
                p.copy_(front.formula(name, list(p.shape)))
        H, W = front.H, front.W
        img = torch.tensor([front.frac(j * 104729 + 7, 65521) * 4 - 2 for j in range(3 * H * W)], dtype=torch.float64).float().reshape(1, 3, H, W)
        samples = NestedTensor(img, torch.zeros(1, H, W, dtype=torch.bool))
        lang = torch.tensor([front.frac(j * 7919 + 11, 65521) * 2 - 1 for j in range(T * 768)], dtype=torch.float64).float().reshape(T, 1, 768)
        text = (torch.zeros(T, 1, dtype=torch.bool), lang, torch.tensor([[OBJECTS, VERBS]]))
        cache = model(samples, encode_and_save=True, text=text)
        outputs = model(samples, encode_and_save=False, memory_cache=cache)
    keys = ["pred_sub_logits", "pred_obj_logits", "pred_verb_logits", "pred_sub_boxes", "pred_obj_boxes"]
    json.dump({"generator": "tools/official_detect.py", "objects": OBJECTS, "verbs": VERBS, **{k: outputs[k][0].flatten().tolist() for k in keys}}, open(out, "w"))
    print({k: tuple(outputs[k].shape) for k in keys}, float(outputs["pred_verb_logits"].abs().mean()))


if __name__ == "__main__":
    main(os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]))
