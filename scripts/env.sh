# Shared settings for the project's scripts (sourced, not run).
#
# One target dir outside the clone, so every checkout, CI run and script reuses the same
# compiled Burn (a cold build is long: docs/benchmarks.md has the times). Override with
# CARGO_TARGET_DIR.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mvsa-sentiment/target}"
mkdir -p "$CARGO_TARGET_DIR"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n== %s\n' "$*"; }

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "error: cargo not found; install Rust with rustup (https://rustup.rs)" >&2
    exit 1
  fi
fi
