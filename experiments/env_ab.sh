#!/usr/bin/env bash
# A/B of environment settings in one device call (cards differ by a few percent from call to
# call): the build and the superlinear GPU tests once, then for each setting given (e.g.
# SL_SEARCH_KERNEL=bf16) ab_bench of experiments/device_common.sh under it: the forward/backward
# bench twice, then a profiled forward at 64K and 1M (stage times, and the int8 search's fallback
# and rescoring counts). SL_AB_L picks the lengths (default 64K,1M; GQA 1 and 8). Output: stdout
# only.
#   bash experiments/env_ab.sh SL_SEARCH_KERNEL=bf16 SL_SEARCH_KERNEL=int8
set -uo pipefail
cd "$(dirname "$0")/.."
source experiments/device_common.sh
start_call
timeout 300 ./build-device/tests/kernels_superlinear_gpu_test --gtest_brief=1 2>&1 | tail -3
for setting in "$@"; do
  echo "== $setting"
  ab_bench "$setting"
done
