#!/usr/bin/env bash
# One visit to the GPU host for issue #8's GPU faults: carry .whl .gpu-host build-rt (a runtime
# built from this tree; see tests/runtime/run_on_gpu_host.sh). Builds nothing.
#   bash tests/reliability/run_gpu_faults.sh [OUT_DIR]
set -uo pipefail
out=${1:-${OUT:-/tmp/out}}
mkdir -p "$out"
. tests/gpu_host_env.sh "$out" || exit 1
export INT4_CUDA_RUNTIME_LIB=$PWD/build-rt/runtime/libint4_cuda_runtime.so
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1 | tee "$out/gpu.txt"
timeout "${GPU_FAULTS_TIMEOUT:-240}" python3 -P tests/reliability/gpu_faults.py "$out" 2>"$out/gpu_faults.err"
rc=$?
tail -5 "$out/gpu_faults.err"
exit $rc
