#!/usr/bin/env bash
# Builds and runs every experiments/bench_* program, then bench_ssd_torch.py where torch and
# transformers import; writes one Markdown report (card, commit, date, tables) to the path given
# (default: experiments/results/bench-<date>.md).
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
  if python3 -c "import torch, transformers" >/dev/null 2>&1; then
    echo "## bench_ssd_torch.py (transformers' PyTorch Mamba-2 SSD path)"
    echo
    python3 experiments/bench_ssd_torch.py || echo "bench_ssd_torch.py failed"
    echo
  fi
} | tee "$out"
