#!/usr/bin/env bash
# Prepare, on a machine WITH network, the wheels scripts/device_check.sh installs on a GPU
# machine WITHOUT network (which has Python 3.12, PyTorch with CUDA, torchvision, timm, onnx,
# onnxruntime, opencv, scikit-image and pytest already).
#
#   scripts/device_wheels.sh [OUT_DIR]        (default outputs/device_wheels, about 4 MB)
#
# Only the project's other pure-Python (and two small compiled) dependencies, for CPython 3.12
# on manylinux x86_64, each pinned as in scripts/requirements-ml.txt; --no-deps so nothing
# already on the GPU machine (torch, numpy, ...) is fetched again. Fails above 60 MB.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/outputs/device_wheels}"
mkdir -p "$OUT"

pin() {  # the version pinned in requirements-ml.txt (a bare name when unpinned there)
  local line
  line="$(grep -iE "^$1==" "$ROOT/scripts/requirements-ml.txt" | head -n1 | sed 's/[[:space:]]*#.*//')"
  echo "${line:-$1}"
}

PACKAGES=(
  "$(pin segment-anything)"   # SAM's modules and the official generator (parity)
  "$(pin open-clip-torch)"    # CLIP towers and tokenizer
  "$(pin mobilesam-mirror)"   # TinyViT of vit_t
  "$(pin pycocotools)"        # RLE
  ftfy wcwidth regex          # open_clip's tokenizer
  pyyaml                      # parameter files (timm brings it too; small)
)

python3 -m pip download --only-binary=:all: --no-deps \
  --python-version 3.12 --implementation cp --abi cp312 \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux_2_28_x86_64 \
  -d "$OUT" "${PACKAGES[@]}"

size_mb=$(du -sm "$OUT" | cut -f1)
echo "device wheels in $OUT: ${size_mb} MB"
ls -1 "$OUT"
if [ "$size_mb" -gt 60 ]; then
  echo "device wheels exceed 60 MB" >&2
  exit 1
fi
