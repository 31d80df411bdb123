"""Golden outputs of Swin's window attention as the official block runs it
(`models/swin/swin_transformer.py`: the shift mask of BasicLayer.forward :514-532, `torch.roll`,
`window_partition`, `WindowAttention.forward` with its relative_position_index, `window_reverse`,
the roll back, the crop), on maps whose sides are not all window multiples (zero-padded after
norm1, as the block pads, so the projection turns padding into its bias), with `proj` replaced by
the identity (the kernel stops before it):

    /usr/bin/python3 tools/official_window_attention.py OFFICIAL_REPO tests/fixtures/window_attention_golden.json

Inputs by formula (the Rust test rebuilds them): map x [H·W, C] element j = frac((j·7919 + 3)
mod 65521)·2 − 1; qkv weight [3C, C] element j = (frac((j·104729 + 5) mod 65521)·2 − 1)·√(3/C),
bias element j = 0.1·(frac((j·7919 + 17) mod 65521)·2 − 1); bias table [169, heads] element j =
frac((j·104729 + 29) mod 65521)·2 − 1.
"""
import json
import os
import sys

CASES = [  # (H, W, heads, shift), Dh = 32 as in every RLIPv2 Swin
    (12, 17, 2, 3),  # padded to 14×21: 2×3 windows
    (12, 17, 2, 0),
    (7, 7, 3, 3),  # one window, no padding
    (5, 3, 1, 3),  # one window, mostly padding
]
WINDOW = 7
STRIDE = 7


def frac(a):
    return (a % 65521) / 65521


def main(repo, out):
    import torch

    import importlib.util

    # the file alone: the `models` package would import the CUDA extension
    spec = importlib.util.spec_from_file_location("swin", os.path.join(repo, "models/swin/swin_transformer.py"))
    swin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(swin)
    WindowAttention, window_partition, window_reverse = swin.WindowAttention, swin.window_partition, swin.window_reverse

    cases = []
    for h0, w0, heads, shift in CASES:
        c = heads * 32
        hp, wp = -(-h0 // WINDOW) * WINDOW, -(-w0 // WINDOW) * WINDOW
        x = torch.tensor([frac(j * 7919 + 3) * 2 - 1 for j in range(h0 * w0 * c)], dtype=torch.float64).float().view(1, h0, w0, c)
        x = torch.nn.functional.pad(x, (0, 0, 0, wp - w0, 0, hp - h0))  # swin_transformer.py:381-385
        attn = WindowAttention(c, (WINDOW, WINDOW), heads).eval()
        with torch.no_grad():
            attn.qkv.weight.copy_(torch.tensor([(frac(j * 104729 + 5) * 2 - 1) * (3 / c) ** 0.5 for j in range(3 * c * c)], dtype=torch.float64).view(3 * c, c))
            attn.qkv.bias.copy_(torch.tensor([0.1 * (frac(j * 7919 + 17) * 2 - 1) for j in range(3 * c)], dtype=torch.float64))
            attn.relative_position_bias_table.copy_(torch.tensor([frac(j * 104729 + 29) * 2 - 1 for j in range((2 * WINDOW - 1) ** 2 * heads)], dtype=torch.float64).view(-1, heads))
        attn.proj = torch.nn.Identity()
        # BasicLayer.forward's shift mask (swin_transformer.py:518-532)
        img_mask = torch.zeros((1, hp, wp, 1))
        cnt = 0
        for h in (slice(0, -WINDOW), slice(-WINDOW, -3), slice(-3, None)):
            for w in (slice(0, -WINDOW), slice(-WINDOW, -3), slice(-3, None)):
                img_mask[:, h, w, :] = cnt
                cnt += 1
        mask_windows = window_partition(img_mask, WINDOW).view(-1, WINDOW * WINDOW)
        attn_mask = mask_windows.unsqueeze(1) - mask_windows.unsqueeze(2)
        attn_mask = attn_mask.masked_fill(attn_mask != 0, float(-100.0)).masked_fill(attn_mask == 0, float(0.0))
        # SwinTransformerBlock.forward (:380-398) between the pad and the crop
        with torch.no_grad():
            shifted = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2)) if shift else x
            windows = window_partition(shifted, WINDOW).view(-1, WINDOW * WINDOW, c)
            y = attn(windows, mask=attn_mask if shift else None).view(-1, WINDOW, WINDOW, c)
            y = window_reverse(y, WINDOW, hp, wp)
            y = torch.roll(y, shifts=(shift, shift), dims=(1, 2)) if shift else y
            y = y[:, :h0, :w0, :]
        flat = y.flatten()
        # every 7th output (a prime stride: every channel and every window's token positions
        # are hit), 8 significant digits, to keep the fixture small
        cases.append({"h": h0, "w": w0, "heads": heads, "shift": shift, "stride": STRIDE,
                      "out": [float("%.8g" % v) for v in flat[::STRIDE].tolist()], "abs_sum": float(flat.double().abs().sum())})
        print((h0, w0, heads, shift), float(y.abs().mean()))
    json.dump({"generator": "tools/official_window_attention.py", "window": WINDOW, "head_dim": 32, "cases": cases}, open(out, "w"))


if __name__ == "__main__":
    main(os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]))
