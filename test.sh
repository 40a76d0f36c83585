#!/usr/bin/env bash
# The test suite: unit, parity (golden files in ../shared/goldens) and e2e (shared model + data) tests.
# Pass ctest arguments through, e.g. `./test.sh -L unit` for the fast subset.
set -euo pipefail
cd "$(dirname "$0")"
cmake --build build -j "$(nproc)"
ctest --test-dir build --output-on-failure --timeout 3000 "$@"
