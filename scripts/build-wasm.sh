#!/usr/bin/env bash
# Build the page's wasm module (crates/web) into pkg/ with wasm-pack (--target web, release).
# Installs what is missing first: the wasm32 target, wasm-bindgen-cli at exactly Cargo.lock's
# wasm-bindgen version (so wasm-pack never tries to download one) and wasm-pack. wasm-opt is
# switched off in crates/web/Cargo.toml, so binaryen is not needed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
bindgen_version=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
if [ "$(wasm-bindgen --version 2>/dev/null | cut -d' ' -f2)" != "$bindgen_version" ]; then
  step "cargo install wasm-bindgen-cli $bindgen_version"
  # Without --locked: with it the resolver fails on webpki-roots.
  cargo install wasm-bindgen-cli --version "$bindgen_version"
fi
if ! command -v wasm-pack >/dev/null 2>&1; then
  step "cargo install wasm-pack"
  cargo install wasm-pack --locked --version 0.15.1 || cargo install wasm-pack --locked
fi

step "wasm-pack build --target web --release"
# Flags (getrandom's browser backend, path remapping for identical bytes on any machine) come
# from .cargo/config.toml; a RUSTFLAGS variable would replace them.
unset RUSTFLAGS
# --out-dir is relative to the crate; --out-name keeps the file names the page imports.
wasm-pack build crates/web --target web --release --out-dir ../../pkg --out-name mvsa_sentiment --no-pack
rm -f pkg/.gitignore
ls -l pkg
