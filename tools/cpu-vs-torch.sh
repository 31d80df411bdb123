#!/usr/bin/env bash
# Side by side on this machine, one run: the cpu backend vs PyTorch's grid_sample formulation of
# ms_deform_attn at the RLIPv2 encoder shape (B=1, Q=S=22223, M=8, D=32, L=4, P=4), same thread
# count and input recipe. Needs Debian's python3-torch (/usr/bin/python3) and a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-$(nproc)}
cargo build --release -q
echo "== rlipv2 cpu backend ($threads threads)"
RAYON_NUM_THREADS=$threads ./target/release/rlipv2 bench ms_deform_attn --backends cpu --dtypes f32 --case encoder --repeat 10 2>/dev/null
echo "== PyTorch grid_sample ($threads threads)"
/usr/bin/python3 tools/msda_torch_baseline.py --threads "$threads" --repeat 10
