"""A dataset run on a Ray cluster: ``rlipv2.Detector`` as one actor per worker, over Ray Data
with ``map_batches``, writing what ``rlipv2 detect --format jsonl`` writes.

    python ray_detect.py --weights m.safetensors --images DIR [DIR|FILE ...] --out OUT \\
        [--actors 4] [--cpus-per-actor 4 | --gpus-per-actor 1 --backend auto] \\
        [--labels hico] [--top-k 100] [--threshold 0] [--person-only] [--address auto]

OUT/detections.jsonl gets one line per image, the CLI's line byte for byte (``Detector.document``
builds it with the same code), appended and flushed as results arrive; OUT/failures.jsonl gets
``{"error", "image"}`` per unreadable image, which is skipped. A rerun skips the images already
in OUT/detections.jsonl (the CLI's ``--resume``). Exits 1 if any image failed.

Each actor loads the model once and runs its share of the images; on CPU give each actor the
cores it may use (``--cpus-per-actor``, also its thread count), on GPUs one GPU per actor.
``--address auto`` joins a running cluster; without it a local one is started (``ray.init()``).
"""
import argparse
import json
import os
import sys
import time

import ray

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def list_images(inputs):
    """The CLI's listing: files as given, directories expanded one level in name order."""
    files = []
    for p in inputs:
        if os.path.isdir(p):
            for name in sorted(os.listdir(p)):
                f = os.path.join(p, name)
                if name.lower().endswith(IMAGE_EXTENSIONS) and not os.path.isdir(f):
                    files.append(f)
        else:
            files.append(p)
    return files


def stem(path):
    name = os.path.basename(path)
    i = name.rfind(".")
    return name[:i] if i > 0 else name


def done_and_clean(path):
    """Stems already in the output; a last line cut short by a killed run is dropped."""
    if not os.path.exists(path):
        return set()
    with open(path, "rb") as f:
        data = f.read()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(path, "r+b") as f:
            f.truncate(end)
    done = set()
    for line in data[:end].splitlines():
        try:
            done.add(stem(json.loads(line)["image"]))
        except (ValueError, KeyError, TypeError):
            pass
    return done


class DetectActor:
    """One per worker: loads the model once, then turns batches of paths into JSON lines."""

    def __init__(self, weights, backend, labels, top_k, threshold, person_only):
        import rlipv2

        self.detector = rlipv2.Detector(weights, backend=backend)
        self.args = dict(labels=labels, top_k=top_k, person_only=person_only, threshold=threshold)

    def __call__(self, batch):
        lines, errors = [], []
        for path in batch["path"]:
            try:
                lines.append(self.detector.document(str(path), **self.args))
                errors.append("")
            except (ValueError, OSError, RuntimeError) as e:
                lines.append("")
                errors.append(str(e))
        return {"path": batch["path"], "line": lines, "error": errors}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", required=True)
    ap.add_argument("--images", nargs="+", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--labels", default="hico")
    ap.add_argument("--top-k", type=int, default=100)
    ap.add_argument("--threshold", type=float, default=0.0)
    ap.add_argument("--person-only", action="store_true")
    ap.add_argument("--actors", type=int, default=1)
    ap.add_argument("--cpus-per-actor", type=int, default=1)
    ap.add_argument("--gpus-per-actor", type=float, default=0)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--address", default=None, help="a running cluster (`auto`); default: start a local one")
    a = ap.parse_args(argv)

    os.makedirs(a.out, exist_ok=True)
    out_path = os.path.join(a.out, "detections.jsonl")
    fail_path = os.path.join(a.out, "failures.jsonl")
    files = list_images(a.images)
    done = done_and_clean(out_path)
    todo = [f for f in files if stem(f) not in done]
    if os.path.exists(fail_path):
        os.remove(fail_path)  # this run's failures only: earlier ones are retried
    print(f"{len(files)} images, {len(files) - len(todo)} already in {out_path}", file=sys.stderr)
    failed = 0
    if todo:
        ray.init(address=a.address, include_dashboard=False, log_to_driver=False)
        ds = ray.data.from_items([{"path": f} for f in todo])
        ds = ds.map_batches(
            DetectActor,
            fn_constructor_kwargs=dict(
                weights=os.path.abspath(a.weights), backend=a.backend, labels=a.labels, top_k=a.top_k,
                threshold=a.threshold, person_only=a.person_only,
            ),
            compute=ray.data.ActorPoolStrategy(size=a.actors),
            batch_size=a.batch_size,
            batch_format="numpy",
            num_cpus=a.cpus_per_actor,
            num_gpus=a.gpus_per_actor,
            runtime_env={"env_vars": {"RAYON_NUM_THREADS": str(a.cpus_per_actor)}},
        )
        started = time.time()
        with open(out_path, "a", encoding="utf-8") as out, open(fail_path, "a", encoding="utf-8") as fails:
            for n, row in enumerate(ds.iter_rows(), 1):
                if row["error"]:
                    failed += 1
                    fails.write(json.dumps({"error": row["error"], "image": str(row["path"])}, ensure_ascii=False, separators=(",", ":")) + "\n")
                    fails.flush()
                    print(f"error: {row['error']} (skipped)", file=sys.stderr)
                else:
                    out.write(row["line"] + "\n")
                    out.flush()
                if n % 10 == 0 or n == len(todo):
                    rate = n / max(time.time() - started, 1e-9)
                    print(f"[{n}/{len(todo)}] {rate:.2f} images/s, eta {(len(todo) - n) / rate:.0f} s, {failed} failed", file=sys.stderr)
        ray.shutdown()
    if os.path.exists(fail_path) and failed == 0:
        os.remove(fail_path)
    print(f"done: {len(todo) - failed} images, failed: {failed}, already done: {len(files) - len(todo)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
