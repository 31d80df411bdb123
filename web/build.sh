#!/usr/bin/env bash
# Builds the page's WebAssembly package into web/pkg (then serve web/ on any static server):
# the crate for wasm32-unknown-unknown, then wasm-bindgen (the CLI of the same version as the
# crate's wasm-bindgen; `cargo install wasm-bindgen-cli --version <it>` if absent).
set -euo pipefail
cd "$(dirname "$0")"
version=$(sed -n 's/^wasm-bindgen = "=\(.*\)"/\1/p' Cargo.toml)
bindgen=${WASM_BINDGEN:-wasm-bindgen}
if ! have=$("$bindgen" --version 2>/dev/null) || [ "${have#wasm-bindgen }" != "$version" ]; then
  echo "web/build.sh: needs wasm-bindgen $version (found: ${have:-none}); install it with" >&2
  echo "  cargo install wasm-bindgen-cli --version $version" >&2
  exit 1
fi
cargo build --release --target wasm32-unknown-unknown
rm -rf pkg
"$bindgen" --target web --no-typescript --out-dir pkg target/wasm32-unknown-unknown/release/rlipv2_web.wasm
cp event_loop.js pkg/
echo "web/pkg: $(du -b pkg/rlipv2_web_bg.wasm | cut -f1) bytes of WebAssembly, $(du -b pkg/rlipv2_web.js | cut -f1) of JS"
