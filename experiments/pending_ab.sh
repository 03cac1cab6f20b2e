#!/usr/bin/env bash
# A/B of pending kernel patches (experiments/pending/*.patch) in one device call, since cards
# differ by a few percent from call to call: the build, the superlinear GPU tests and the
# forward/backward bench at the checkout, then for each patch given: `git apply`, rebuild, the
# superlinear GPU tests, the same bench; `git apply -R`. The bench is ab_bench of
# experiments/device_common.sh (SL_AB_L picks the lengths, default 64K,1M; GQA 1 and 8).
# Output: stdout only.
#   bash experiments/pending_ab.sh experiments/pending/search-line-copies.patch ...
set -uo pipefail
cd "$(dirname "$0")/.."
source experiments/device_common.sh
start_call
echo "== baseline"
timeout 300 ./build-device/tests/kernels_superlinear_gpu_test --gtest_brief=1 2>&1 | tail -25
ab_bench
for patch in "$@"; do
  if ! git apply "$patch"; then
    echo "== $patch: does not apply"
    continue
  fi
  build_or_exit
  echo "== $patch"
  timeout 300 ./build-device/tests/kernels_superlinear_gpu_test --gtest_brief=1 2>&1 | tail -25
  ab_bench
  git apply -R "$patch"
done
# Build the tree as it is again: the next call's copy of the working tree keeps the sources'
# older times, so ninja would otherwise keep the last patch's objects (session 20, call 7).
[ "$#" -gt 0 ] && build_or_exit
