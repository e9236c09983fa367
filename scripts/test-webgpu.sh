#!/usr/bin/env bash
# The native WebGPU check, apart from scripts/test.sh: building the bench with Burn's `webgpu`
# backend compiles wgpu natively (long when cold: docs/benchmarks.md; more than CI can add), so
# it runs here instead. Installs Mesa's Vulkan drivers (lavapipe, a CPU Vulkan) where there is
# no GPU, lints the feature, runs `bench --backend webgpu` on four fixture pairs and fails
# unless its probabilities match the CPU backend's within 1e-4 and no kernel is compiled after
# the warm-up. Pass `fusion` (or `fusion,autotune`) to check those builds too.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
features="webgpu${1:+,$1}"

step "Vulkan driver"
if ! ldconfig -p | grep -q libvulkan.so.1 || ! ls /usr/share/vulkan/icd.d/*.json >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers libvulkan1
fi

step "cargo clippy -D warnings --features $features"
cargo clippy --locked --bin bench --features "$features" -- -D warnings

step "bench --backend webgpu ($features), four fixture pairs"
out=$(cargo run --locked --bin bench --features "$features" -- \
  --backend webgpu --data tests/fixtures/mini --pairs 4 2> >(grep -v XDG_RUNTIME_DIR >&2))
echo "$out"
line=$(grep '^webgpu: ' <<<"$out")
diff=$(sed -E 's/.*max_abs_diff=([^ ]+).*/\1/' <<<"$line")
awk -v d="$diff" 'BEGIN { exit !(d <= 1e-4) }' || {
  echo "error: WebGPU's probabilities differ from the CPU backend's by $diff (limit 1e-4)" >&2
  exit 1
}
grep -q ' 0 kernels compiled after the warm-up' <<<"$out" || {
  echo "error: kernels were compiled after the warm-up: a caption length escaped the buckets" >&2
  exit 1
}
echo "WebGPU matches the CPU backend (max difference $diff) and compiles nothing after warm-up"
