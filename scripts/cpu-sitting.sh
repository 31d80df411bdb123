#!/usr/bin/env bash
# Side by side on this machine, as issue 18's speed claims are measured: per sitting, one process
# of the official model (two runs; its min) on a checkpoint and an image, then `rlipv2 detect
# --backend cpu --profile` with each binary given, twice, interleaved. Prints one line per run
# (stage times, total, peak RSS) and each run's op table.
#
#   scripts/cpu-sitting.sh OFFICIAL_REPO MODEL.pth MODEL.safetensors PHOTO.png [SITTINGS] \
#       [BACKBONE] -- LABEL=BINARY[:EXTRA DETECT ARGS] ...
#
# e.g. the trained-like model of tools/realistic_model.py and two builds:
#   scripts/cpu-sitting.sh /tmp/off /tmp/real/model.pth /tmp/real/model.safetensors \
#       /tmp/real/photo.png 3 resnet50 -- after=target/release/rlipv2 \
#       bf16=target/release/rlipv2:--precision\ bf16 before=/tmp/rlipv2-before
# Needs the official tree (tools/official_tree.sh) and the Python of tools/official_model.py
# (PYTHON, default /usr/bin/python3); 2 threads each side unless RAYON_NUM_THREADS says otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
official=$1 pth=$2 model=$3 photo=$4 sittings=${5:-3} backbone=${6:-resnet50}
shift $(( $# < 6 ? $# : 6 ))
[ "${1:-}" = "--" ] && shift
py=${PYTHON:-/usr/bin/python3}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
run() { # LABEL=BINARY[:ARGS]
  local label=${1%%=*} rest=${1#*=}
  local bin=${rest%%:*} args=""
  [ "$rest" != "$bin" ] && args=${rest#*:}
  # shellcheck disable=SC2086  # the extra detect arguments are words
  text=$("$bin" detect --weights "$model" --backend cpu --profile --draw 0 --out "$out/$label" $args "$photo" 2>&1)
  echo "$label $(echo "$text" | grep -E '^  (backbone|encoder|decoders|total)' | grep -o '[0-9.]* ms' | tr '\n' ' ')$(echo "$text" | grep -o 'peak RSS [0-9]* MB' | tail -1)"
  echo "$text" | sed -n '/ms by op/,/decoders/p' | sed "s/^/    $label /"
}
for s in $(seq "$sittings"); do
  echo "=== sitting $s $(date +%H:%M:%S)"
  "$py" tools/official_time.py "$official" 2 --backbone "$backbone" --weights "$pth" --image "$photo" 2>&1 | grep "official PyTorch"
  for _ in 1 2; do
    for b in "$@"; do run "$b"; done
  done
done
echo "=== done $(date +%H:%M:%S)"
