"""Golden pre-processing (spec §5): the official eval transform — PIL `convert('RGB')`,
`T.RandomResize([800], max_size=1333)` (datasets/transforms.py: PIL bilinear with antialiasing),
`ToTensor`, `Normalize(ImageNet mean/std)` — on small synthetic images that this tool also writes:

    /usr/bin/python3 tools/official_preprocess.py OFFICIAL_REPO tests/fixtures

writes images/{rgb_64x48,rgba_100x40,gray_37x53,rgb_1600x300}.png and preprocess_golden.json (output size,
per-channel sums, and 512 sampled values per channel at positions (k·7919) mod (H·W)).
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import official_model  # noqa: E402


def images():
    from PIL import Image

    def pattern(w, h, mode):
        img = Image.new(mode, (w, h))
        px = img.load()
        for y in range(h):
            for x in range(w):
                r, g, b = (x * 37 + y * 11) % 256, (x * 5 + y * 53 + 17) % 256, ((x ^ y) * 29) % 256
                px[x, y] = {"RGB": (r, g, b), "RGBA": (r, g, b, (x * y) % 256), "L": (r + g) // 2}[mode]
        return img

    def smooth(w, h):
        # a downscale case: smooth ramps with a coarse checker (small as a PNG)
        img = Image.new("RGB", (w, h))
        px = img.load()
        for y in range(h):
            for x in range(w):
                v = 60 * (((x // 23) + (y // 17)) % 2)
                px[x, y] = ((x // 7) % 256, (y * 3 + v) % 256, (x // 13 + y // 5) % 256)
        return img

    return {"rgb_64x48.png": pattern(64, 48, "RGB"), "rgba_100x40.png": pattern(100, 40, "RGBA"), "gray_37x53.png": pattern(37, 53, "L"), "rgb_1600x300.png": smooth(1600, 300)}


def main(repo, out_dir):
    from PIL import Image

    official_model.official_args(repo, 128)  # imports with stubs; chdir to the repo
    import datasets.transforms as T

    transform = T.Compose([T.RandomResize([800], max_size=1333), T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    cases = []
    for name, img in images().items():
        path = os.path.join(out_dir, "images", name)
        img.save(path)
        rgb = Image.open(path).convert("RGB")  # as the official datasets load images
        t, _ = transform(rgb, None)
        c, h, w = t.shape
        flat = t.reshape(3, -1)
        pos = [(k * 7919) % (h * w) for k in range(512)]
        cases.append({"image": name, "height": h, "width": w, "sum": [float(flat[i].double().sum()) for i in range(3)], "positions": pos, "samples": [[float(flat[i, p]) for p in pos] for i in range(3)]})
        print(name, img.size, "->", (w, h))
    json.dump({"generator": "tools/official_preprocess.py", "cases": cases}, open(os.path.join(out_dir, "preprocess_golden.json"), "w"))


if __name__ == "__main__":
    main(os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]))
