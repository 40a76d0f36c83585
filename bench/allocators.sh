#!/usr/bin/env bash
# Side-by-side allocator comparison for libtorch CPU training, in one run on one machine:
# glibc malloc defaults, glibc with raised mmap/trim thresholds, and jemalloc without decay
# (what the finepurify CLI links and configures). Usage: bench/allocators.sh [build-dir]
set -euo pipefail
B=${1:-build}/bench/bench-purify
F='BM_FineTuneStep/0/64'
JE=$(ls /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 2>/dev/null || true)
echo "== glibc malloc (defaults)"
"$B" --benchmark_filter="$F" 2>/dev/null | grep BM_
echo "== glibc malloc, mmap_threshold/trim_threshold = 4 GiB"
GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296 \
  "$B" --benchmark_filter="$F" 2>/dev/null | grep BM_
if [ -n "$JE" ]; then
  echo "== jemalloc, dirty_decay_ms:-1,muzzy_decay_ms:-1"
  LD_PRELOAD="$JE" MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 "$B" --benchmark_filter="$F" 2>/dev/null | grep BM_
  echo "== jemalloc, default decay"
  LD_PRELOAD="$JE" "$B" --benchmark_filter="$F" 2>/dev/null | grep BM_
fi
