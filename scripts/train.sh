#!/usr/bin/env bash
# The training command: installs what is missing, builds, and trains.
#   bash scripts/train.sh                                  # configs/quickstart.yaml
#   bash scripts/train.sh CONFIG.yaml [--set key=value ...]
#   bash scripts/train.sh --set steps=50                   # the quickstart, overridden
# The build goes to build/ (or $SL_BUILD_DIR) with $SL_JOBS parallel jobs (default: all cores).
set -euo pipefail
cd "$(dirname "$0")/.."
config=configs/quickstart.yaml
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  config=$1
  shift
fi
bash scripts/setup.sh
# Only the program: the tests and benchmarks are scripts/test.sh's business.
SL_BUILD_TARGET="${SL_BUILD_TARGET:-superlinear}" bash scripts/build.sh
# Idle OpenMP threads sleep instead of spinning: on a shared or small machine spinning threads
# take the cores the next parallel region needs (several times slower on 2 busy cores).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
exec "${SL_BUILD_DIR:-build}/superlinear" train "$config" "$@"
