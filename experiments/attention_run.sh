#!/usr/bin/env bash
# The superlinear attention log (issue 4) in two device calls of under 10 minutes each, on one
# warm machine (the build directory stays between calls):
#   bash experiments/attention_run.sh tests   build with every core, the whole test suite (GPU
#                                             tests included; SL_CTEST_ARGS narrows it), then
#                                             PyTorch SDPA's cuDNN backend (cudnn.csv; copied
#                                             from SL_CUDNN_CSV instead when that is set)
#   bash experiments/attention_run.sh bench   `superlinear bench attention`: GQA 1 and 8, 4K..1M,
#                                             the backward also from kept partials, against the
#                                             cuDNN CSV named by SL_CUDNN_CSV (the first call's,
#                                             committed under experiments/results/), measured
#                                             again when unset; then the stage times of 64K and
#                                             1M in a second, profiled run (SL_SPAN_PROFILE
#                                             synchronises after every stage, so the table's
#                                             times come from the run without it)
# Files land in $OUT, eight at most (what a call brings back): env.txt, tests.md, ctest.log
# (build.log instead when the build fails), cudnn.csv; attention.md, attention.csv,
# attention.png, bench.err (progress and SL_SPAN_PROFILE stages). SL_MAX_SECONDS (default 240)
# bounds the superlinear sweep: later cases predicted past it are skipped and say so.
set -uo pipefail
cd "$(dirname "$0")/.."
stage="${1:-tests}"
source experiments/device_common.sh
start_call

cudnn() {
  if [ -n "${SL_CUDNN_CSV:-}" ]; then
    cp "$SL_CUDNN_CSV" "$OUT/cudnn.csv" || exit 1
    return
  fi
  local t0; t0=$(date +%s)
  python3 experiments/bench_attention_cudnn.py --L 4K,16K,64K,128K,256K,1M --out "$OUT/cudnn.csv" \
    2>> "$OUT/bench.err" || echo "cuDNN bench failed: $(tail -3 "$OUT/bench.err")"
  echo "cuDNN: $(( $(date +%s) - t0 )) s"
}

case "$stage" in
  tests)
    # shellcheck disable=SC2086
    run_suite ${SL_CTEST_ARGS:-}
    cudnn
    ;;
  bench)
    cudnn
    start=$(date +%s)
    ./build-device/superlinear bench attention --L 4K,16K,64K,128K,256K,1M \
      --gqa 1,8 --keep-partials --cudnn-csv "$OUT/cudnn.csv" --max-seconds "${SL_MAX_SECONDS:-240}" \
      --out "$OUT" >> "$OUT/bench.err" 2>&1 ||
      echo "superlinear bench failed: $(tail -5 "$OUT/bench.err")"
    echo "superlinear bench: $(( $(date +%s) - start )) s"
    cat "$OUT/attention.md" 2>/dev/null
    # Stage times only (its table, in a scratch folder, is not the result).
    SL_SPAN_PROFILE=1 ./build-device/superlinear bench attention --L 64K,1M --gqa 1,8 \
      --keep-partials --no-dense --out /tmp/sl-profile >> "$OUT/bench.err" 2>&1 ||
      echo "profiled run failed: $(tail -5 "$OUT/bench.err")"
    ;;
  *)
    echo "usage: bash experiments/attention_run.sh tests|bench" >&2
    exit 2
    ;;
esac
