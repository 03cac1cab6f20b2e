#!/usr/bin/env bash
# One device-machine call: build with every core, run the whole test suite (GPU tests included)
# and the benchmarks, and leave the logs in $OUT (env.txt, build.log, ctest.log, tests.md,
# bench.md).
# Usage on the device: bash experiments/device_run.sh [ctest args...]
set -uo pipefail
cd "$(dirname "$0")/.."
source experiments/device_common.sh
record_env
build_or_exit
run_suite "$@"
if [ "${SL_SKIP_BENCH:-0}" != 1 ]; then
  bash experiments/run_benchmarks.sh "$OUT/bench.md" > /dev/null 2> "$OUT/bench.err" || echo "benchmarks failed: $(tail -5 "$OUT/bench.err")"
  cat "$OUT/bench.md" 2>/dev/null
fi
