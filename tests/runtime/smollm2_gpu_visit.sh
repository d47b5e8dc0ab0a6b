#!/usr/bin/env bash
# GPU-host visit for the SmolLM2 end-to-end checks. The GGUF (93 MB) does not fit one call's
# 64 MiB, so it travels in two parts: call 1 `bash tests/runtime/smollm2_gpu_visit.sh part1`
# (carry .smol/part1) stores it in /tmp; call 2 (carry .whl .gpu-host build-rt .smol/part2) joins,
# exports on the host, runs the tests and memcheck, prints a table last. Builds nothing.
set -uo pipefail
if [ "${1:-}" = part1 ]; then cp .smol/part1 /tmp/smol.part1 && ls -la /tmp/smol.part1; exit; fi
out=${OUT:-/tmp/out}; mkdir -p "$out"
[ -f /tmp/smol.part1 ] || { echo "no /tmp/smol.part1: the machine was not kept warm; run part1 again"; exit 3; }
cat /tmp/smol.part1 .smol/part2 > /tmp/smol.gguf
. tests/gpu_host_env.sh "$out" || exit 1
export INT4_CUDA_RUNTIME_LIB=$PWD/build-rt/runtime/libint4_cuda_runtime.so INT4_CUDA_SMOLLM2_DIR=/tmp/smol
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)
timeout 150 python3 -P -m int4_cuda.llm.export_llm --backend cuda --gguf /tmp/smol.gguf --output_name smollm2 \
  --output_dir /tmp/smol --max_seq_length 512 >"$out/export.log" 2>&1; ex_rc=$?
tail -5 "$out/export.log"
timeout 360 python3 -P -m pytest -q -rA -s -p no:cacheprovider tests/runtime >"$out/pytest.log" 2>&1; py_rc=$?
grep -E "smollm2( bf16| fp32)?:|CUDA answer|worst SQNR|FAILED|ERROR|passed|failed" "$out/pytest.log" | tail -30
timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 python3 -P tests/runtime/smollm2_memcheck.py /tmp/smol \
  >"$out/memcheck.log" 2>&1; mc_rc=$?
tail -3 "$out/memcheck.log"
echo
echo "| check | result |"
echo "|---|---|"
echo "| GPU | $gpu |"
echo "| export on host | rc=$ex_rc |"
echo "| pytest tests/runtime (SmolLM2 e2e, every op, CPU checks) | rc=$py_rc, $(grep -E '[0-9]+ (passed|failed)' "$out/pytest.log" | tail -1) |"
echo "| memcheck prefill+decode | rc=$mc_rc, $(grep -E 'ERROR SUMMARY' "$out/memcheck.log" | tail -1) |"
