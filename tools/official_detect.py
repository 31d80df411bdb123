"""Golden head outputs of the official model end to end (hoi.py `RLIP_ParSeDA.forward` twice, as
engine.py evaluates: `encode_and_save=True` then the decoders and heads from the memory cache),
for the images, formula weights and language tokens of tools/official_encoder.py with
T = 6 object texts (the last standing for `no objects`) + 4 verb texts:

    /usr/bin/python3 tools/official_detect.py OFFICIAL_REPO tests/fixtures/detect_golden.json
    /usr/bin/python3 tools/official_detect.py OFFICIAL_REPO tests/fixtures/detect_golden_parsed.json --variant parsed

(RLIP_ParSeDA_v2 with 128 queries, or RLIP_ParSeD_v2: FFN 1024, 200 queries, `RLIP_ParSeD.forward`.)
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import official_image_front as front  # noqa: E402
import official_model  # noqa: E402

OBJECTS, VERBS = 6, 4


def main(repo, out, variant):
    import torch

    model = front.formula_model(repo, variant)
    T = OBJECTS + VERBS
    keys = ["pred_sub_logits", "pred_obj_logits", "pred_verb_logits", "pred_sub_boxes", "pred_obj_boxes"]
    cases = []
    with torch.no_grad():
        for H, W in front.SIZES:
            samples = front.image(H, W)
            lang = torch.tensor([front.frac(j * 7919 + 11, 65521) * 2 - 1 for j in range(T * 768)], dtype=torch.float64).float().reshape(T, 1, 768)
            text = (torch.zeros(T, 1, dtype=torch.bool), lang, torch.tensor([[OBJECTS, VERBS]]))
            cache = model(samples, encode_and_save=True, text=text)
            outputs = model(samples, encode_and_save=False, memory_cache=cache)
            cases.append({"height": H, "width": W, **{k: outputs[k][0].flatten().tolist() for k in keys}})
            print((H, W), {k: tuple(outputs[k].shape) for k in keys})
    golden = {"generator": "tools/official_detect.py", "variant": official_model.NAME[variant],
              "queries": official_model.DEFAULT_QUERIES[variant], "objects": OBJECTS, "verbs": VERBS, "cases": cases}
    json.dump(golden, open(out, "w"))


if __name__ == "__main__":
    variant = sys.argv[sys.argv.index("--variant") + 1] if "--variant" in sys.argv else "parseda"
    main(os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]), variant)
