#!/usr/bin/env bash
# One `detect` of MODEL on IMAGE in headless chromium (the page, WebGPU on its SwiftShader
# adapter), then natively with wgpu on the same SwiftShader (chromium's Vulkan ICD), with wgpu on
# Mesa's lavapipe, and on the cpu backend: per-stage seconds of each, SITTINGS rounds, interleaved.
# Needs target/release/rlipv2, web/pkg, node with web/node_modules, and chromium.
#
#   scripts/browser-detect.sh MODEL.safetensors IMAGE [SITTINGS]
set -euo pipefail
cd "$(dirname "$0")/.."
model=$(realpath "$1") image=$(realpath "$2") sittings=${3:-1}
swiftshader=${SWIFTSHADER_ICD:-/usr/lib/chromium/vk_swiftshader_icd.json}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/xdg-runtime} WGPU_BACKEND=vulkan
mkdir -p -m 700 "$XDG_RUNTIME_DIR"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
native() { # label backend [ICD]
  echo "-- $1"
  env ${3:+VK_ICD_FILENAMES=$3} target/release/rlipv2 detect --weights "$model" "$image" --backend "$2" \
    --profile --draw 0 --out "$tmp/native" 2>&1 | grep -E "^  (preprocess|backbone|encoder|decoders|post|total) "
}
for s in $(seq "$sittings"); do
  echo "== sitting $s"
  echo "-- browser (SwiftShader)"
  node web/tests/drive.mjs --out "$tmp/page-$s" --model "$model" --image "$image" >/dev/null
  node -e 'const d = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    for (const [n, t] of d.stages) console.log(`  ${n.padEnd(26)} ${(t * 1e3).toFixed(1).padStart(10)} ms`);
    console.log(`  ${"total".padEnd(26)} ${(d.seconds * 1e3).toFixed(1).padStart(10)} ms`)' "$tmp/page-$s/detect.json"
  native "native wgpu (SwiftShader)" wgpu "$swiftshader"
  native "native wgpu (lavapipe)" wgpu
  native "native cpu" cpu
done
