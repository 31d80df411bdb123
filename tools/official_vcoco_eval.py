"""A synthetic V-COCO evaluation set and the official numbers on it (spec §3.1).

    python tools/official_vcoco_eval.py OFFICIAL_REPO OUT [--images N] [--seed S]

writes, under the official file names,
    OUT/annotations/vcoco_test.json                V-COCO's per-action annotations (26 actions)
    OUT/annotations/instances_vcoco_all_2014.json  COCO instances of the same images
    OUT/annotations/vcoco_test.ids                 the split's image ids
    OUT/annotations/corre_vcoco.npy                a valid (verb, object) matrix [29, 80]
    OUT/detections/<image stem>.json               every query pair, as `rlipv2 detect --labels vcoco`
                                                   writes them (boxes, object, its score, verb sigmoids)
    OUT/expected.json                              the official agent and role APs
from head outputs drawn near the ground truth. The official code runs on them unchanged: the
`PostProcessHOI` class and the `generate` export loop of generate_vcoco_official.py (taken from
its source, since importing the script builds the whole training stack), then
`datasets/vsrl_eval.py`'s `VCOCOeval._do_eval`; its per-action APs are read off `voc_ap` as it
computes them. The set reaches the corners: unlabelled persons (ignored matches), ignored,
degenerate and clipped COCO boxes, persons without a role object (scenario 1 vs 2), pairs of the
`missing objects` label (NaN object boxes), many scores masked to 0 (ties: NumPy's unstable
argsort decides their order), an image without detections.

Run it with a Python that has Debian's python3-torch and numpy 1.x plus `pip install pycocotools
ipdb` (a venv with --system-site-packages).
"""
import argparse
import ast
import json
import os
import pickle
import random
import shutil
import sys
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import official_model  # noqa: E402  (stubs for the official imports)
from official_hico_eval import VALID_OBJ_IDS, f32  # noqa: E402

# the V-COCO actions and their roles, in the order of vcoco_test.json
ACTIONS = [
    ("hold", ["agent", "obj"]), ("stand", ["agent"]), ("sit", ["agent", "instr"]), ("ride", ["agent", "instr"]),
    ("walk", ["agent"]), ("look", ["agent", "obj"]), ("hit", ["agent", "instr", "obj"]), ("eat", ["agent", "obj", "instr"]),
    ("jump", ["agent", "instr"]), ("lay", ["agent", "instr"]), ("talk_on_phone", ["agent", "instr"]),
    ("carry", ["agent", "obj"]), ("throw", ["agent", "obj"]), ("catch", ["agent", "obj"]), ("cut", ["agent", "instr", "obj"]),
    ("run", ["agent"]), ("work_on_computer", ["agent", "instr"]), ("ski", ["agent", "instr"]), ("surf", ["agent", "instr"]),
    ("skateboard", ["agent", "instr"]), ("smile", ["agent"]), ("drink", ["agent", "instr"]), ("kick", ["agent", "obj"]),
    ("point", ["agent", "instr"]), ("read", ["agent", "obj"]), ("snowboard", ["agent", "instr"]),
]


def official(repo):
    """The official PostProcessHOI, generate, verb_classes and vsrl_eval module."""
    official_model.STUBBED.update({"torchvision"})
    sys.meta_path.append(official_model._StubFinder())
    tv = official_model._Stub("torchvision")
    tv.__version__ = "0.14.1"  # util/misc.py parses it
    sys.modules.setdefault("torchvision", tv)
    sys.modules.setdefault("ipdb", types.ModuleType("ipdb"))
    import numpy as np
    import torch
    if not hasattr(np, "bool"):
        np.bool = bool  # vsrl_eval.py predates NumPy 1.24
    os.chdir(repo)
    sys.path.insert(0, repo)
    import util.misc as utils
    from util.box_ops import box_cxcywh_to_xyxy
    pkg = types.ModuleType("datasets")
    pkg.__path__ = [os.path.join(repo, "datasets")]
    sys.modules["datasets"] = pkg
    import datasets.vsrl_eval as vsrl_eval
    src = open(os.path.join(repo, "generate_vcoco_official.py")).read()
    tree = ast.parse(src)
    keep = [n for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef)) and n.name in ("PostProcessHOI", "generate")]
    ns = {"torch": torch, "nn": torch.nn, "F": torch.nn.functional, "np": np, "utils": utils, "box_cxcywh_to_xyxy": box_cxcywh_to_xyxy}
    exec(compile(ast.Module(body=keep, type_ignores=[]), "generate_vcoco_official.py", "exec"), ns)
    verb_classes = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "verb_classes" for t in node.targets):
            verb_classes = ast.literal_eval(node.value)
    return ns["PostProcessHOI"], ns["generate"], verb_classes, vsrl_eval


