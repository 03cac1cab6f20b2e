#!/usr/bin/env bash
# Installs what the build needs from Debian/Ubuntu packages, when it is missing. Idempotent: a
# second run installs nothing. Used by scripts/test.sh, scripts/train.sh and .ci/run.
set -euo pipefail

need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for pkg in build-essential cmake ninja-build libeigen3-dev libyaml-cpp-dev libhdf5-dev \
           libopenmpi-dev openmpi-bin libgtest-dev python3 python3-venv; do
  have_pkg "$pkg" || need+=("$pkg")
done

if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  if ! { $SUDO apt-get update -qq &&
         DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"; }; then
    # Offline machines (the GPU hosts) may carry these libraries outside dpkg: let CMake decide.
    echo "setup: could not install ${need[*]}; continuing, configure will name anything missing"
  fi
fi

# The tensorboard Python package, in a venv (nothing exported): the test that reads our event
# files with it looks there first. Optional: without it (offline hosts) that test is skipped.
venv="${SL_PY_VENV:-${HOME:-/root}/.cache/superlinear/venv}"
if ! "$venv/bin/python" -c "import tensorboard" >/dev/null 2>&1; then
  if { [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >/dev/null 2>&1; } &&
     "$venv/bin/python" -m pip install -q --disable-pip-version-check --timeout 20 --retries 1 \
       tensorboard >/dev/null 2>&1; then
    echo "setup: installed the tensorboard Python package in $venv"
  else
    echo "setup: could not install the tensorboard Python package in $venv; its test will skip"
  fi
fi

if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
  echo "setup: nvcc found: the CUDA kernels will be built"
else
  echo "setup: nvcc not found: building the CPU-only program"
fi
