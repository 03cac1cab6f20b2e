#!/usr/bin/env bash
# Configures and builds into build/ (or $SL_BUILD_DIR). Extra arguments go to cmake.
# SL_BUILD_TARGET builds one target (e.g. superlinear) instead of everything.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${SL_BUILD_DIR:-build}"
[ -x /usr/local/cuda/bin/nvcc ] && export PATH="/usr/local/cuda/bin:$PATH"
gen=()
command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  cmake -S . -B "$build_dir" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release "$@"
elif [ $# -gt 0 ]; then
  cmake -S . -B "$build_dir" "$@"
fi
cmake --build "$build_dir" --parallel "${SL_JOBS:-$(nproc)}" --target "${SL_BUILD_TARGET:-all}"
