#!/usr/bin/env bash
# Sets up int4_cuda on a fresh Linux machine (no GPU needed): a virtual environment in .venv with
# the pinned packages, the package itself (editable), and the native build in build/.
#   ./setup.sh            everything
#   ./setup.sh --python   Python side only (skips the CUDA/C++ build)
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first and exactly: on these machines 2.13.0 is a local CPU wheel; a bare range would pull
# a multi-GB CUDA build.
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[test]"
if [ "${1:-}" != "--python" ] && [ -f shims/CMakeLists.txt ]; then
  # CMake >= 3.28 (pip's) for ExecuTorch's imported targets; nvcc compiles without a GPU.
  python -m pip install -q "cmake>=3.28"
  command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build -j"$(nproc)"
fi
echo "int4_cuda set up in $(pwd)/.venv"
