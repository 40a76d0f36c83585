#!/usr/bin/env bash
# One command: install dependencies (Debian packages, and .venv with the pinned PyPI packages of
# requirements.txt), build finepurify against the venv's libtorch (Release, into build/), fetch and
# verify all-MiniLM-L6-v2 into the model store, install the Python front end into .venv, and run the
# demo (plant a backdoor into the vendored BERT, scan, purify, before/after table).
# FINEPURIFY_SKIP_FETCH=1 skips the model fetch, FINEPURIFY_SKIP_DEMO=1 the demo.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/install-deps.sh
if [ ! -f build/CMakeCache.txt ]; then
  # clang's precompiled headers cost ~3 s per file against ~11 s for g++'s (torch's headers are
  # large); any C++20 compiler works: CXX=g++ ./setup.sh.
  compiler=${CXX:-$(command -v clang++-16 || command -v clang++ || command -v g++)}
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$compiler"
fi
cmake --build build -j "$(nproc)"
# The Python front end into the venv (pyproject.toml: scikit-build-core reuses build/, so this only
# links and copies): `import finepurify` in .venv's Python.
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps .
if [ "${FINEPURIFY_SKIP_FETCH:-0}" != "1" ]; then
  ./build/finepurify models fetch all-MiniLM-L6-v2
fi
if [ "${FINEPURIFY_SKIP_DEMO:-0}" != "1" ]; then
  ./build/finepurify demo --out runs/demo
fi
