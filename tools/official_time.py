"""Times the official model end to end, as the speed targets compare: the RLIP_ParSeDA_v2 R50 graph
that tools/official_model.py builds, fp32, an 800×1066 image, the 198 HICO label tokens given (text
encoder not run, as `rlipv2 detect` uses baked label embeddings), `encode_and_save` then the
decoders and heads — the two calls engine.py makes per image:

    /usr/bin/python3 tools/official_time.py OFFICIAL_REPO [RUNS]                # CPU, grid_sample MSDA
    python3 tools/official_time.py OFFICIAL_REPO [RUNS] --cuda [--msda-src DIR]  # GPU

`--backbone swin_tiny|swin_large` times that backbone's model instead; `--save-pth FILE` also
writes the model it timed (PyTorch's default initialization, seed 0) in the official save format,
so `rlipv2 convert` + `rlipv2 detect` can be timed on the very same weights. `--weights FILE.pth`
times a checkpoint in the official save format instead (the realistic benchmark model of
tools/realistic_model.py), and `--image FILE.png` an image (already at its pre-processed size,
e.g. the 1066×800 one realistic_model.py writes) instead of Gaussian noise.

On the GPU the model runs in fp32 with PyTorch's defaults (cuDNN convolutions may use TF32,
matmuls do not); MSDA is the official CUDA op built from DIR (the official `models/ops/src`,
see tools/msda_cuda_official_bench.py) or, without DIR or if the build fails, its grid_sample
twin — the line printed says which. Each run is timed wall-clock between device syncs, after
two warm-up runs. Prints one line; with $OUT set also writes $OUT/official_time.json.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import official_model  # noqa: E402


def main(repo, runs, cuda, msda_src, backbone="resnet50", save=None, weights=None, image=None):
    import torch

    op, msda = None, "grid_sample twin"
    if cuda and msda_src:
        try:
            import msda_cuda_official_bench
            op = msda_cuda_official_bench.build(os.path.abspath(msda_src))
            msda = "official CUDA op"
        except Exception as e:  # the twin still gives a (slower) official time: say so
            msda = f"grid_sample twin (op build failed: {repr(e)[:300]})"
    torch.manual_seed(0)
    model, args = official_model.build(repo, 128, msda_op=op, backbone=backbone)
    if weights:
        model.load_state_dict(torch.load(weights, map_location="cpu")["model"])
    if save:
        torch.save({"model": model.state_dict(), "optimizer": {}, "lr_scheduler": {}, "epoch": 0, "args": args}, save)
    from util.misc import NestedTensor

    dev = torch.device("cuda" if cuda else "cpu")
    if not cuda:
        torch.set_num_threads(os.cpu_count())  # Debian's build starts with 1
    model = model.to(dev)
    torch.manual_seed(0)
    img = torch.randn(1, 3, 800, 1066)
    if image:
        import numpy as np
        from PIL import Image

        from realistic_model import tensor_of

        img = tensor_of(np.asarray(Image.open(image).convert("RGB")))
    img = img.to(dev)
    samples = NestedTensor(img, torch.zeros(1, *img.shape[2:], dtype=torch.bool, device=dev))
    T = 198
    text = (torch.zeros(T, 1, dtype=torch.bool, device=dev), torch.randn(T, 1, 768).to(dev), torch.tensor([[81, 117]], device=dev))
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    times = []
    with torch.no_grad():
        for i in range(runs + (2 if cuda else 0)):
            sync()
            t = time.perf_counter()
            cache = model(samples, encode_and_save=True, text=text)
            model(samples, encode_and_save=False, memory_cache=cache)
            sync()
            if i >= (2 if cuda else 0):
                times.append(time.perf_counter() - t)
    where = f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})" if cuda else f"CPU ({torch.get_num_threads()} threads)"
    if cuda:  # what "fp32" meant in this run
        where += f", TF32 convolutions {torch.backends.cudnn.allow_tf32}, TF32 matmuls {torch.backends.cuda.matmul.allow_tf32}"
    row = {"torch": torch.__version__, "device": where, "msda": msda, "min_s": min(times), "runs_s": times}
    what = f"{os.path.basename(weights) if weights else 'default init'}, {os.path.basename(image) if image else 'noise'} {img.shape[3]}x{img.shape[2]}"
    print(f"official PyTorch {torch.__version__} fp32 on {where}, {backbone}, MSDA {msda}, {what}, N=128, T=198: "
          f"min {min(times) * 1e3:.1f} ms, runs {[round(x * 1e3, 1) for x in times]} ms", flush=True)
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "official_time.json"), "w") as f:
            json.dump(row, f, indent=1)


if __name__ == "__main__":
    args = sys.argv[1:]
    cuda = "--cuda" in args
    def value(flag):
        return args[args.index(flag) + 1] if flag in args else None

    src, backbone, save = value("--msda-src"), value("--backbone") or "resnet50", value("--save-pth")
    weights, image = value("--weights"), value("--image")
    flags = ("--cuda", "--msda-src", src, "--backbone", backbone, "--save-pth", save, "--weights", weights, "--image", image)
    rest = [a for a in args if a not in flags]
    main(os.path.abspath(rest[0]), int(rest[1]) if len(rest) > 1 else 2, cuda, src, backbone, save and os.path.abspath(save),
         weights and os.path.abspath(weights), image and os.path.abspath(image))
