"""Writes the built-in label sets from the official repository's data files into
src/model/labels/ (facts carried over from the official code, spec §2.4 and §2.8):

    python3 tools/label_sets.py OFFICIAL_REPO

hico_objects.txt    80 names, the keys of datasets/hico_object_names.txt in file order
hico_verbs.txt      117 names, the last column of datasets/hico_verb_names.txt, '_' → ' '
hico_valid_pairs.txt  datasets/priors/corre_hico.npy [117 verbs, 80 objects] as 117 lines of 0/1
vcoco_objects.txt, vcoco_verbs.txt   datasets/vcoco_names_v3.json
"""
import json
import os
import sys

import numpy as np

repo = sys.argv[1]
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "model", "labels")
d = lambda *p: os.path.join(repo, "datasets", *p)


def write(name, lines):
    with open(os.path.join(out, name), "w") as f:
        f.write("\n".join(lines) + "\n")


objects = list(json.load(open(d("hico_object_names.txt"))).keys())
verbs = [" ".join(line.strip().split(" ")[-1].split("_")) for line in open(d("hico_verb_names.txt"))]
valid = np.load(d("priors", "corre_hico.npy"))
assert len(objects) == 80 and len(verbs) == 117 and valid.shape == (117, 80)
write("hico_objects.txt", objects)
write("hico_verbs.txt", verbs)
write("hico_valid_pairs.txt", ["".join(str(int(x)) for x in row) for row in valid])
vcoco = json.load(open(d("vcoco_names_v3.json")))
write("vcoco_objects.txt", vcoco["object_names"])
write("vcoco_verbs.txt", vcoco["verb_names"])
print(len(objects), len(verbs), int(valid.sum()), len(vcoco["object_names"]), len(vcoco["verb_names"]))
