#!/usr/bin/env bash
# Installs finepurify's build and runtime dependencies from Debian 12 (bookworm) packages.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
PKGS=(build-essential cmake ninja-build pkg-config
      libtorch-dev nlohmann-json3-dev libcli11-dev libfmt-dev libutf8proc-dev libssl-dev
      libgtest-dev libgmock-dev libbenchmark-dev
      libopenblas0-pthread libjemalloc-dev)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi
# Debian's libtorch computes with whatever libblas.so.3 the alternatives system points at: make it OpenBLAS
# (the reference BLAS is ~10x slower for matrix products).
for alt in libblas.so.3-x86_64-linux-gnu liblapack.so.3-x86_64-linux-gnu; do
  cand=$(update-alternatives --list "$alt" 2>/dev/null | grep -m1 openblas-pthread || true)
  if [ -n "$cand" ]; then $SUDO update-alternatives --set "$alt" "$cand" >/dev/null; fi
done
echo "BLAS in use: $(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3)"
