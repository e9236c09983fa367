#!/usr/bin/env bash
# Serve the page with the shipped models on http://127.0.0.1:$PORT/ (default 8080). Builds the
# wasm module into pkg/ first if it is missing, and installs the static server (npm) once.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f pkg/cpu/mvsa_sentiment_bg.wasm ] || [ ! -f pkg/webgpu/mvsa_sentiment_bg.wasm ]; then
  bash scripts/build-wasm.sh
fi
if [ ! -d node_modules/sirv ]; then
  npm ci --no-audit --no-fund
fi
exec node scripts/serve.mjs
