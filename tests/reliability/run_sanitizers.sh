#!/usr/bin/env bash
# GPU host, issue #8: compute-sanitizer racecheck and initcheck (memcheck is in
# tests/runtime/run_on_gpu_host.sh) over every runtime op program (tests/runtime/memcheck_run.py:
# all op families, decode + prefill int4 matmuls, KV-cache steps) and over every int4_plain_mm
# path (benchmarks/sanitize_int4_plain_mm.py). Carry .whl .gpu-host build-rt (with
# build-rt/shims/libint4_cuda_shims.so). Builds nothing; prints a table last.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
. tests/gpu_host_env.sh "$out" || exit 1
export INT4_CUDA_RUNTIME_LIB=$PWD/build-rt/runtime/libint4_cuda_runtime.so
timeout 90 python3 -P tests/runtime/memcheck_run.py /tmp/mc --export-only >"$out/export.log" 2>&1
row() { echo "| $1 | $2 | rc=$3, $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$4" | tail -1) |"; }
rows=()
for tool in racecheck initcheck; do
  timeout 170 compute-sanitizer --tool $tool --error-exitcode 9 python3 -P tests/runtime/memcheck_run.py /tmp/mc \
    >"$out/rt_$tool.log" 2>&1; rc=$?
  rows+=("$(row "runtime programs" $tool $rc "$out/rt_$tool.log")")
  timeout 120 compute-sanitizer --tool $tool --error-exitcode 9 python3 -P benchmarks/sanitize_int4_plain_mm.py \
    >"$out/mm_$tool.log" 2>&1; rc=$?
  rows+=("$(row "int4_plain_mm, every M path and variant" $tool $rc "$out/mm_$tool.log")")
done
for f in "$out"/*_racecheck.log "$out"/*_initcheck.log; do echo "== $f"; grep -E "^=========" "$f" | head -6; done
echo
echo "| program | tool | result |"
echo "|---|---|---|"
printf '%s\n' "${rows[@]}"
