#!/usr/bin/env bash
# Builds and runs every experiments/bench_* program; writes one Markdown report (card, commit,
# date, tables) to the path given (default: experiments/results/bench-<date>.md).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-experiments/results/bench-$(date -u +%Y%m%d-%H%M).md}"
bash scripts/build.sh >/dev/null
bdir="${SL_BUILD_DIR:-build}"
{
  echo "# Kernel benchmarks"
  echo
  echo "- card: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo unknown)"
  echo "- commit: ${SL_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
  echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  for b in "$bdir"/bench_*; do
    [ -x "$b" ] || continue
    echo "## $(basename "$b")"
    echo
    "$b"
    echo
  done
} | tee "$out"
