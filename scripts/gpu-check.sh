#!/usr/bin/env bash
# GPU check for a lent CUDA machine (which has no Rust toolchain). Build here first:
#   cargo build --release --features cuda && cargo test --release --features cuda --no-run
#   OFFICIAL_REPO=/tmp/off scripts/gpu-check.sh --stage   # binaries to .gpu-bin/ (git-ignored), stripped;
#                                     # the official Python tree to .official/repo (for `e2e`)
# then run on the device with carry [.gpu-bin.tar.xz, .gl, .official]:
#   bash scripts/gpu-check.sh [msda] [fusion] [graph] [e2e] [suite]   # msda fusion graph when none is named
# `e2e` (carry .official/repo: the official Python tree) times `rlipv2 detect` at 800x1066 on every
# backend and the official model in fp32 on the same card (tools/official_time.py).
# `suite` runs `rlipv2 bench suite` on every backend (bench.json/md/svg under $OUT/suite) and the
# examples (stage them with `cargo build --release --features cuda --examples` first).
# It runs the backend tests with cubecl-cuda, wgpu and cubecl-wgpu required, the side-by-side
# bench at the encoder shape, and the official CUDA op vs grid_sample (tools/msda_cuda_official_bench.py).
# Everything it prints is also written under $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--stage" ]; then
  rm -rf .gpu-bin && mkdir -p .gpu-bin
  cp target/release/rlipv2 .gpu-bin/
  for ex in wgpu_own_device cubecl_generic; do
    [ -f target/release/examples/$ex ] && cp target/release/examples/$ex .gpu-bin/
  done
  # the integration tests are one binary (tests/suite); a module name filters it
  t=$(ls -t target/release/deps/suite-* | grep -v '\.d$' | head -1)
  cp "$t" .gpu-bin/suite
  strip .gpu-bin/*
  # the official Python tree for `e2e` (OFFICIAL_REPO: see tools/official_tree.sh); its figures stay
  if [ -n "${OFFICIAL_REPO:-}" ]; then
    rm -rf .official/repo && mkdir -p .official && cp -r "$OFFICIAL_REPO" .official/repo && rm -rf .official/repo/assets
    find .official/repo -name __pycache__ -prune -exec rm -rf {} +
  fi
  # carry is limited to 64 MiB: ship the binaries compressed
  tar -cJf .gpu-bin.tar.xz .gpu-bin
  du -sh .gpu-bin .gpu-bin.tar.xz
  exit 0
fi
[ -f .gpu-bin.tar.xz ] && tar -xJf .gpu-bin.tar.xz

OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
# Vulkan loader and GL vendor-neutral libraries (the image has the NVIDIA driver's ICD but no
# loader): see the device notes. Point the loader at the NVIDIA ICD wherever the image keeps it.
if [ -d .gl ]; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
if [ -z "${VK_DRIVER_FILES:-}" ]; then
  icd=$(ls /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json 2>/dev/null | head -1)
  [ -n "$icd" ] && export VK_DRIVER_FILES=$icd
fi
[ -f /usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json ] && export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset}"
export WGPU_BACKEND=vulkan
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/device.txt"

echo "== backends" | tee "$OUT/log.txt"
.gpu-bin/rlipv2 backends 2>&1 | tee -a "$OUT/log.txt"

# The full-size fixture model (every tensor of RLIP_ParSeDA_v2 R50, q128) converted with baked label
# embeddings, through a byte-level tokenizer.json written here: convert_fixture DIR → DIR/m.safetensors
convert_fixture() {
local work=$1
python3 - "$work/tok.json" <<'PY'
import json, sys
vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, **{chr(b): 4 + b - 33 for b in range(33, 127)}, "\u0120": 98}
sp = lambda i, s: {"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False, "normalized": True, "special": True}
json.dump({"version": "1.0", "truncation": None, "padding": None, "added_tokens": [sp(0, "<s>"), sp(1, "<pad>"), sp(2, "</s>"), sp(3, "<unk>")], "normalizer": None,
           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
           "post_processor": {"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 0], "trim_offsets": True, "add_prefix_space": False},
           "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
           "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": False, "vocab": vocab, "merges": []}}, open(sys.argv[1], "w"))
PY
.gpu-bin/rlipv2 convert tests/fixtures/official_format_r50_parseda_v2_q128.pth "$work/m.safetensors" --tokenizer "$work/tok.json" 2>&1 | tail -2 | tee -a "$OUT/log.txt"
}

# the official CUDA op's source: in the official tree, or staged alone (older runs)
msda_src=.official/repo/models/ops/src
[ -d "$msda_src" ] || msda_src=.official/ops/src
sections="${*:-msda fusion graph}"
if [[ " $sections " == *" msda "* ]]; then
echo "== tests (cubecl-cuda, wgpu, cubecl-wgpu required)" | tee -a "$OUT/log.txt"
RLIPV2_REQUIRE_BACKENDS=cubecl-cuda,wgpu,cubecl-wgpu .gpu-bin/suite ms_deform_attn_backends:: ms_deform_attn_backward:: --show-output 2>&1 | grep -E -A2 "RUN|SKIP|test |panicked|result" | tee -a "$OUT/log.txt"

echo "== bench" | tee -a "$OUT/log.txt"
for form in official fused-boxes; do
  .gpu-bin/rlipv2 bench ms_deform_attn --backends cpu,wgpu,cubecl-wgpu,cubecl-cuda --dtypes f32,f16,bf16 --case encoder --form $form --repeat 50 2>/dev/null | tee -a "$OUT/log.txt"
done

echo "== backward (deterministic), every backend, encoder shape" | tee -a "$OUT/log.txt"
.gpu-bin/rlipv2 bench suite --ops ms_deform_attn_backward --backends cpu,wgpu,cubecl-wgpu,cubecl-cuda --repeat 20 --out "$OUT/backward" 2>/dev/null | tail -12 | tee -a "$OUT/log.txt"

echo "== official CUDA op (forward, backward) and grid_sample on the same card" | tee -a "$OUT/log.txt"
PYTHONUNBUFFERED=1 timeout 300 python3 tools/msda_cuda_official_bench.py "$msda_src" 2>&1 | tail -25 | tee -a "$OUT/log.txt"
fi

if [[ " $sections " == *" fusion "* ]]; then
echo "== ALIF tests (cubecl-cuda, wgpu, cubecl-wgpu required)" | tee -a "$OUT/log.txt"
RLIPV2_REQUIRE_BACKENDS=cubecl-cuda,wgpu,cubecl-wgpu .gpu-bin/suite fusion_backends:: --show-output 2>&1 | grep -E -A2 "test |panicked|result|launches" | grep -v "^RUN\|^SKIP" | tee -a "$OUT/log.txt"
echo "== sparse_fusion bench" | tee -a "$OUT/log.txt"
.gpu-bin/rlipv2 bench sparse_fusion --backends cpu,wgpu,cubecl-wgpu,cubecl-cuda --repeat 10 2>/dev/null | tee -a "$OUT/log.txt"
fi

if [[ " $sections " == *" graph "* ]]; then
echo "== graph fidelity tests (cubecl-cuda, wgpu, cubecl-wgpu required)" | tee -a "$OUT/log.txt"
for t in conv2d text_encoder image_front encoder resident_ops detect_graph; do
  RLIPV2_REQUIRE_BACKENDS=cubecl-cuda,wgpu,cubecl-wgpu .gpu-bin/suite $t:: --show-output 2>&1 | grep -E "diff|uploads|SKIP|panicked|test result" | tee -a "$OUT/log.txt"
done
echo "== detect end to end (fixture weights, 800x1066 after resize)" | tee -a "$OUT/log.txt"
work=$(mktemp -d)
convert_fixture "$work"
for be in cpu cubecl-cuda wgpu; do
  echo "-- detect --backend $be" | tee -a "$OUT/log.txt"
  for i in 1 2; do
    timeout 240 .gpu-bin/rlipv2 detect --weights "$work/m.safetensors" tests/fixtures/images/rgb_64x48.png --backend $be --out "$work/out-$be" --profile 2>&1 | grep -E "backend:|ms$|error" | tee -a "$OUT/log.txt"
  done
done
rm -rf "$work"
fi

if [[ " $sections " == *" e2e "* ]]; then
echo "== end to end at 800x1066 on this card: official PyTorch fp32 vs rlipv2 detect (#5 GPU target)" | tee -a "$OUT/log.txt"
work=$(mktemp -d)
convert_fixture "$work"
# three images that the official size rule maps to 800x1066: the first pays binding and compiles
for i in 1 2 3; do cp tests/fixtures/images/rgb_64x48.png "$work/img$i.png"; done
for be in cubecl-cuda wgpu cubecl-wgpu cpu; do
  echo "-- rlipv2 detect --backend $be (images 1..3)" | tee -a "$OUT/log.txt"
  timeout 150 .gpu-bin/rlipv2 detect --weights "$work/m.safetensors" "$work"/img{1,2,3}.png --backend $be --out "$work/out-$be" --profile 2>&1 | grep -E "backend:|^\[|ms|error" | tee -a "$OUT/log.txt"
done
# the 64×64-tile GEMM/conv kernels everywhere (the default picks 128×128 for large products)
for be in cubecl-cuda wgpu; do
  echo "-- rlipv2 detect --backend $be, RLIPV2_GEMM_TILE=64 (images 1..3)" | tee -a "$OUT/log.txt"
  RLIPV2_GEMM_TILE=64 timeout 150 .gpu-bin/rlipv2 detect --weights "$work/m.safetensors" "$work"/img{1,2,3}.png --backend $be --out "$work/out64-$be" --profile 2>&1 | grep -E "backend:|^\[|ms|error" | tee -a "$OUT/log.txt"
done
echo "-- official model (tools/official_time.py; MSDA op built from .official/repo/models/ops/src)" | tee -a "$OUT/log.txt"
PYTHONUNBUFFERED=1 timeout 300 python3 tools/official_time.py .official/repo 5 --cuda --msda-src "$msda_src" 2>&1 | tail -15 | tee -a "$OUT/log.txt"
rm -rf "$work"
fi

if [[ " $sections " == *" suite "* ]]; then
echo "== bench suite (every backend)" | tee -a "$OUT/log.txt"
timeout 420 .gpu-bin/rlipv2 bench suite --backends cpu,wgpu,cubecl-wgpu,cubecl-cuda --dtypes f32,f16,bf16 --repeat 10 --out "$OUT/suite" 2>&1 | tail -60 | tee -a "$OUT/log.txt"
echo "== examples" | tee -a "$OUT/log.txt"
for ex in wgpu_own_device cubecl_generic; do
  [ -x .gpu-bin/$ex ] && .gpu-bin/$ex 2>&1 | tee -a "$OUT/log.txt"
done
fi
