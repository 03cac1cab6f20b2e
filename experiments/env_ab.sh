#!/usr/bin/env bash
# A/B of environment settings in one device call (cards differ by a few percent from call to
# call): the build and the superlinear GPU tests once, then for each setting given (e.g.
# SL_SEARCH_KERNEL=bf16) the forward/backward bench twice and a profiled forward at 64K
# (SL_SPAN_PROFILE=1: stage times, and the int8 search's fallback and rescoring counts).
# SL_AB_L picks the lengths (default 64K,1M; GQA 1 and 8). Output: stdout only (the bench rows:
# L, GQA, keys/query, search GFLOP, fwd ms, fwd TFLOP/s, bwd ms).
#   bash experiments/env_ab.sh SL_SEARCH_KERNEL=bf16 SL_SEARCH_KERNEL=int8
set -uo pipefail
cd "$(dirname "$0")/.."
source experiments/device_common.sh
start_call
timeout 300 ./build-device/tests/kernels_superlinear_gpu_test --gtest_brief=1 2>&1 | tail -3
for setting in "$@"; do
  echo "== $setting"
  for _ in 1 2; do
    env "$setting" ./build-device/superlinear bench attention --L "${SL_AB_L:-64K,1M}" --gqa 1,8 \
      --no-dense --out /tmp/ab > /dev/null 2>&1 || echo "bench failed"
    grep -E "^\| [0-9]" /tmp/ab/attention.md | cut -d'|' -f2-8
  done
  env "$setting" SL_SPAN_PROFILE=1 ./build-device/superlinear bench attention --L 64K,1M \
    --gqa 1,8 --no-dense --out /tmp/abp 2>&1 |
    awk '/int8 search/ {i = $0} /forward stages/ {f = $0} /done/ {print; print f; if (i != "") print i; i = ""}'
done
