#!/usr/bin/env bash
# Writes a working tree of the official RLIPv2 code (the OFFICIAL_REPO the tools take) from a git
# mirror such as `fetch github:JacobYuan7/RLIPv2` leaves (a bare repository whose largest blobs —
# dataset priors, figures — may be absent; those files are skipped and counted):
#   bash tools/official_tree.sh /work/.mirror/JacobYuan7+RLIPv2/repo /tmp/off
set -euo pipefail
git_dir=$1 out=$2
mkdir -p "$out"
kept=0 skipped=0
while IFS=$'\t' read -r meta path; do
  read -r _ type sha <<<"$meta"
  [ "$type" = blob ] || continue
  if git --git-dir="$git_dir" cat-file -e "$sha" 2>/dev/null; then
    mkdir -p "$out/$(dirname "$path")"
    git --git-dir="$git_dir" cat-file blob "$sha" >"$out/$path"
    kept=$((kept + 1))
  else
    skipped=$((skipped + 1))
  fi
done < <(git --git-dir="$git_dir" ls-tree -r HEAD)
echo "$out: $kept files written, $skipped absent from the mirror skipped"
