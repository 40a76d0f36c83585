#!/usr/bin/env bash
# The test suite: the C++ tests through ctest (unit, parity against the golden files in
# ../shared/goldens, e2e on the shared model and data), then the Python suite (tests/python: the
# real transformers/tokenizers/torch of .venv as the reference client).
# Arguments go to ctest, e.g. `./test.sh -L unit`; FINEPURIFY_SKIP_PYTHON=1 skips pytest.
# `./test.sh --sanitize` instead builds everything with ASan + UBSan (clang-16, build-fuzz/; any
# finding aborts), runs the unit tests there and a smoke run of every fuzz target
# (FINEPURIFY_FUZZ_SECONDS each, default 30). CI runs both.
set -euo pipefail
cd "$(dirname "$0")"
if [ "${1:-}" = "--sanitize" ]; then
  shift
  bash scripts/fuzz.sh build
  bash scripts/fuzz.sh test "$@"
  bash scripts/fuzz.sh smoke "${FINEPURIFY_FUZZ_SECONDS:-30}"
  exit 0
fi
cmake --build build -j "$(nproc)"
ctest --test-dir build --output-on-failure --timeout 3000 "$@"
if [ "${FINEPURIFY_SKIP_PYTHON:-0}" != "1" ]; then
  .venv/bin/python -m pytest tests/python -q -ra -p no:cacheprovider
fi
