#!/usr/bin/env bash
# Serve the page with the shipped model on http://127.0.0.1:$PORT/ (default 8080), building the
# wasm module into pkg/ first if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${PORT:-8080}"
if [ ! -f pkg/mvsa_sentiment_bg.wasm ]; then
  bash scripts/build-wasm.sh
fi
echo "Serving the page at http://127.0.0.1:$PORT/  (Ctrl-C stops)"
exec python3 -m http.server "$PORT" --bind 127.0.0.1
