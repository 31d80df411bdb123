"""NumPy's `argsort` permutations (default kind) for float32 arrays full of ties, NaN and both
signs of zero, the golden `src/eval/npsort.rs` is held to:

    /usr/bin/python3 tools/npsort_golden.py tests/fixtures/npsort_golden.json

Run with NumPy 1.x (Debian's 1.24: the introsort the official evaluators ran on; NumPy 2 on
AVX-512 machines sorts with x86-simd-sort, whose ties come out otherwise)."""
import json
import sys

import numpy as np

rng = np.random.default_rng(0)
cases = []
for n in [0, 1, 2, 3, 5, 16, 17, 18, 31, 64, 100, 257]:
    for ties in (2, 5, 1000):
        v = rng.integers(0, ties, n).astype(np.float32) / np.float32(ties)
        if n > 4 and ties == 5:
            v[rng.integers(0, n, 2)] = np.nan
            v[rng.integers(0, n, 2)] = -0.0
        cases.append({"values": [None if np.isnan(x) else float(x) for x in v], "argsort": np.argsort(v).tolist()})
# sorted, reversed and constant inputs (the partition's worst cases)
for v in (np.arange(300, dtype=np.float32), np.arange(300, 0, -1).astype(np.float32), np.zeros(300, np.float32)):
    cases.append({"values": [float(x) for x in v], "argsort": np.argsort(v).tolist()})
with open(sys.argv[1], "w") as f:
    json.dump({"numpy": np.__version__, "cases": cases}, f, separators=(",", ":"))
