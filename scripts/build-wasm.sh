#!/usr/bin/env bash
# Build the page's three wasm modules from crates/web into pkg/ with wasm-pack (--target web,
# release): pkg/cpu (Burn's flex CPU backend, one thread: what the page loads first),
# pkg/cpu-threads (the same with the `threads` feature: the kernels on a pool of workers sharing
# the module's memory, loaded instead where the page is cross-origin isolated) and pkg/webgpu
# (the `webgpu` feature: wgpu + CubeCL, fetched only where a hardware adapter exists). All are
# built with SIMD (.cargo/config.toml), stripped of their name section (wasm-strip), and checked
# for relaxed-SIMD instructions, which Safari rejects.
#
# Installs what is missing first: the wasm32 target, the pinned nightly with rust-src that only
# pkg/cpu-threads is built with (its standard library is rebuilt with atomics: -Z build-std),
# wasm-bindgen-cli at exactly Cargo.lock's wasm-bindgen version (so wasm-pack never tries to
# download one), wasm-pack, and Debian's wabt (wasm-strip, wasm-objdump). wasm-opt is switched
# off in crates/web/Cargo.toml, so binaryen is not needed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
# One nightly, pinned, for the threaded module alone; everything else stays on stable.
NIGHTLY=nightly-2026-05-20
if ! rustup run "$NIGHTLY" rustc --version >/dev/null 2>&1 \
  || [ ! -d "$(rustup run "$NIGHTLY" rustc --print sysroot)/lib/rustlib/src/rust/library" ]; then
  step "rustup toolchain install $NIGHTLY (rust-src, for pkg/cpu-threads)"
  rustup toolchain install "$NIGHTLY" --profile minimal --component rust-src \
    --target wasm32-unknown-unknown
fi
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
if ! command -v wasm-strip >/dev/null 2>&1 || ! command -v wasm-objdump >/dev/null 2>&1; then
  step "apt-get install wabt"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wabt
fi

# Flags (SIMD, getrandom's browser backend, path remapping for identical bytes on any machine)
# come from .cargo/config.toml; a RUSTFLAGS variable would replace them.
unset RUSTFLAGS

build() { # <kind> [cargo options]; $TOOLCHAIN (empty: stable) builds it
  local kind="$1"
  shift
  step "wasm-pack build: pkg/$kind"
  # --out-dir is relative to the crate. --out-name keeps the module's published names
  # (pkg/<kind>/mvsa_sentiment.js and _bg.wasm), not the crate's (mvsa_web): the page, its
  # service worker and the side-by-side peer benchmark (../shared/peers) load them by name.
  ${TOOLCHAIN:+rustup run "$TOOLCHAIN"} wasm-pack build crates/web --target web --release \
    --out-dir "../../pkg/$kind" --out-name mvsa_sentiment --no-pack -- "$@"
  rm -f "pkg/$kind/.gitignore"
  local wasm="pkg/$kind/mvsa_sentiment_bg.wasm"
  if wasm-objdump -d "$wasm" | grep -q -i "relaxed"; then
    echo "error: $wasm uses relaxed-SIMD instructions, which Safari rejects" >&2
    exit 1
  fi
  # Function names are for debuggers; they were a sixth of the module.
  wasm-strip "$wasm"
}

rm -rf pkg
build cpu
# Shared memory needs atomics in the standard library too, hence build-std. These flags replace
# .cargo/config.toml's for this build: the same ones, plus atomics; the linker told to make the
# memory shared and imported (at most 1 GiB, reserved up front by the browser) and to export the
# thread-local storage hooks wasm-bindgen sets up each worker with; and the nightly's sysroot
# remapped (std's sources are compiled from there now).
threads_flags=(
  --cfg 'getrandom_backend="wasm_js"'
  -C target-feature=+simd128,+atomics,+bulk-memory
  -C link-arg=--shared-memory -C link-arg=--import-memory -C link-arg=--max-memory=1073741824
  -C link-arg=--export=__wasm_init_tls -C link-arg=--export=__tls_size
  -C link-arg=--export=__tls_align -C link-arg=--export=__tls_base
  --remap-path-prefix=/root/.cargo=/cargo
  --remap-path-prefix="$(rustup run "$NIGHTLY" rustc --print sysroot)=/rustup/$NIGHTLY"
)
CARGO_ENCODED_RUSTFLAGS=$(IFS=$'\x1f'; echo "${threads_flags[*]}") TOOLCHAIN="$NIGHTLY" \
  build cpu-threads --features threads -Z build-std=panic_abort,std
# CubeCL's kernel builders are built for size there (Cargo.toml says which and why).
build webgpu --features webgpu
ls -l pkg/*
