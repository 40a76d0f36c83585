#!/usr/bin/env bash
# Issue 15's GPU check, one prepared run on the lent GPU machine (see docs/perf.md, "GPU"):
#   here:   bash scripts/gpu-bundle.sh                       (.gpu/: the C++ dependencies, MiniLM's config)
#   device: run(command="bash scripts/gpu-check.sh", carry=[".gpu"], timeout_s=590)
# There it unpacks the dependencies into /tmp (never into /), builds the CLI and the CUDA parity tests
# against that machine's own torch with the CUDA backend (build-gpu/), runs the tests with a missing
# device counted as a failure, the side-by-side benchmark (finepurify against transformers on the same
# torch, both on the GPU) on a random bert-base shape and on all-MiniLM-L6-v2's shape, then plants a
# BadWord backdoor into a random-weight model of all-MiniLM-L6-v2's shape (the real weights are too
# large to carry) and times a full purify: Fisher on 1,000 clean rows and a 4-point rho sweep.
# Everything goes to $OUT (gpu-check.log, summary.txt, purify_report.json); each step has its own
# time limit and the next step runs even when one fails.
# Locally, as a rehearsal of everything but CUDA: FP_GPU_DEVICE=cpu FP_GPU_BUILD=build FP_GPU_SMALL=1.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-check.log") 2>&1
DEVICE=${FP_GPU_DEVICE:-cuda}
SMALL=${FP_GPU_SMALL:-0}
PY=${FP_GPU_PYTHON:-$(command -v python3)}
DEPS=/tmp/fp-deps
TIMEV=$(command -v /usr/bin/time >/dev/null && echo "/usr/bin/time -v" || true)  # peak RSS where GNU time exists
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"
t_start=$(date +%s)

# step NAME LIMIT_S COMMAND...: runs it under a time limit, records rc and seconds in summary.txt.
step() {
  local name=$1 limit=$2; shift 2
  echo; echo "=== $name (limit ${limit}s) ==="
  local t0=$(date +%s)
  timeout "$limit" bash -c '"$@"' _ "$@"  # bash -c: the steps are exported shell functions
  local rc=$?
  local dt=$(( $(date +%s) - t0 ))
  echo "=== $name: rc $rc, ${dt}s ==="
  printf '%-28s rc %3d  %4ds\n' "$name" "$rc" "$dt" >> "$SUMMARY"
  return $rc
}

echo "gpu-check: $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo ?), device $DEVICE"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
echo "cores $(nproc); python $PY: $("$PY" -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(), "| transformers", transformers.__version__)' 2>&1)"
CXX=${CXX:-$(command -v clang++ || command -v g++ || true)}
echo "compiler: ${CXX:-none} $($CXX --version 2>/dev/null | head -1)"

