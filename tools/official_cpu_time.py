"""Times the official model end to end on the CPU (as the CPU speed target compares): the
RLIP_ParSeDA_v2 R50 graph that tools/official_model.py builds (MSDA through its grid_sample
twin), an 800×1066 image, the 198 HICO label tokens given (text encoder not run, as `rlipv2
detect` uses baked label embeddings), `encode_and_save` then the decoders and heads:

    /usr/bin/python3 tools/official_cpu_time.py OFFICIAL_REPO [RUNS]
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import official_model  # noqa: E402


def main(repo, runs):
    import torch

    model, _ = official_model.build(repo, 128)
    from util.misc import NestedTensor

    torch.set_num_threads(os.cpu_count())  # Debian's build starts with 1
    torch.manual_seed(0)
    img = torch.randn(1, 3, 800, 1066)
    samples = NestedTensor(img, torch.zeros(1, 800, 1066, dtype=torch.bool))
    T = 198
    text = (torch.zeros(T, 1, dtype=torch.bool), torch.randn(T, 1, 768), torch.tensor([[81, 117]]))
    times = []
    with torch.no_grad():
        for _ in range(runs):
            t = time.perf_counter()
            cache = model(samples, encode_and_save=True, text=text)
            model(samples, encode_and_save=False, memory_cache=cache)
            times.append(time.perf_counter() - t)
    print(f"official PyTorch {torch.__version__} on CPU ({torch.get_num_threads()} threads), 800x1066, N=128, T=198: "
          f"min {min(times):.2f} s, runs {[round(x, 2) for x in times]}")


if __name__ == "__main__":
    main(os.path.abspath(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 2)
