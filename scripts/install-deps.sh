#!/usr/bin/env bash
# Installs finepurify's build dependencies: Debian 12 (bookworm) packages for the C++ libraries,
# then the project's Python environment .venv (git-ignored) with the pinned PyPI packages of
# requirements.txt; the C++ build links the libtorch inside that venv's torch wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
PKGS=(build-essential clang-16 libclang-rt-16-dev cmake ninja-build pkg-config python3 python3-venv python3-dev
      nlohmann-json3-dev libcli11-dev libfmt-dev libutf8proc-dev libssl-dev libzip-dev
      libcmark-gfm-dev libcmark-gfm-extensions-dev
      libgtest-dev libgmock-dev libbenchmark-dev libjemalloc-dev chromium)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi

PY=${FINEPURIFY_BOOTSTRAP_PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $($PY --version 2>&1)"
  "$PY" -m venv .venv
fi
# pip only downloads what is missing or at another version; torch pulls its CUDA libraries
# (about 5.6 GB in all; libtorch_cpu needs two of them even without a GPU).
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
.venv/bin/python - <<'PY'
import torch, transformers, tokenizers, safetensors
print(f"venv: torch {torch.__version__}, transformers {transformers.__version__}, "
      f"tokenizers {tokenizers.__version__}, safetensors {safetensors.__version__}")
PY
