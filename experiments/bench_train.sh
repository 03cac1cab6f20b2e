#!/usr/bin/env bash
# The training benchmark: trains configs/bench_100m.yaml (~99M-parameter hybrid, bf16 on the GPU)
# for a few steps at each sequence length and prints a Markdown table of tokens/s, MFU and peak
# device memory. The numbers are the means over the metrics windows (logging.every steps each)
# after the first, so warmup (allocator growth, first launches) is excluded.
#
#   bash experiments/bench_train.sh                       # T = 4096 (batch 8), 16384 (batch 2)
#   bash experiments/bench_train.sh --runs "4096:16 16384:4" --recompute all
#   bash experiments/bench_train.sh --smoke               # a tiny model on short sequences (CPU)
#
# Options: --runs "T:B ..." sequence length and batch size per run; --steps N (default 20) and
# --every W (default 5) steps per window; --recompute none|all|LETTERS; --out DIR for the logs and
# metrics (default $OUT/bench_train when $OUT is set, else a temporary directory); --set key=value
# is passed to every run. Builds the program first ($SL_BUILD_DIR, default build/).
set -euo pipefail
cd "$(dirname "$0")/.."

runs="4096:8 16384:2"
steps=20
every=5
recompute=none
out=""
smoke=0
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1 ;;
    --runs) runs=$2; shift ;;
    --steps) steps=$2; shift ;;
    --every) every=$2; shift ;;
    --recompute) recompute=$2; shift ;;
    --out) out=$2; shift ;;
    --set) extra+=(--set "$2"); shift ;;
    *) echo "bench_train.sh: unknown argument '$1' (see the header of $0)" >&2; exit 2 ;;
  esac
  shift
done
if [ "$smoke" = 1 ]; then
  runs="64:2 128:1"
  steps=6
  every=2
  extra+=(--set model.vocab_size=256 --set model.d_model=64 --set model.mamba.n_heads=2
          --set model.mamba.head_dim=64 --set model.mamba.state_size=16
          --set model.mamba.chunk_size=32 --set model.attention.n_heads=2
          --set model.attention.n_kv_heads=1 --set model.attention.head_dim=32
          --set model.mlp.intermediate_size=128)
fi
if [ "$steps" -lt $((2 * every)) ]; then
  echo "bench_train.sh: --steps $steps must be at least two windows of --every $every" >&2
  exit 2
fi
if [ -z "$out" ]; then
  if [ -n "${OUT:-}" ]; then out=$OUT/bench_train; else out=$(mktemp -d /tmp/bench_train.XXXXXX); fi
fi
mkdir -p "$out"

build="${SL_BUILD_DIR:-build}"
SL_BUILD_TARGET=superlinear bash scripts/build.sh >"$out/build.log" 2>&1 ||
  { tail -n 30 "$out/build.log" >&2; exit 1; }
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"

# Means of tokens_per_s and mfu over the records after the first, the largest peak_mem_gb:
# "tokens_per_s mfu peak_mem_gb" ("-" where a metric is absent).
summarize() {
  awk '
    function val(key,   s) {
      if (!match($0, "\"" key "\": [^,}]*")) return "";
      s = substr($0, RSTART, RLENGTH); sub(/.*: /, "", s); return s;
    }
    /"tokens_per_s"/ {
      if (++n == 1) next;
      tok += val("tokens_per_s"); m = val("mfu"); p = val("peak_mem_gb");
      if (m != "" && m != "null") { mfu += m; nm++ }
      if (p != "" && p + 0 > peak) { peak = p + 0; has_peak = 1 }
      k++;
    }
    END {
      if (k == 0) { print "- - -"; exit }
      printf "%.0f %s %s\n", tok / k, (nm ? sprintf("%.1f%%", 100 * mfu / nm) : "-"),
             (has_peak ? sprintf("%.2f", peak) : "-");
    }' "$1"
}

params=""
failed=0
table="| T | batch | tokens/step | tokens/s | MFU | peak memory (GB) |
| ---: | ---: | ---: | ---: | ---: | ---: |"
for run in $runs; do
  T=${run%%:*}
  B=${run##*:}
  log="$out/train_T${T}_B${B}.log"
  metrics="$out/metrics_T${T}_B${B}.jsonl"
  rm -f "$metrics"
  echo "bench_train.sh: T=$T batch=$B ($steps steps, windows of $every) -> $log" >&2
  if ! "$build/superlinear" train configs/bench_100m.yaml --set "seq_len=$T" --set "batch_size=$B" \
      --set "steps=$steps" --set "logging.every=$every" --set "logging.metrics=$metrics" \
      --set "recompute=$recompute" "${extra[@]}" >"$log" 2>&1; then
    echo "bench_train.sh: the run T=$T batch=$B failed:" >&2
    tail -n 20 "$log" >&2
    failed=1
    table+="
| $T | $B | $((T * B)) | failed (see $log) | | |"
    continue
  fi
  [ -n "$params" ] || params=$(grep -o 'model: [0-9]* parameters[^;]*; device [^;,]*' "$log" | head -1)
  read -r tok mfu peak < <(summarize "$metrics")
  table+="
| $T | $B | $((T * B)) | $tok | $mfu | $peak |"
done

echo
echo "Training throughput, configs/bench_100m.yaml (recompute: $recompute; ${params:-model line not found})"
echo
echo "$table"
echo
echo "Logs and metrics: $out"
exit "$failed"
