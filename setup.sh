#!/usr/bin/env bash
# One command: install dependencies, build finepurify (Release, into build/), run the quick-start demo.
# Set FINEPURIFY_SKIP_DEMO=1 to only install and build.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)"
if [ "${FINEPURIFY_SKIP_DEMO:-0}" != "1" ]; then
  ./build/finepurify demo --out runs/demo
fi
