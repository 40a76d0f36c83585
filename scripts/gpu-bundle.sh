#!/usr/bin/env bash
# Prepares .gpu/ (git-ignored) for scripts/gpu-check.sh on the lent GPU machine, which reaches no
# network and has none of our C++ dependencies (it has CUDA, cmake, ninja, a compiler and a Python
# with torch and transformers): Debian 12's .deb files of those libraries (≈ 8 MB, unpacked there into
# /tmp, never into /) and all-MiniLM-L6-v2's config and tokenizer files (its 91 MB of weights are over
# the 64 MiB a call may carry; gpu-check.sh times a model of the same shape with random weights).
# Run here, then on the device: command `bash scripts/gpu-check.sh`, carry [".gpu"].
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS=(nlohmann-json3-dev libcli11-dev libutf8proc-dev libutf8proc2 libzip-dev libzip4 zlib1g-dev
      libcmark-gfm-dev libcmark-gfm0.29.0.gfm.6 libcmark-gfm-extensions-dev libcmark-gfm-extensions0.29.0.gfm.6
      libjemalloc-dev libjemalloc2 libgtest-dev libgmock-dev libssl-dev libssl3
      pkgconf-bin libpkgconf3)
rm -rf .gpu
mkdir -p .gpu/debs .gpu/minilm
(cd .gpu/debs && apt-get download "${PKGS[@]}" 2>&1 | grep -v "^W: Download is performed unsandboxed" || true)
n=$(ls .gpu/debs/*.deb | wc -l)
if [ "$n" -ne "${#PKGS[@]}" ]; then
  echo "gpu-bundle: downloaded $n of ${#PKGS[@]} packages (run 'apt-get update' first?)" >&2
  exit 1
fi
store=$(./build/finepurify -q models path all-MiniLM-L6-v2)
for f in config.json tokenizer.json tokenizer_config.json special_tokens_map.json vocab.txt; do
  cp "$store/$f" .gpu/minilm/
done
# The manifest of what travels, checked by gpu-check.sh before it spends device time.
(cd .gpu && find . -type f ! -name MANIFEST | sort | xargs sha256sum > MANIFEST)
echo "gpu-bundle: .gpu holds $(du -sh .gpu | cut -f1) ($n packages, MiniLM config and tokenizer)"
