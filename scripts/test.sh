#!/usr/bin/env bash
# Run every test of the project: formatting, lints, unit and integration tests.
# Installs what it needs on a fresh machine (the Rust components); safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

step "toolchain"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
cargo --version

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings (native)"
cargo clippy --locked --all-targets -- -D warnings

step "cargo clippy -D warnings (the library for wasm32: model, preprocessing, web API)"
cargo clippy --locked --lib --target wasm32-unknown-unknown -- -D warnings

step "cargo test"
cargo test --locked
