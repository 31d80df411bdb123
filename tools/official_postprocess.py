"""Golden outputs of the official post-processing (spec §2.8): `PostProcessHOI` (models/hoi.py)
then the HICO evaluator's valid-pair mask, top-100 and triplet NMS (datasets/hico_eval.py), and
for Open Images (variants spec §3.2) `PostProcessSGG` then the OI evaluator's top-100 and pair
NMS (datasets/oi_sgg_eval.py; a synthetic set of 12 objects and 5 relations: the OI texts are not
in the repo, and the code does not depend on them), run on head outputs given by an exact formula
that tests/postprocess.rs reproduces:

    /usr/bin/python3 tools/official_postprocess.py OFFICIAL_REPO tests/fixtures/postprocess_golden.json

Needs what tools/official_model.py needs.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import official_model  # noqa: E402  (stubs for the official imports)


def frac(a, m):
    return (a % m) / m


# Pair i belongs to cluster i % 5: its boxes overlap the cluster's other pairs, its object logit
# for CLUSTER_OBJECTS[k] and its logit for the first verb valid with that object are raised, so
# whole clusters share one triplet and triplet NMS has work to do.
CLUSTER_OBJECTS = [0, 16, 38, 41, 56]


# the Open Images case's clusters (12 objects)
OI_CLUSTER_OBJECTS = [0, 3, 5, 8, 11]


def inputs(np_, t_obj, t_verb, correct_mat, clusters=CLUSTER_OBJECTS, sub_clustered=False):
    """Exact in f64, then rounded to f32 — the Rust test computes the same."""
    import numpy as np

    verb_of = {c: int(np.nonzero(correct_mat[:, c])[0][0]) for c in clusters}
    obj = np.array([[frac(i * 37 + c * 101 + 7, 211) * 10 - 6 + (8 if c == clusters[i % 5] else 0) for c in range(t_obj + 1)] for i in range(np_)])
    verb = np.array([[frac(i * 53 + v * 29 + 3, 199) * 12 - 8 + (6 if v == verb_of[clusters[i % 5]] else 0) for v in range(t_verb)] for i in range(np_)])
    # subjects: person raised on every third pair (HICO's zero-shot filter has work), or with
    # `sub_clustered` (Open Images) the cluster's object class raised, so that whole clusters share
    # one (subject, object, relation) triplet there too
    sub = np.array([[frac(i * 17 + c * 89 + 1, 193) * 10 - 5 + ((8 if c == clusters[i % 5] else 0) if sub_clustered else (6 if c == 0 and i % 3 == 0 else 0)) for c in range(t_obj + 1)] for i in range(np_)])

    def boxes(seed):
        # clustered so that triplet NMS has overlaps to suppress
        out = []
        for i in range(np_):
            k = i % 5
            cx = 0.15 + 0.17 * k + frac(i * seed + 3, 101) * 0.04
            cy = 0.3 + 0.1 * ((k * seed) % 4) + frac(i * 7 + seed, 89) * 0.04
            w = 0.1 + frac(i * 13 + seed, 97) * 0.2
            h = 0.1 + frac(i * 19 + seed, 83) * 0.3
            out.append([cx, cy, w, h])
        return np.array(out)

    f32 = lambda x: x.astype(np.float32)
    return f32(obj), f32(verb), f32(sub), f32(boxes(11)), f32(boxes(23))


def main(repo, out):
    import numpy as np
    import torch

    official_model.official_args(repo, 128)  # imports and stubs, chdir to the repo
    from models.hoi import PostProcessHOI
    from datasets.hico_eval import HICOEvaluator

    correct_mat = np.load("datasets/priors/corre_hico.npy")
    cases = []
    for name, zero_shot, nms, (h, w) in [("hico", False, True, (480, 640)), ("hico_zero_shot", True, True, (427, 333)), ("hico_no_nms", False, False, (800, 1200))]:
        np_ = 100
        obj, verb, sub, sb, ob = inputs(np_, 80, 117, correct_mat)
        outputs = {"pred_obj_logits": torch.tensor(obj)[None], "pred_verb_logits": torch.tensor(verb)[None], "pred_sub_boxes": torch.tensor(sb)[None], "pred_obj_boxes": torch.tensor(ob)[None], "pred_sub_logits": torch.tensor(sub)[None]}
        post = PostProcessHOI(subject_category_id=0, sigmoid=True, zero_shot_hoi_eval=zero_shot)
        preds = post(outputs, torch.tensor([[h, w]]))
        gts = [{"filename": "x", "id": 0, "boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "hois": torch.zeros(0, 3, dtype=torch.int64)}]
        ev_args = argparse.Namespace(use_nms_filter=nms, thres_nms=0.7, nms_alpha=1.0, nms_beta=0.5)
        ev = HICOEvaluator(preds, gts, 0, [], [], correct_mat, args=ev_args)
        p = ev.preds[0]
        boxes = p["predictions"]
        kept = [[int(x["subject_id"]), int(x["object_id"]), int(x["category_id"]), int(boxes[x["object_id"]]["category_id"]), float(x["score"]), [float(v) for v in boxes[x["subject_id"]]["bbox"]], [float(v) for v in boxes[x["object_id"]]["bbox"]]] for x in p["hoi_prediction"]]
        n_pairs = len(preds[0]["sub_ids"])
        cases.append({"name": name, "zero_shot": zero_shot, "nms": nms, "height": h, "width": w, "pairs_kept": n_pairs, "triplets": kept})
    # Open Images: PostProcessSGG, then OISGGEvaluator's top-100 and pair NMS
    from models.hoi import PostProcessSGG
    from datasets.oi_sgg_eval import OISGGEvaluator

    h, w = 600, 900
    obj, verb, sub, sb, ob = inputs(100, 12, 5, np.ones((5, 12)), OI_CLUSTER_OBJECTS, sub_clustered=True)
    outputs = {"pred_obj_logits": torch.tensor(obj)[None], "pred_verb_logits": torch.tensor(verb)[None], "pred_sub_boxes": torch.tensor(sb)[None], "pred_obj_boxes": torch.tensor(ob)[None], "pred_sub_logits": torch.tensor(sub)[None]}
    preds = PostProcessSGG(sigmoid=True)(outputs, torch.tensor([[h, w]]))
    gts = [{"filename": "x", "id": 0, "boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "rels": torch.zeros(0, 3, dtype=torch.int64)}]
    ev_args = argparse.Namespace(use_nms_filter=True, thres_nms=0.7, nms_alpha=1.0, nms_beta=0.5, thres_nms_phr=0.5)
    ev = OISGGEvaluator(preds, gts, None, topK=100, args=ev_args)
    p = ev.preds[0]
    boxes = p["predictions"]
    kept = [[int(x["subject_id"]), int(x["object_id"]), int(x["category_id"]), int(boxes[x["object_id"]]["category_id"]), float(x["score"]), [float(v) for v in boxes[x["subject_id"]]["bbox"]], [float(v) for v in boxes[x["object_id"]]["bbox"]], int(boxes[x["subject_id"]]["category_id"])] for x in p["rel_predictions"]]
    cases.append({"name": "oi", "zero_shot": False, "nms": True, "height": h, "width": w, "pairs_kept": 100, "triplets": kept, "objects": 12, "relations": 5})
    json.dump({"generator": "tools/official_postprocess.py", "cases": cases}, open(out, "w"), indent=0)
    print([(c["name"], c["pairs_kept"], len(c["triplets"])) for c in cases])


if __name__ == "__main__":
    main(os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]))
