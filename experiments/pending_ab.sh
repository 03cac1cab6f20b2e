#!/usr/bin/env bash
# A/B of pending kernel patches (experiments/pending/*.patch) in one device call, since cards
# differ by a few percent from call to call: the build, the superlinear GPU tests and the
# forward/backward bench at the checkout, then for each patch given: `git apply`, rebuild, the
# superlinear GPU tests, the same bench; `git apply -R`. SL_AB_L picks the lengths (default 64K,1M; GQA 1 and 8). Output: stdout
# only (the bench rows: L, GQA, keys/query, search GFLOP, fwd ms, fwd TFLOP/s, bwd ms; then the
# profiled forward stages at 64K: search, window, build, tiles, merge).
#   bash experiments/pending_ab.sh experiments/pending/search-line-copies.patch ...
set -uo pipefail
cd "$(dirname "$0")/.."
source experiments/device_common.sh
start_call
bench() {
  for _ in 1 2; do
    ./build-device/superlinear bench attention --L "${SL_AB_L:-64K,1M}" --gqa 1,8 --no-dense \
      --out /tmp/ab > /dev/null 2>&1 || echo "bench failed"
    grep -E "^\| [0-9]" /tmp/ab/attention.md | cut -d'|' -f2-8
  done
  SL_SPAN_PROFILE=1 ./build-device/superlinear bench attention --L 64K --gqa 1,8 --no-dense \
    --out /tmp/abp 2>&1 | grep "forward stages" | tail -2
}
echo "== baseline"
timeout 300 ./build-device/tests/kernels_superlinear_gpu_test --gtest_brief=1 2>&1 | tail -3
bench
for patch in "$@"; do
  if ! git apply "$patch"; then
    echo "== $patch: does not apply"
    continue
  fi
  build_or_exit
  echo "== $patch"
  timeout 300 ./build-device/tests/kernels_superlinear_gpu_test --gtest_brief=1 2>&1 | tail -3
  bench
  git apply -R "$patch"
done
