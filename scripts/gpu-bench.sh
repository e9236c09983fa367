#!/usr/bin/env bash
# The native WebGPU benchmark (`bench --backend webgpu`) on a machine with a GPU, in two halves:
#
#   bash scripts/gpu-bench.sh prepare   # here: build the bench three ways (WebGPU alone, with
#                                       # Burn's fusion, with fusion and autotune), strip and
#                                       # pack them into .gpu/, fetch Vulkan's loader into .gl/
#   bash scripts/gpu-bench.sh run       # there: install the loader, run each build on www/model
#   bash scripts/gpu-bench.sh restore   # here, afterwards: put pkg/ back (see below)
#
# "Here" is the build machine; "there" is a Debian-like amd64 machine with a GPU (an NVIDIA
# driver with Vulkan) that gets a copy of the working tree together with .gpu/ and .gl/, and
# runs `run` as root (it unpacks the loader into / and runs ldconfig). The run takes a few
# minutes of the GPU's time. It prints one
# `webgpu: warm_ms=… first_ms=… dispatches=… max_abs_diff=…` line per build, and the GPU's
# name; the WebGPU table in docs/benchmarks.md takes them (results are also kept under $OUT,
# or /tmp/gpu-bench). To keep that copy small, `prepare` takes pkg/ (34 MB of wasm, not needed
# there) out of the working tree; `restore` (git checkout -- pkg) puts it back.
set -euo pipefail
cd "$(dirname "$0")/.."

variants=("webgpu" "webgpu,fusion" "webgpu,fusion,autotune")

prepare() {
  source scripts/env.sh
  mkdir -p .gpu .gl
  grep -qxF '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
  grep -qxF '/.gl/' .git/info/exclude 2>/dev/null || echo '/.gl/' >> .git/info/exclude
  for features in "${variants[@]}"; do
    step "bench with --features $features"
    cargo build --locked --bin bench --features "$features"
    local name="bench-${features//,/-}"
    strip -o ".gpu/$name" "$CARGO_TARGET_DIR/debug/bench"
    gzip -9f ".gpu/$name"
  done
  step "Vulkan's loader and EGL (Debian packages, amd64), for the GPU machine"
  local o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
  mkdir -p /tmp/amd64/partial
  apt-get "${o[@]}" update -qq
  (cd .gl && apt-get "${o[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
  step "what travels"
  rm -rf pkg
  du -sh .gpu .gl
  local bytes
  bytes=$( (git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1) )
  echo "to copy to the GPU machine: the working tree without pkg/ ($((bytes / 1048576)) MiB) + .gpu + .gl; pkg/ comes back with: bash scripts/gpu-bench.sh restore"
}

run() {
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
  local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  [ -f "$icd" ] && export VK_DRIVER_FILES="$icd"
  local egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  [ -f "$egl" ] && export __EGL_VENDOR_LIBRARY_FILENAMES="$egl"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || true
  local out="${OUT:-/tmp/gpu-bench}"
  mkdir -p "$out"
  for packed in .gpu/bench-*.gz; do
    local name
    name=$(basename "$packed" .gz)
    gzip -dc "$packed" > "/tmp/$name"
    chmod +x "/tmp/$name"
    echo "== $name"
    "/tmp/$name" --backend webgpu --model www/model --data tests/fixtures/mini --pairs 16 \
      2>&1 | tee "$out/$name.txt" || echo "$name failed"
  done
}

case "${1:-}" in
  prepare) prepare ;;
  run) run ;;
  restore) git checkout -- pkg ;;
  *) echo "usage: bash scripts/gpu-bench.sh prepare | run | restore" >&2; exit 2 ;;
esac
