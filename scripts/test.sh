#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs the whole suite with ctest.
# GPU tests run when a GPU is visible and are reported as skipped ("no GPU") otherwise.
# Extra arguments go to ctest (e.g. -L kernels, -R Matmul).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
cd "${SL_BUILD_DIR:-build}"
ctest --output-on-failure --timeout 600 -j "${SL_JOBS:-$(nproc)}" "$@"
