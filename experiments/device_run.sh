#!/usr/bin/env bash
# One device-machine call: build with every core, run the whole test suite (GPU tests included)
# and the benchmarks, and leave the logs in $OUT (env.txt, build.log, ctest.log, bench.md).
# Usage on the device: bash experiments/device_run.sh [ctest args...]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/sl-out}"
mkdir -p "$OUT"
export SL_BUILD_DIR=build-device SL_JOBS="$(nproc)"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
  nvcc --version | tail -2
  cmake --version | head -1
  echo "commit: ${SL_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null)}"
  date -u
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
start=$(date +%s)
if ! bash scripts/build.sh > "$OUT/build.log" 2>&1; then
  echo "BUILD FAILED"; grep -E "error|Error" "$OUT/build.log" | head -40; exit 1
fi
echo "build: $(( $(date +%s) - start )) s"
(cd build-device && ctest --output-on-failure --timeout 300 -j 8 --output-junit "$OUT/ctest.xml" "$@" > "$OUT/ctest.log" 2>&1)
echo "ctest exit: $?"
python3 experiments/summarize_tests.py "$OUT/ctest.xml" > "$OUT/tests.md" 2>&1 && tail -n 30 "$OUT/tests.md"
grep -E "tests passed|tests failed|Failed|\*\*\*|Skipped" "$OUT/ctest.log" | grep -v "^ *[0-9]*/[0-9]* Test.*Passed" | head -60
if [ "${SL_SKIP_BENCH:-0}" != 1 ]; then
  bash experiments/run_benchmarks.sh "$OUT/bench.md" > /dev/null 2> "$OUT/bench.err" || echo "benchmarks failed: $(tail -5 "$OUT/bench.err")"
  cat "$OUT/bench.md" 2>/dev/null
fi
