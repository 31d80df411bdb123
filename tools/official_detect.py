"""Golden head outputs of the official model end to end (hoi.py `RLIP_ParSeDA.forward` twice, as
engine.py evaluates: `encode_and_save=True` then the decoders and heads from the memory cache),
for the images, formula weights and language tokens of tools/official_encoder.py with
T = 6 object texts (the last standing for `no objects`) + 4 verb texts:

    /usr/bin/python3 tools/official_detect.py OFFICIAL_REPO tests/fixtures/detect_golden.json
    /usr/bin/python3 tools/official_detect.py OFFICIAL_REPO tests/fixtures/detect_golden_parsed.json --variant parsed
    /usr/bin/python3 tools/official_detect.py OFFICIAL_REPO tests/fixtures/detect_golden_swin_tiny.json --backbone swin_tiny

(RLIP_ParSeDA_v2 with 128 queries, or RLIP_ParSeD_v2: FFN 1024, 200 queries, `RLIP_ParSeD.forward`.)
With `--batch`, the images of BATCH_SIZES go through one batched forward as the official
evaluation collates them (`util.misc.nested_tensor_from_tensor_list`: zero-padded to the largest
height and width, masks True on padding; the text repeated over the batch, engine.py:388), and
each image's outputs are written:

    /usr/bin/python3 tools/official_detect.py OFFICIAL_REPO tests/fixtures/detect_golden_batch.json --batch [--variant parsed]
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import official_image_front as front  # noqa: E402
import official_model  # noqa: E402

OBJECTS, VERBS = 6, 4
# three sizes padded to 64×104 (levels 8×13 … 1×2), each with a different valid extent per level
BATCH_SIZES = [(64, 96), (48, 80), (40, 104)]


KEYS = ["pred_sub_logits", "pred_obj_logits", "pred_verb_logits", "pred_sub_boxes", "pred_obj_boxes"]


def run(model, samples, batch):
    """Both official passes (encode_and_save, then the decoders from the memory cache) with the
    formula language tokens repeated over the batch."""
    import torch

    T = OBJECTS + VERBS
    lang = torch.tensor([front.frac(j * 7919 + 11, 65521) * 2 - 1 for j in range(T * 768)], dtype=torch.float64).float().reshape(T, 1, 768)
    text = (torch.zeros(T, batch, dtype=torch.bool), lang.repeat(1, batch, 1), torch.tensor([[OBJECTS, VERBS]]))
    cache = model(samples, encode_and_save=True, text=text)
    return model(samples, encode_and_save=False, memory_cache=cache)


def main(repo, out, variant, batched, backbone):
    import torch

    model = front.formula_model(repo, variant, backbone=backbone)
    from util.misc import nested_tensor_from_tensor_list  # the official repo is on the path now
    cases = []
    with torch.no_grad():
        if batched:
            samples = nested_tensor_from_tensor_list([front.image(H, W).tensors[0] for H, W in BATCH_SIZES])
            outputs = run(model, samples, len(BATCH_SIZES))
            for b, (H, W) in enumerate(BATCH_SIZES):
                cases.append({"height": H, "width": W, **{k: outputs[k][b].flatten().tolist() for k in KEYS}})
            print("batch", tuple(samples.tensors.shape), {k: tuple(outputs[k].shape) for k in KEYS})
        for H, W in [] if batched else front.SIZES:
            outputs = run(model, front.image(H, W), 1)
            cases.append({"height": H, "width": W, **{k: outputs[k][0].flatten().tolist() for k in KEYS}})
            print((H, W), {k: tuple(outputs[k].shape) for k in KEYS})
    golden = {"generator": "tools/official_detect.py", "variant": official_model.NAME[variant], "backbone": backbone,
              "queries": official_model.DEFAULT_QUERIES[variant], "objects": OBJECTS, "verbs": VERBS, "cases": cases}
    json.dump(golden, open(out, "w"))


if __name__ == "__main__":
    variant = sys.argv[sys.argv.index("--variant") + 1] if "--variant" in sys.argv else "parseda"
    backbone = sys.argv[sys.argv.index("--backbone") + 1] if "--backbone" in sys.argv else "resnet50"
    main(os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]), variant, "--batch" in sys.argv, backbone)