def make_set(rng, n_images):
    """COCO instances, V-COCO annotations and the intended pairs per image."""
    cats = [{"id": c, "name": "person" if c == 1 else f"object{c}"} for c in VALID_OBJ_IDS]
    images, anns, vsrl_rows = [], [], []  # vsrl_rows: (image_id, person ann, {action: (label, [role objects])})
    ann_id = 1
    plan = []
    for i in range(n_images):
        img_id = 1000 + 37 * i
        w, h = rng.randrange(300, 640), rng.randrange(300, 640)
        images.append({"id": img_id, "width": w, "height": h, "file_name": f"COCO_val2014_{img_id:012d}.jpg"})

        def add(cat, box, **extra):
            nonlocal ann_id
            x, y, bw, bh = box
            anns.append({"id": ann_id, "image_id": img_id, "bbox": box, "area": max(bw * bh, 0.0), "iscrowd": 0, "category_id": cat, **extra})
            ann_id += 1
            return ann_id - 1, [x, y, x + max(0.0, bw - 1), y + max(0.0, bh - 1)]

        def rand_box():
            x, y = rng.uniform(0, w * 0.6), rng.uniform(0, h * 0.6)
            return [round(x, 2), round(y, 2), round(rng.uniform(30, w * 0.4), 2), round(rng.uniform(30, h * 0.4), 2)]

        objects = [add(rng.choice(VALID_OBJ_IDS[1:]), rand_box()) for _ in range(rng.randint(1, 3))]
        if i == 1:
            add(VALID_OBJ_IDS[5], rand_box(), ignore=1)  # ignored
            add(VALID_OBJ_IDS[6], [10.0, 10.0, 0.5, 40.0])  # no width after the −1: dropped
            add(VALID_OBJ_IDS[7], [w - 20.0, h - 20.0, 80.0, 80.0])  # clipped to the image
            add(VALID_OBJ_IDS[8], [5.0, 5.0, 30.0, 30.0], area=0.0)  # no segmentation area: dropped
        persons = [add(1, rand_box()) for _ in range(rng.randint(1, 3))]
        if i % 3 == 0:
            add(1, rand_box())  # a person V-COCO does not label: matches to it are ignored
        pairs = []
        for pid, pbox in persons:
            labels = {}
            for a, roles in ACTIONS:
                does = rng.random() < 0.18
                objs = []
                for _ in roles[1:]:
                    if does and rng.random() < 0.75:
                        objs.append(rng.choice(objects))
                    else:
                        objs.append(None)
                labels[a] = (1 if does else 0, [o[0] if o else 0 for o in objs])
                if does:
                    pairs.append((pbox, objs[0][1] if objs and objs[0] else None, a))
            vsrl_rows.append((img_id, pid, labels))
        plan.append((img_id, w, h, pairs, [o[1] for o in objects], [p[1] for p in persons]))
    vsrl = []
    for a, roles in ACTIONS:
        rows = [(img, pid, lab[a]) for img, pid, lab in vsrl_rows]
        if not any(r[2][0] == 1 for r in rows):  # every action has a positive
            img, pid, (_, objs) = rows[0]
            rows[0] = (img, pid, (1, objs))
        role_ids = [[pid for _, pid, _ in rows]] + [[r[2][1][k] for r in rows] for k in range(len(roles) - 1)]
        vsrl.append({
            "action_name": a, "role_name": roles,
            "image_id": [r[0] for r in rows], "ann_id": [r[1] for r in rows], "label": [r[2][0] for r in rows],
            "role_object_id": [x for col in role_ids for x in col],
        })
    coco = {"images": images, "annotations": anns, "categories": cats}
    return coco, vsrl, plan