# --- dependencies: the carried .deb files unpacked into /tmp ------------------------------------------
deps() {
  [ -f .gpu/MANIFEST ] || { echo "no .gpu/MANIFEST: run scripts/gpu-bundle.sh here and carry .gpu"; return 1; }
  (cd .gpu && sha256sum --quiet -c MANIFEST) || return 1
  rm -rf "$DEPS" && mkdir -p "$DEPS"
  for f in .gpu/debs/*.deb; do dpkg-deb -x "$f" "$DEPS" || return 1; done
  # pkg-config: the carried pkgconf, seeing only the carried .pc files, their /usr paths under $DEPS
  mkdir -p "$DEPS/bin"
  cat > "$DEPS/bin/pkg-config" <<EOF
#!/bin/sh
export LD_LIBRARY_PATH=$DEPS/usr/lib/x86_64-linux-gnu\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
export PKG_CONFIG_LIBDIR=$DEPS/usr/lib/x86_64-linux-gnu/pkgconfig:$DEPS/usr/share/pkgconfig
export PKG_CONFIG_SYSROOT_DIR=$DEPS
exec $DEPS/usr/bin/pkgconf "\$@"
EOF
  chmod +x "$DEPS/bin/pkg-config"
  "$DEPS/bin/pkg-config" --cflags --libs libutf8proc libzip libcmark-gfm jemalloc
}

BUILD=${FP_GPU_BUILD:-}
configure_and_build() {
  [ -n "$CXX" ] || { echo "no C++ compiler"; return 1; }
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$CXX" \
    -DFINEPURIFY_PYTHON="$PY" -DFINEPURIFY_CUDA=ON -DFINEPURIFY_BUILD_PYTHON=OFF -DFINEPURIFY_BUILD_BENCH=OFF \
    -DCMAKE_PREFIX_PATH="$DEPS/usr" -DOPENSSL_ROOT_DIR="$DEPS/usr" -DPKG_CONFIG_EXECUTABLE="$DEPS/bin/pkg-config" \
    -DCMAKE_BUILD_RPATH="$DEPS/usr/lib/x86_64-linux-gnu" -DFP_SHARED_DIR="$ROOT/.gpu/no-shared" || return 1
  cmake --build build-gpu -j "$(nproc)" --target finepurify_cli test-cuda-purify-unit
}

export ROOT OUT DEVICE PY DEPS CXX TIMEV
export -f deps configure_and_build
if [ -z "$BUILD" ]; then
  step deps 60 deps || { echo "gpu-check: dependencies missing; stopping"; cat "$SUMMARY"; exit 1; }
  step build 330 configure_and_build || { echo "gpu-check: build failed; stopping"; cat "$SUMMARY"; exit 1; }
  BUILD=build-gpu
fi
FP=$ROOT/$BUILD/finepurify
TEST_CUDA=$ROOT/$BUILD/tests/test-cuda-purify-unit

# --- CUDA against CPU on tiny models (a missing device fails) -----------------------------------------
if [ "$DEVICE" = cuda ]; then
  step test-cuda 120 env FINEPURIFY_EXPECT_CUDA=1 "$TEST_CUDA"
else
  step test-cuda-skips 60 "$TEST_CUDA"
fi

# --- a model of all-MiniLM-L6-v2's shape and tokenizer, random weights (transformers' initialisation) --
MINI=/tmp/fp-minilm-random
make_minilm() {
  "$PY" - "$ROOT/.gpu/minilm" "$MINI" <<'PY'
import shutil, sys, torch
from transformers import BertConfig, BertModel
src, dst = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
BertModel(BertConfig.from_pretrained(src), add_pooling_layer=False).save_pretrained(dst, safe_serialization=True)
for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
    shutil.copy(f"{src}/{f}", f"{dst}/{f}")
print("random-weight all-MiniLM-L6-v2 shape at", dst)
PY
}
export MINI
export -f make_minilm
step minilm-shape 120 make_minilm

# --- side by side with transformers on the same torch and device --------------------------------------
STEPS=20; REPEATS=3; BB=32
if [ "$SMALL" = 1 ]; then STEPS=2; REPEATS=1; BB=8; fi
side_by_side() { "$PY" bench/compare-hf.py --binary "$FP" --device "$DEVICE" --threads "$(nproc)" --steps $STEPS --repeats $REPEATS "$@"; }
export FP STEPS REPEATS
export -f side_by_side
step compare-bert-base-128 150 side_by_side --preset bert-base --batch-size $BB --seq-len 128
step compare-minilm-sst2-64 120 side_by_side --model "$MINI" --data assets/data/sst2/dev.tsv --padding longest --seq-len 64 --batch-size $BB
step compare-minilm-random-64 90 side_by_side --model "$MINI" --batch-size $BB --seq-len 64

# --- a full purify: BadWord planted into the random-weight MiniLM shape, 1,000 clean rows, 4 points ---
W=/tmp/fp-gpu-work
rm -rf "$W" && mkdir -p "$W"
NCLEAN=1000; NTRAIN=4000; NTEST=1000; NDEV=300
if [ "$SMALL" = 1 ]; then NCLEAN=48; NTRAIN=64; NTEST=40; NDEV=24; fi
head -n $((NTRAIN + 1)) assets/data/sst2/train.tsv > "$W/attacker.tsv"
{ head -n 1 assets/data/sst2/train.tsv; tail -n +$((NTRAIN + 2)) assets/data/sst2/train.tsv | head -n $NCLEAN; } > "$W/clean.tsv"
head -n $((NDEV + 1)) assets/data/sst2/dev.tsv > "$W/clean_dev.tsv"
head -n $((NTEST + 1)) assets/data/sst2/test.tsv > "$W/test.tsv"
attack() {
  "$FP" --device "$DEVICE" attack --method badword --pretrained "$MINI" --train "$W/attacker.tsv" --test "$W/test.tsv" \
    --target-label 1 --max-length 64 --epochs 2 --lr 1e-4 --seed 1 --out "$W/suspect"
}
purify() {
  $TIMEV "$FP" --device "$DEVICE" purify --pretrained "$MINI" --suspect "$W/suspect" \
    --clean "$W/clean.tsv" --clean-dev "$W/clean_dev.tsv" --attack-test "$W/suspect/triggered_test.tsv" \
    --target-label 1 --attack-test-paired --test "$W/suspect/clean_test.tsv" --max-length 64 --seed 1 \
    --max-acc-drop 3 --grid 0.1,0.2,0.3,0.5 --sweep --epochs 2 --out "$W/purified" \
    && cp "$W/purified/purify_report.json" "$OUT/"
}
export W
export -f attack purify
step attack-badword 150 attack
step purify-4-points 240 purify

echo; echo "=== summary (total $(( $(date +%s) - t_start ))s) ==="
cat "$SUMMARY"
