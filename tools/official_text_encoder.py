"""Golden pooled outputs of the official text encoder class (transformers 4.5.1 `RobertaModel`,
as models/*transformer*.py build it) at a small geometry, with weights given by a formula that
tests/text_encoder.rs reproduces (so no weights are committed):

    /usr/bin/python3 tools/official_text_encoder.py tests/fixtures/text_encoder_golden.json

Geometry: real width (768, 12 heads, FFN 3072, LN eps 1e-5), vocab 50, 18 positions, 2 layers.
Tensor `name` element j = (frac((j·7919 + s·104729) mod 65521) · 2 − 1) · scale, s = sum of the
name's bytes, scale 0.04 (query/key: 0.002, the pooler: 0.005 — attention spreads over the label's tokens and the
pooler does not saturate; LayerNorm weights: 1 + that).
"""
import json
import sys

import torch
import transformers

VOCAB, POSITIONS, LAYERS = 50, 18, 2
LABELS = [[0, 5, 9, 2], [0, 7, 2], [0, 11, 12, 13, 14, 15, 16, 2], [0, 49, 3, 2]]


def formula(name, n):
    s = sum(name.encode())
    scale = 0.005 if "pooler" in name else 0.002 if ".query." in name or ".key." in name else 0.04
    vals = [((((j * 7919 + s * 104729) % 65521) / 65521) * 2 - 1) * scale for j in range(n)]
    if "LayerNorm.weight" in name:
        vals = [1 + v for v in vals]
    return torch.tensor(vals, dtype=torch.float64).float()


def main(out):
    cfg = transformers.RobertaConfig(vocab_size=VOCAB, max_position_embeddings=POSITIONS, num_hidden_layers=LAYERS, type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2)
    model = transformers.RobertaModel(cfg).eval()
    with torch.no_grad():
        for name, p in model.state_dict().items():
            if name.endswith("position_ids"):
                continue
            p.copy_(formula(name, p.numel()).reshape(p.shape))
    longest = max(map(len, LABELS))
    ids = torch.tensor([l + [1] * (longest - len(l)) for l in LABELS])
    mask = (ids != 1).long()
    with torch.no_grad():
        pooled = model(input_ids=ids, attention_mask=mask).pooler_output
    json.dump({"generator": "tools/official_text_encoder.py", "transformers": transformers.__version__, "vocab": VOCAB, "positions": POSITIONS, "layers": LAYERS, "labels": LABELS, "pooled": pooled.tolist()}, open(out, "w"))
    print(pooled.shape, pooled[0, :4])


if __name__ == "__main__":
    main(sys.argv[1])