def head_outputs(rng, w, h, pairs, objects, persons, verb_classes, noise):
    """Head outputs of one image: one pair per intended (person, object, action), jittered, plus
    noise pairs; a few pairs say `missing objects`."""
    import numpy as np
    import torch
    rows = []
    for pbox, obox, action in pairs:
        jit = lambda b, s: [v + rng.uniform(-s, s) for v in b]  # noqa: E731
        sb = jit(pbox, 4 if rng.random() < 0.8 else 60)
        ob = jit(obox, 4) if obox else jit(rng.choice(objects), 30)
        verbs = [k for k, c in enumerate(verb_classes) if c == action or c.startswith(action + "_")]
        label = 80 if (obox is None and rng.random() < 0.5) else rng.randrange(80)
        rows.append((sb, ob, label, verbs))
    for _ in range(noise):
        rows.append((rng.choice(persons), rng.choice(objects), rng.randrange(81), [rng.randrange(29)]))
    n = len(rows)
    obj_logits = np.array([[rng.gauss(0, 1) for _ in range(82)] for _ in range(n)], dtype=np.float32)
    verb_logits = np.array([[rng.gauss(-2, 1.5) for _ in range(29)] for _ in range(n)], dtype=np.float32)
    sub, obj = [], []
    for k, (sb, ob, label, verbs) in enumerate(rows):
        obj_logits[k, label] += 4
        for v in verbs:
            verb_logits[k, v] += 4

        def cxcywh(b):
            return [(b[0] + b[2]) / 2 / w, (b[1] + b[3]) / 2 / h, (b[2] - b[0]) / w, (b[3] - b[1]) / h]
        sub.append(cxcywh(sb))
        obj.append(cxcywh(ob))
    t = lambda a: torch.tensor(np.array(a, dtype=np.float32)).reshape(1, n, -1)  # noqa: E731
    return {"pred_obj_logits": t(obj_logits), "pred_verb_logits": t(verb_logits), "pred_sub_boxes": t(sub), "pred_obj_boxes": t(obj)}


