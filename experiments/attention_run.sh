#!/usr/bin/env bash
# The superlinear attention log (issue 4) in two device calls of under 10 minutes each, on one
# warm machine (the build directory stays between calls):
#   bash experiments/attention_run.sh tests   build with every core, the whole test suite (GPU
#                                             tests included; SL_CTEST_ARGS narrows it), then
#                                             PyTorch SDPA's cuDNN backend (cudnn.csv)
#   bash experiments/attention_run.sh bench   `superlinear bench attention`: GQA 1 and 8, 4K..1M,
#                                             the backward also from kept partials, stage profile
#                                             on, against the cuDNN CSV named by SL_CUDNN_CSV
#                                             (the first call's, committed under
#                                             experiments/results/), measured again when unset
# Files land in $OUT, eight at most (what a call brings back): env.txt, tests.md, ctest.log
# (build.log instead when the build fails), cudnn.csv; attention.md, attention.csv,
# attention.png, bench.err (progress and SL_SPAN_PROFILE stages). SL_MAX_SECONDS (default 240)
# bounds the superlinear sweep: later cases predicted past it are skipped and say so.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/sl-out}"
mkdir -p "$OUT"
stage="${1:-tests}"
export SL_BUILD_DIR=build-device SL_JOBS="$(nproc)"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
  nvcc --version | tail -2
  python3 -c "import torch; print('torch', torch.__version__, 'cudnn', torch.backends.cudnn.version())"
  echo "commit: ${SL_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null)}"
  date -u
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

start=$(date +%s)
if ! bash scripts/build.sh > "$OUT/build.log" 2>&1; then
  echo "BUILD FAILED"; grep -E "error|Error" "$OUT/build.log" | head -40; exit 1
fi
rm -f "$OUT/build.log"
echo "build: $(( $(date +%s) - start )) s"

cudnn() {
  local t0; t0=$(date +%s)
  python3 experiments/bench_attention_cudnn.py --L 4K,16K,64K,128K,256K,1M --out "$OUT/cudnn.csv" \
    2>> "$OUT/bench.err" || echo "cuDNN bench failed: $(tail -3 "$OUT/bench.err")"
  echo "cuDNN: $(( $(date +%s) - t0 )) s"
}

case "$stage" in
  tests)
    start=$(date +%s)
    # shellcheck disable=SC2086
    (cd build-device && ctest --output-on-failure --timeout 300 -j 8 \
      --output-junit "$OUT/ctest.xml" ${SL_CTEST_ARGS:-} > "$OUT/ctest.log" 2>&1)
    echo "ctest exit: $? ($(( $(date +%s) - start )) s)"
    python3 experiments/summarize_tests.py "$OUT/ctest.xml" > "$OUT/tests.md" 2>&1
    rm -f "$OUT/ctest.xml"
    tail -n 12 "$OUT/tests.md"
    grep -E "\(Failed\)|\(SEGFAULT\)|\(Timeout\)|\*\*\*Failed" "$OUT/ctest.log" | head -20
    cudnn
    ;;
  bench)
    if [ -n "${SL_CUDNN_CSV:-}" ]; then
      cp "$SL_CUDNN_CSV" "$OUT/cudnn.csv" || exit 1
    else
      cudnn
    fi
    start=$(date +%s)
    SL_SPAN_PROFILE=1 ./build-device/superlinear bench attention --L 4K,16K,64K,128K,256K,1M \
      --gqa 1,8 --keep-partials --cudnn-csv "$OUT/cudnn.csv" --max-seconds "${SL_MAX_SECONDS:-240}" \
      --out "$OUT" >> "$OUT/bench.err" 2>&1 ||
      echo "superlinear bench failed: $(tail -5 "$OUT/bench.err")"
    echo "superlinear bench: $(( $(date +%s) - start )) s"
    cat "$OUT/attention.md" 2>/dev/null
    ;;
  *)
    echo "usage: bash experiments/attention_run.sh tests|bench" >&2
    exit 2
    ;;
esac
