#!/usr/bin/env bash
# Kernel sandbox for Note [wide runs] and Note [backward groups] (one device call): build, the
# superlinear GPU tests, then `superlinear bench attention` at SL_PROBE_L (64K and 1M), GQA 1
# and 8, once per value in SL_PROBE_RUNS of the variable SL_PROBE_VAR (default
# SL_SPAN_RUN_BLOCKS, the run width; "auto" leaves it unset), and once more with the stage
# profiler at the default. SL_PROBE_TESTS filters the tests (gtest syntax; default all). The
# tests and each bench run under a time limit, so a hung kernel costs minutes, not the call.
# Files in $OUT: env.txt, gpu-tests.log, runs-<value>.md (the tables) and probe.err (the stage
# times and progress).
set -uo pipefail
cd "$(dirname "$0")/.."
source experiments/device_common.sh
start_call
start=$(date +%s)
timeout 300 ./build-device/tests/kernels_superlinear_gpu_test \
  --gtest_filter="${SL_PROBE_TESTS:-*}" > "$OUT/gpu-tests.log" 2>&1
echo "superlinear GPU tests: exit $? ($(( $(date +%s) - start )) s)"
grep -E "^\[  (PASSED|FAILED|SKIPPED) \]|tests ran" "$OUT/gpu-tests.log" | head -20
var="${SL_PROBE_VAR:-SL_SPAN_RUN_BLOCKS}"
for w in ${SL_PROBE_RUNS:-1 auto}; do
  start=$(date +%s)
  echo "== $var=$w" >> "$OUT/probe.err"
  if [ "$w" = auto ]; then unset "$var"; else export "$var=$w"; fi
  timeout 240 ./build-device/superlinear bench attention --L "${SL_PROBE_L:-64K,1M}" \
    --gqa 1,8 --no-dense --out "/tmp/probe-$w" >> "$OUT/probe.err" 2>&1 ||
    echo "bench failed: $(tail -3 "$OUT/probe.err")"
  cp "/tmp/probe-$w/attention.md" "$OUT/runs-$w.md" 2>/dev/null
  echo "$var=$w: $(( $(date +%s) - start )) s"
  grep -E "^\| [0-9]" "$OUT/runs-$w.md" | cut -d'|' -f2-15
done
unset "$var"
echo "== profiled, default $var" >> "$OUT/probe.err"
SL_SPAN_PROFILE=1 timeout 240 ./build-device/superlinear bench attention --L "${SL_PROBE_L:-64K,1M}" \
  --gqa 1,8 --no-dense --out /tmp/probe-profile >> "$OUT/probe.err" 2>&1 ||
  echo "profiled bench failed: $(tail -3 "$OUT/probe.err")"
