"""A synthetic HICO-DET evaluation set and the official evaluator's numbers on it (spec §5).

    /usr/bin/python3 tools/official_hico_eval.py OFFICIAL_REPO OUT [--images N] [--seed S]

writes, in the official layout,
    OUT/annotations/test_hico.json, trainval_hico.json, hoi_list_new.json, corre_hico.npy
    OUT/detections/<image stem>.json   the evaluator's per-image list after its valid-pair mask,
                                       top-100 and triplet NMS, in `rlipv2 detect`'s format
    OUT/expected.json                  the official numbers for the Default setting and the
                                       zero-shot splits UC-RF, UC-NF and UO
The rare/non-rare and seen/unseen splits and the correct matrix come from the official `build`
(datasets/hico.py), the numbers from the official `HICOEvaluator` (datasets/hico_eval.py), both
run on these files. The set is built to reach the evaluator's corners: rare, non-rare and
unlisted triplets, duplicated ground-truth HOIs, a subject that is not a person, pairs that triplet
NMS suppresses, boxes at IoU 0.5 exactly, wrong object labels, images without ground-truth boxes
and images without detections.

Needs Debian's python3-torch (numpy, torch); the official imports it does not need are stubbed.
"""
import argparse
import json
import os
import random
import shutil
import sys
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import official_model  # noqa: E402  (stubs for the official imports)

VERBS = 117
STATS = {"pairs at IoU 0.5 exactly": 0, "pairs with a random object label": 0}
# COCO ids of the 80 HICO objects (hico.py:46-53; checked against the built dataset below)
VALID_OBJ_IDS = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31,
    32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57,
    58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87,
    88, 89, 90]


def f32(x):
    """The shortest decimal that reads back as this float32 (keeps the committed files small)."""
    import numpy as np
    return float(str(np.float32(x)))


def import_official(repo):
    official_model.STUBBED.update({"torchvision", "scipy"})
    sys.meta_path.append(official_model._StubFinder())
    tv = official_model._Stub("torchvision")
    tv.__version__ = "0.14.1"  # util/misc.py parses it
    sys.modules.setdefault("torchvision", tv)
    import PIL.Image  # noqa: F401  (datasets/transforms.py uses PIL.Image after a bare `import PIL`)
    plt = types.ModuleType("matplotlib.pyplot")
    sys.modules.setdefault("matplotlib.pyplot", plt)
    os.chdir(repo)  # label texts are read relative to the repository
    sys.path.insert(0, repo)
    # the package without its __init__ (which imports every dataset, COCO's among them)
    pkg = types.ModuleType("datasets")
    pkg.__path__ = [os.path.join(repo, "datasets")]
    sys.modules["datasets"] = pkg
    import datasets.hico as hico  # noqa: E402
    import datasets.hico_eval as hico_eval  # noqa: E402
    return hico, hico_eval


