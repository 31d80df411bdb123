#!/usr/bin/env bash
# ms_deform_attn in headless chromium (the page's MSDA tab: WebGPU on chromium's SwiftShader
# adapter) against native wgpu on the same SwiftShader (chromium's own Vulkan ICD) and on Mesa's
# lavapipe, interleaved over SITTINGS rounds, f32, the bench's `small` and `decoder` cases.
# Needs target/release/rlipv2, web/pkg, node with web/node_modules, and chromium.
#
#   scripts/browser-msda.sh [SITTINGS]
set -euo pipefail
cd "$(dirname "$0")/.."
sittings=${1:-2}
swiftshader=${SWIFTSHADER_ICD:-/usr/lib/chromium/vk_swiftshader_icd.json}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/xdg-runtime} WGPU_BACKEND=vulkan
mkdir -p -m 700 "$XDG_RUNTIME_DIR"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo '[{"case":"small","form":"points","repeat":5,"seed":1},{"case":"decoder","form":"boxes","repeat":5,"seed":1}]' >"$tmp/cases.json"
native() { # ICD label case form
  local icd=$1 label=$2 case=$3 form=$4
  env ${icd:+VK_ICD_FILENAMES=$icd} target/release/rlipv2 bench ms_deform_attn --backends wgpu --dtypes f32 \
    --case "$case" --form "$form" --repeat 5 2>/dev/null | awk -v l="$label" -v c="$case" '$1 == "wgpu" { printf "%-26s %-8s min %8.3f ms  median %8.3f ms\n", l, c, $4, $3 }'
}
for s in $(seq "$sittings"); do
  echo "== sitting $s"
  node web/tests/drive.mjs --out "$tmp/page-$s" --msda "$tmp/cases.json" >/dev/null
  for i in 0 1; do
    node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
      console.log(`${"browser (SwiftShader)".padEnd(26)} ${(r.problem.queries === 200 ? "decoder" : "small").padEnd(8)} min ${r.ms_min.toFixed(3).padStart(8)} ms  median ${r.ms_median.toFixed(3).padStart(8)} ms  (${r.launches_per_sample} launches per sample)`)' \
      "$tmp/page-$s/msda-$i.json"
  done
  native "$swiftshader" "native wgpu (SwiftShader)" small fused-points
  native "$swiftshader" "native wgpu (SwiftShader)" decoder fused-boxes
  native "" "native wgpu (lavapipe)" small fused-points
  native "" "native wgpu (lavapipe)" decoder fused-boxes
done
