#!/usr/bin/env bash
# One device-machine call for the superlinear attention log (issue 4): build with every core,
# run the whole test suite (GPU tests included), then measure PyTorch SDPA's cuDNN backend and
# `superlinear bench attention` (GQA 1 and 8, 4K..1M, backward also from kept partials, stage
# profile on) on the same card. Everything lands in $OUT, eight files at most (what a device call
# brings back): env.txt, tests.md, ctest.log (build.log instead when the build fails), cudnn.csv,
# attention.md, attention.csv, attention.png, bench.err (progress and SL_SPAN_PROFILE stages).
# Usage on the device: bash experiments/attention_run.sh [--max-seconds S] (default 240: later
# superlinear cases predicted past it are skipped and say so in the table).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/sl-out}"
mkdir -p "$OUT"
max_seconds=240
if [ "${1:-}" = "--max-seconds" ]; then max_seconds="$2"; fi
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

start=$(date +%s)
(cd build-device && ctest --output-on-failure --timeout 300 -j 8 --output-junit "$OUT/ctest.xml" \
  > "$OUT/ctest.log" 2>&1)
echo "ctest exit: $? ($(( $(date +%s) - start )) s)"
python3 experiments/summarize_tests.py "$OUT/ctest.xml" > "$OUT/tests.md" 2>&1
rm -f "$OUT/ctest.xml"
tail -n 12 "$OUT/tests.md"
grep -E "\(Failed\)|\(SEGFAULT\)|\(Timeout\)|\*\*\*Failed" "$OUT/ctest.log" | head -20

start=$(date +%s)
python3 experiments/bench_attention_cudnn.py --L 4K,16K,64K,128K,256K,1M --out "$OUT/cudnn.csv" \
  2> "$OUT/bench.err" || echo "cuDNN bench failed: $(tail -3 "$OUT/bench.err")"
echo "cuDNN: $(( $(date +%s) - start )) s"

start=$(date +%s)
SL_SPAN_PROFILE=1 ./build-device/superlinear bench attention --L 4K,16K,64K,128K,256K,1M \
  --gqa 1,8 --keep-partials --cudnn-csv "$OUT/cudnn.csv" --max-seconds "$max_seconds" \
  --out "$OUT" >> "$OUT/bench.err" 2>&1 || echo "superlinear bench failed: $(tail -5 "$OUT/bench.err")"
echo "superlinear bench: $(( $(date +%s) - start )) s"
cat "$OUT/attention.md" 2>/dev/null