def pairs_record(out, w, h, object_names):
    """What `rlipv2 detect --labels vcoco` writes in `pairs`: PostProcessHOI's own tensors."""
    import torch
    import torch.nn.functional as F
    from util.box_ops import box_cxcywh_to_xyxy
    obj_scores, obj_labels = F.softmax(out["pred_obj_logits"], -1)[..., :-1].max(-1)
    verb = out["pred_verb_logits"].sigmoid()
    scale = torch.tensor([w, h, w, h], dtype=torch.float32)
    sb = box_cxcywh_to_xyxy(out["pred_sub_boxes"]) * scale
    ob = box_cxcywh_to_xyxy(out["pred_obj_boxes"]) * scale
    recs = []
    for k in range(out["pred_verb_logits"].shape[1]):
        recs.append({
            "subject_box": [f32(x) for x in sb[0, k].tolist()], "object_box": [f32(x) for x in ob[0, k].tolist()],
            "object": object_names[int(obj_labels[0, k])], "object_score": f32(obj_scores[0, k].item()),
            "verb_scores": [f32(x) for x in verb[0, k].tolist()],
        })
    return recs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("repo")
    ap.add_argument("out")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    import numpy as np
    import torch
    out = os.path.abspath(a.out)
    here = os.path.dirname(os.path.abspath(__file__))
    object_names = [line.rstrip("\n") for line in open(os.path.join(here, "../src/model/labels/vcoco_objects.txt"))]
    PostProcessHOI, generate, verb_classes, vsrl_eval = official(os.path.abspath(a.repo))
    rng = random.Random(a.seed)
    coco, vsrl, plan = make_set(rng, a.images)
    correct = np.array([[1.0 if ("_" not in c or rng.random() < 0.5) else 0.0 for _ in range(80)] for c in verb_classes])

    ann, det_dir = os.path.join(out, "annotations"), os.path.join(out, "detections")
    for d in (ann, det_dir):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    paths = {k: os.path.join(ann, k) for k in ("vcoco_test.json", "instances_vcoco_all_2014.json", "vcoco_test.ids", "corre_vcoco.npy")}
    json.dump(vsrl, open(paths["vcoco_test.json"], "w"))
    json.dump(coco, open(paths["instances_vcoco_all_2014.json"], "w"))
    open(paths["vcoco_test.ids"], "w").write("".join(f"{p[0]}\n" for p in plan))
    np.save(paths["corre_vcoco.npy"], correct)

    # the official export over the images' head outputs
    outputs, loader = [], []
    for i, (img_id, w, h, pairs, objects, persons) in enumerate(plan):
        o = head_outputs(rng, w, h, pairs, objects, persons, verb_classes, noise=0 if i == 2 else rng.randint(1, 3))
        if i == 2:  # no detections at all for this image
            o = {k: v[:, :0] for k, v in o.items()}
        outputs.append(o)
        loader.append((torch.tensor([i]), [{"orig_size": torch.tensor([h, w]), "img_id": img_id}]))
        doc = {"image": f"COCO_val2014_{img_id:012d}.jpg", "width": w, "height": h, "labels": "vcoco",
               "backend": "official export", "post": {"top_k": 100, "threshold": 0.0, "nms": True, "person_only": False},
               "detections": [], "pairs": pairs_record(o, w, h, object_names)}
        with open(os.path.join(det_dir, f"COCO_val2014_{img_id:012d}.json"), "w") as f:
            json.dump(doc, f, separators=(",", ":"))

    class Model(torch.nn.Module):
        def forward(self, samples):
            return outputs[int(samples[0])]

    dets = generate(Model(), PostProcessHOI(200, 0, correct), loader, "cpu", verb_classes, 80)
    pkl = os.path.join(out, "official_export.pickle")
    with open(pkl, "wb") as f:
        pickle.dump(dets, f, protocol=2)

    aps = []
    original = vsrl_eval.voc_ap

    def recording(rec, prec):
        aps.append(original(rec, prec))
        return aps[-1]
    vsrl_eval.voc_ap = recording
    ev = vsrl_eval.VCOCOeval(paths["vcoco_test.json"], paths["instances_vcoco_all_2014.json"], paths["vcoco_test.ids"])
    ev._do_eval(pkl, ovr_thresh=0.5)
    os.remove(pkl)
    na = len(ev.actions)
    agent = np.array(aps[:na], dtype=np.float32)
    role_pairs = [(i, r) for i in range(na) for r in range(len(ev.roles[i]) - 1)]
    roles = []
    for s in range(2):
        role = np.full((na, 2), np.nan, dtype=np.float32)
        for k, (i, r) in enumerate(role_pairs):
            role[i, r] = aps[na + s * len(role_pairs) + k]
        roles.append(role)
    assert len(aps) == na + 2 * len(role_pairs)
    num = lambda x: None if np.isnan(x) else float(x)  # noqa: E731
    expected = {
        "verb_classes": verb_classes,
        "agent AP": float(np.nansum(agent) / na),
        "role AP scenario 1": float(np.nanmean(roles[0])), "role AP scenario 2": float(np.nanmean(roles[1])),
        "role AP scenario 1 without point": float((np.nanmean(roles[0]) * 25 - roles[0][-3][0]) / 24),
        "role AP scenario 2 without point": float((np.nanmean(roles[1]) * 25 - roles[1][-3][0]) / 24),
        "actions": [{"action": ev.actions[i], "agent_ap": num(agent[i]),
                     "role_ap_1": [num(x) for x in roles[0][i]], "role_ap_2": [num(x) for x in roles[1][i]]} for i in range(na)],
        "set": {"images": len(plan), "pairs": sum(o["pred_verb_logits"].shape[1] for o in outputs),
                "zero_scores": int(sum((d[k][-1] if isinstance(d[k], list) else d[k]) == 0 for d in dets for k in d if k not in ("image_id", "person_box")))},
    }
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    print(json.dumps({k: v for k, v in expected.items() if k not in ("actions", "verb_classes")}, indent=1))


if __name__ == "__main__":
    main()