def box_at_half_iou(b):
    """A box whose IoU with `b` is exactly 0.5 under the +1-pixel convention (`b` has an even
    +1-height): the top half of `b`."""
    x1, y1, x2, y2 = b
    h = y2 - y1 + 1
    return [x1, y1, x2, y1 + h // 2 - 1]


def jitter(rng, b, amount):
    return [v + rng.uniform(-amount, amount) for v in b]


def make_sets(rng, n_images, correct_mat, valid_obj_ids):
    """Test and trainval annotations (PPDM format) and the raw predictions per test image."""
    # a small pool of (object label, verb) pairs valid in the correct matrix, so triplets repeat
    valid = [(o, v) for v in range(VERBS) for o in range(80) if correct_mat[v, o] == 1]
    rng.shuffle(valid)
    pool = valid[:14]
    test, raw = [], []
    for i in range(n_images):
        name = f"HICO_test2015_{i + 1:08d}.jpg"
        w, h = rng.randrange(300, 700), rng.randrange(300, 700)
        boxes, hois = [], []
        no_gt = i == 2
        if not no_gt:
            for _ in range(rng.randint(1, 3)):
                x1, y1 = rng.randrange(0, w // 2), rng.randrange(0, h // 2)
                boxes.append({"bbox": [x1, y1, x1 + rng.randrange(20, w // 2), y1 + 2 * rng.randrange(10, h // 4) - 1], "category_id": 1})
            n_person = len(boxes)
            for _ in range(rng.randint(1, 3)):
                o, v = rng.choice(pool)
                x1, y1 = rng.randrange(0, w // 2), rng.randrange(0, h // 2)
                boxes.append({"bbox": [x1, y1, x1 + rng.randrange(20, w // 2), y1 + 2 * rng.randrange(10, h // 4) - 1], "category_id": valid_obj_ids[o]})
                s = rng.randrange(n_person)
                hois.append({"subject_id": s, "object_id": len(boxes) - 1, "category_id": v + 1})
                if rng.random() < 0.3:  # a second verb on the same pair
                    o2 = boxes[-1]["category_id"]
                    more = [vv for (oo, vv) in pool if valid_obj_ids[oo] == o2 and vv != v]
                    if more:
                        hois.append({"subject_id": s, "object_id": len(boxes) - 1, "category_id": more[0] + 1})
            if i == 4:  # a duplicated ground-truth HOI: counted twice, matchable once
                hois.append(dict(hois[0]))
            if i == 5 and len(boxes) > n_person:  # a subject that is not a person
                hois.append({"subject_id": len(boxes) - 1, "object_id": 0, "category_id": hois[0]["category_id"]})
        test.append({"file_name": name, "img_size": [h, w], "annotations": boxes, "hoi_annotation": hois})

        # raw predictions (PostProcessHOI's output): pairs near ground-truth pairs, some exact,
        # some at IoU 0.5, some with the wrong object label, duplicates for NMS, and noise
        pairs = []
        if i != 3:  # image 3 has no detections
            for hoi in hois:
                sb, ob = boxes[hoi["subject_id"]]["bbox"], boxes[hoi["object_id"]]["bbox"]
                ol = valid_obj_ids.index(boxes[hoi["object_id"]]["category_id"])
                kind = rng.random()
                if kind < 0.15:
                    sb2, ob2 = box_at_half_iou(sb), list(ob)
                    STATS["pairs at IoU 0.5 exactly"] += 1
                elif kind < 0.3:
                    sb2, ob2 = list(sb), box_at_half_iou(ob)
                    STATS["pairs at IoU 0.5 exactly"] += 1
                elif kind < 0.4:
                    sb2, ob2 = jitter(rng, sb, 60), jitter(rng, ob, 60)  # a miss
                else:
                    sb2, ob2 = jitter(rng, sb, 3), jitter(rng, ob, 3)
                if rng.random() < 0.1:
                    ol = rng.randrange(80)
                    STATS["pairs with a random object label"] += 1
                pairs.append((sb2, ob2, ol, hoi["category_id"] - 1))
                if rng.random() < 0.4:  # a near-duplicate: triplet NMS suppresses one of the two
                    pairs.append((jitter(rng, sb2, 1), jitter(rng, ob2, 1), ol, hoi["category_id"] - 1))
            for _ in range(rng.randint(0, 2)):  # noise pairs with pool triplets
                o, v = rng.choice(pool)
                x1, y1 = rng.uniform(0, w / 2), rng.uniform(0, h / 2)
                pairs.append(([x1, y1, x1 + 50, y1 + 80], [x1 + 20, y1 + 10, x1 + 90, y1 + 60], o, v))
        raw.append((w, h, pairs))

    # trainval: counts per pool triplet chosen to make rare (< 10), non-rare and a borderline 10;
    # one pool triplet never appears (neither rare nor non-rare: Full only)
    train = []
    counts = [1, 3, 9, 10, 12, 25] + [rng.choice([2, 5, 11, 30]) for _ in pool[6:-1]] + [0]
    k = 0
    for (o, v), c in zip(pool, counts):
        for _ in range(c):
            train.append({"file_name": f"HICO_train2015_{k:08d}.jpg", "annotations": [{"bbox": [0, 0, 10, 10], "category_id": 1}, {"bbox": [5, 5, 20, 20], "category_id": valid_obj_ids[o]}], "hoi_annotation": [{"subject_id": 0, "object_id": 1, "category_id": v + 1}]})
            k += 1
    return test, train, raw, valid


def raw_to_official(rng, w, h, pairs):
    """One image's predictions as PostProcessHOI returns them."""
    import numpy as np
    import torch
    k = len(pairs)
    scores = np.zeros((k, VERBS), dtype=np.float32)
    for p, (_, _, _, v) in enumerate(pairs):
        # every verb gets a small score, the pair's own a high one (distinct values: no ties)
        scores[p] = np.array([rng.uniform(0.001, 0.2) for _ in range(VERBS)], dtype=np.float32)
        scores[p, v] = rng.uniform(0.3, 0.99)
    boxes = [p[0] for p in pairs] + [p[1] for p in pairs]
    return {
        "labels": torch.tensor([0] * k + [p[2] for p in pairs], dtype=torch.int64),
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "verb_scores": torch.from_numpy(scores),
        "sub_ids": torch.arange(k),
        "obj_ids": torch.arange(k, 2 * k),
    }


def gt_target(dataset, idx):
    """The val branch of HICODetection.__getitem__ (hico.py:163-188), without opening the image."""
    import torch
    anno = dataset.annotations[idx]
    return {
        "filename": anno["file_name"],
        "boxes": torch.as_tensor([b["bbox"] for b in anno["annotations"]], dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor([dataset._valid_obj_ids.index(b["category_id"]) for b in anno["annotations"]], dtype=torch.int64),
        "id": idx,
        "hois": torch.as_tensor([(x["subject_id"], x["object_id"], dataset._valid_verb_ids.index(x["category_id"])) for x in anno["hoi_annotation"]], dtype=torch.int64),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("repo")
    ap.add_argument("out")
    ap.add_argument("--images", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    import numpy as np
    out = os.path.abspath(a.out)
    repo = os.path.abspath(a.repo)
    hico, hico_eval = import_official(repo)
    rng = random.Random(a.seed)
    correct_mat = np.load(os.path.join(repo, "datasets/priors/corre_hico.npy"))
    valid_obj_ids = VALID_OBJ_IDS
    test, train, raw, valid = make_sets(rng, a.images, correct_mat, valid_obj_ids)

    ann = os.path.join(out, "annotations")
    det_dir = os.path.join(out, "detections")
    for d in (ann, det_dir):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    with open(os.path.join(ann, "test_hico.json"), "w") as f:
        json.dump(test, f)
    with open(os.path.join(ann, "trainval_hico.json"), "w") as f:
        json.dump(train, f)
    # the 600 HOI classes: id (1-based), COCO object id, verb id; any order of the valid pairs
    hoi_list = [{"id": f"{n + 1:03d}", "object_cat": valid_obj_ids[o], "verb_id": v + 1} for n, (o, v) in enumerate(sorted(valid, key=lambda p: (p[1], p[0])))]
    with open(os.path.join(ann, "hoi_list_new.json"), "w") as f:
        json.dump(hoi_list, f)
    np.save(os.path.join(ann, "corre_hico.npy"), correct_mat)

    object_names = [line.rstrip("\n") for line in open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "../src/model/labels/hico_objects.txt"))]
    verb_names = [line.rstrip("\n") for line in open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "../src/model/labels/hico_verbs.txt"))]
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    eval_args = types.SimpleNamespace(use_nms_filter=True, thres_nms=0.7, nms_alpha=1.0, nms_beta=0.5)
    expected = {}
    written = False
    for setting in (None, "UC-RF", "UC-NF", "UO"):
        args = types.SimpleNamespace(hoi_path=out, few_shot_transfer=100, zero_shot_setting=setting, relation_label_noise=0, DETRHOIhm=False, num_queries=200, use_correct_subject_category_hico=False)
        dataset = hico.build("val", args)
        assert list(dataset._valid_obj_ids) == VALID_OBJ_IDS
        gts = [gt_target(dataset, i) for i in range(len(dataset))]
        prng = random.Random(a.seed + 1)  # the same predictions for every setting
        preds = [raw_to_official(prng, w, h, pairs) for (w, h, pairs) in raw]
        ev = hico_eval.HICOEvaluator(preds, gts, 0, dataset.rare_triplets, dataset.non_rare_triplets, dataset.correct_mat, eval_args)
        if not written:
            STATS["detections after top-100"] = sum(min(100, 117 * len(p)) for (_, _, p) in raw)
            STATS["detections after NMS"] = sum(len(img["hoi_prediction"]) for img in ev.preds)
            STATS["images"] = len(raw)
            STATS["images without ground-truth boxes"] = sum(1 for t in test if not t["annotations"])
            STATS["images without detections"] = sum(1 for (_, _, p) in raw if not p)
            STATS["duplicated ground-truth HOIs"] = sum(len(t["hoi_annotation"]) - len({tuple(sorted(h.items())) for h in t["hoi_annotation"]}) for t in test)
            for img, (w, h, _) in zip(ev.preds, raw):
                boxes = img["predictions"]
                dets = []
                for hoi in img["hoi_prediction"]:
                    s, o = hoi["subject_id"], hoi["object_id"]
                    dets.append({
                        "subject_box": [f32(x) for x in boxes[s]["bbox"]],
                        "object_box": [f32(x) for x in boxes[o]["bbox"]],
                        "object": object_names[int(boxes[o]["category_id"])],
                        "verb": verb_names[int(hoi["category_id"])],
                        "score": f32(hoi["score"]),
                        "pair": int(s),
                    })
                stem = os.path.splitext(img["filename"])[0]
                doc = {"image": img["filename"], "width": w, "height": h, "labels": "hico", "backend": "official evaluator",
                       "post": {"top_k": 100, "threshold": 0.0, "nms": True, "person_only": False}, "detections": dets}
                with open(os.path.join(det_dir, stem + ".json"), "w") as f:
                    json.dump(doc, f, separators=(",", ":"))
            written = True
        stats = ev.evaluate()
        expected[(setting or "default").lower()] = {
            k: (None if np.isnan(v) else float(v)) for k, v in stats.items()
        } | {"rare_triplets": len(dataset.rare_triplets), "non_rare_triplets": len(dataset.non_rare_triplets), "test_triplets": len(ev.gt_triplets)}
    expected["set"] = STATS
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    print(json.dumps(expected, indent=1))


if __name__ == "__main__":
    main()
