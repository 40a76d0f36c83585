#!/usr/bin/env bash
# The libFuzzer targets of fuzz/ (ASan + UBSan, any finding aborts), built into build-fuzz/ with
# clang-16. Usage:
#   scripts/fuzz.sh build                 configure and build the targets (and the sanitized tests)
#   scripts/fuzz.sh test [CTEST ARGS]     the unit tests of that sanitized build (./test.sh --sanitize)
#   scripts/fuzz.sh smoke [SECONDS]       each target for SECONDS (default 30) from the committed
#                                         seed corpus; fails on any finding (CI runs this)
#   scripts/fuzz.sh run NAME [ARGS...]    one target for as long as you like, e.g.
#                                         scripts/fuzz.sh run tokenizer -max_total_time=3600 -jobs=2
# Working corpora grow in build-fuzz/corpus/NAME (seeded from fuzz/corpus/NAME); findings are
# written to build-fuzz/findings/ (crash-*, leak-*, timeout-*) and the run exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
B=build-fuzz
TARGETS=(safetensors checkpoint config tokenizer dataset)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:detect_odr_violation=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# Readable stacks in reports: any installed llvm-symbolizer.
if [ -z "${ASAN_SYMBOLIZER_PATH:-}" ]; then
  sym=$(ls /usr/lib/llvm-*/bin/llvm-symbolizer 2>/dev/null | tail -1 || true)
  [ -n "$sym" ] && export ASAN_SYMBOLIZER_PATH=$sym
fi

build() {
  if [ ! -f $B/CMakeCache.txt ]; then
    cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="${CXX:-clang++-16}" \
      -DFINEPURIFY_FUZZ=ON -DFINEPURIFY_BUILD_BENCH=OFF
  fi
  cmake --build $B -j "$(nproc)" "$@"
}

run_one() {  # NAME SECONDS [libFuzzer args]
  local name=$1 secs=$2; shift 2
  mkdir -p $B/corpus/$name $B/findings
  cp -n fuzz/corpus/$name/* $B/corpus/$name/ 2>/dev/null || true
  echo "fuzz: $name ($([ "$secs" = 0 ] && echo "until stopped or -max_total_time" || echo "${secs}s"))"
  local rc=0
  $B/fuzz/fuzz_$name $B/corpus/$name -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 \
    -max_len=65536 -artifact_prefix=$B/findings/$name- -print_final_stats=1 "$@" > $B/findings/$name.log 2>&1 || rc=$?
  # The summary, or the whole report of a finding.
  if [ $rc -eq 0 ]; then
    grep -E "^(Done [0-9]+ runs|stat::number_of_executed_units|stat::peak_rss_mb)" $B/findings/$name.log || true
  else
    tail -n 60 $B/findings/$name.log
  fi
  return $rc
}

case "${1:-smoke}" in
  build) shift; build "$@" ;;
  test) shift; ctest --test-dir $B -L unit --output-on-failure --timeout 1200 -j "$(nproc)" "$@" ;;
  smoke)
    secs=${2:-30}
    build $(printf -- "--target fuzz_%s " "${TARGETS[@]}")
    status=0
    for t in "${TARGETS[@]}"; do run_one "$t" "$secs" || { echo "fuzz: $t FAILED (see $B/findings)"; status=1; }; done
    exit $status ;;
  run) shift; name=$1; shift; build --target fuzz_$name; run_one "$name" "${FUZZ_SECONDS:-0}" "$@" ;;
  *) echo "usage: scripts/fuzz.sh build | test [ctest args] | smoke [SECONDS] | run NAME [libFuzzer args]" >&2; exit 2 ;;
esac
