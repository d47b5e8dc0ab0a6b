#!/usr/bin/env bash
# One visit to the offline GPU host (see /work/shared/gpu-host): runs the runtime's checks against
# a prebuilt runtime carried in build-rt/runtime/ and prints a short table last. Builds nothing.
#   carry: .whl .gpu-host build-rt        usage: bash tests/runtime/run_on_gpu_host.sh [OUT_DIR]
set -uo pipefail
out=${1:-${OUT:-/tmp/out}}
mkdir -p "$out"
. tests/gpu_host_env.sh "$out" || exit 1
export INT4_CUDA_RUNTIME_LIB=$PWD/build-rt/runtime/libint4_cuda_runtime.so
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)
echo "gpu: $gpu" | tee "$out/gpu.txt"
timeout 200 python3 -P -m pytest -q -rA -s -p no:cacheprovider tests/runtime >"$out/pytest.log" 2>&1
pytest_rc=$?
grep -E "worst SQNR|PASSED|FAILED|ERROR|SKIPPED|passed|failed" "$out/pytest.log" | tail -40
rm -rf /tmp/mc
[ -f /tmp/mc/cases.pkl ] || timeout 60 python3 tests/runtime/memcheck_run.py /tmp/mc --export-only >"$out/memcheck_export.log" 2>&1
timeout 110 compute-sanitizer --tool memcheck --error-exitcode 9 python3 tests/runtime/memcheck_run.py /tmp/mc \
  >"$out/memcheck.log" 2>&1
mc_rc=$?
tail -4 "$out/memcheck.log"
echo
echo "| check | result |"
echo "|---|---|"
echo "| GPU | $gpu |"
echo "| pytest tests/runtime (gpu + cpu) | rc=$pytest_rc, $(grep -E '[0-9]+ (passed|failed)' "$out/pytest.log" | tail -1) |"
echo "| compute-sanitizer memcheck | rc=$mc_rc, $(grep -E 'ERROR SUMMARY' "$out/memcheck.log" | tail -1) |"
