#!/usr/bin/env bash
# The test suite: the C++ tests through ctest (unit, parity against the golden files in
# ../shared/goldens, e2e on the shared model and data), then the Python suite (tests/python: the
# real transformers/tokenizers/torch of .venv as the reference client).
# Arguments go to ctest, e.g. `./test.sh -L unit`; FINEPURIFY_SKIP_PYTHON=1 skips pytest.
set -euo pipefail
cd "$(dirname "$0")"
cmake --build build -j "$(nproc)"
ctest --test-dir build --output-on-failure --timeout 3000 "$@"
if [ "${FINEPURIFY_SKIP_PYTHON:-0}" != "1" ]; then
  .venv/bin/python -m pytest tests/python -q -ra -p no:cacheprovider
fi
