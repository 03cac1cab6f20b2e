#!/usr/bin/env bash
# Sourced by the device-call scripts (experiments/device_run.sh, attention_run.sh, the A/B scripts):
# $OUT, the build directory and job count, and the steps every call starts with (start_call).
OUT="${OUT:-/tmp/sl-out}"
mkdir -p "$OUT"
export SL_BUILD_DIR=build-device SL_JOBS="$(nproc)"

# The card, toolchain and commit, into $OUT/env.txt and on stdout.
record_env() {
  {
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
    nvcc --version | tail -2
    cmake --version | head -1
    python3 -c "import torch; print('torch', torch.__version__, 'cudnn', torch.backends.cudnn.version())"
    # The device copy's git metadata can lag the tree it carries (seen 2026-11-28: it named the
    # session's first commit), so a tree that differs from HEAD says so; SL_COMMIT names it.
    if [ -n "${SL_COMMIT:-}" ]; then
      echo "commit: $SL_COMMIT"
    else
      local changed note=""
      changed=$(git status --porcelain --untracked-files=no 2>/dev/null | wc -l)
      [ "$changed" -gt 0 ] && note=" + $changed changed files (uncommitted, or stale git metadata)"
      echo "commit: $(git rev-parse --short HEAD 2>/dev/null)$note"
    fi
    date -u
  } > "$OUT/env.txt" 2>&1
  cat "$OUT/env.txt"
}

# Builds into build-device with every core; on failure prints the errors, keeps
# $OUT/build.log and exits the calling script.
build_or_exit() {
  local start; start=$(date +%s)
  if ! bash scripts/build.sh > "$OUT/build.log" 2>&1; then
    echo "BUILD FAILED"; grep -E "error|Error" "$OUT/build.log" | head -40; exit 1
  fi
  echo "build: $(( $(date +%s) - start )) s"
}

# The usual start of a call: the environment, then the build, whose log is dropped when it
# succeeds (a call brings back eight files at most).
start_call() {
  record_env
  build_or_exit
  rm -f "$OUT/build.log"
}

# The test suite (GPU tests included) in build-device; extra arguments go to ctest. Leaves
# $OUT/ctest.log and the table $OUT/tests.md, and prints the table's end and any failure.
run_suite() {
  local start; start=$(date +%s)
  (cd build-device && ctest --output-on-failure --timeout 300 -j 8 \
    --output-junit "$OUT/ctest.xml" "$@" > "$OUT/ctest.log" 2>&1)
  echo "ctest exit: $? ($(( $(date +%s) - start )) s)"
  python3 experiments/summarize_tests.py "$OUT/ctest.xml" > "$OUT/tests.md" 2>&1
  rm -f "$OUT/ctest.xml"
  tail -n 30 "$OUT/tests.md"
  grep -E "\(Failed\)|\(SEGFAULT\)|\(Timeout\)|\*\*\*Failed|\*\*\*Exception" "$OUT/ctest.log" | head -40
}

# The A/B scripts' measurement (experiments/pending_ab.sh, experiments/env_ab.sh), under the
# environment settings given (VAR=value ..., none for the build as it is): `bench attention`
# twice at SL_AB_L (default 64K,1M), GQA 1 and 8, printing the rows' L, GQA, keys/query, search
# GFLOP, search kernel, fwd ms, fwd TFLOP/s, bwd ms, bwd TFLOP/s, peak MiB, forward workspace MiB;
# then a profiled run at 64K and 1M (SL_SPAN_PROFILE=1) printing each case's last forward and
# backward stage times and, for the int8 and stream searches, their counters.
ab_bench() {
  for _ in 1 2; do
    env "$@" ./build-device/superlinear bench attention --L "${SL_AB_L:-64K,1M}" --gqa 1,8 \
      --no-dense --out /tmp/ab > /dev/null 2>&1 || echo "bench failed"
    grep -E "^\| [0-9]" /tmp/ab/attention.md | cut -d'|' -f2-12
  done
  env "$@" SL_SPAN_PROFILE=1 ./build-device/superlinear bench attention --L 64K,1M \
    --gqa 1,8 --no-dense --out /tmp/abp 2>&1 |
    awk '/int8 search|stream search/ {i = $0} /forward stages/ {f = $0} /backward stages/ {b = $0}
      /done/ {print; print f; if (b != "") print b; if (i != "") print i; i = ""; b = ""}'
}
