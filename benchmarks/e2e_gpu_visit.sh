#!/usr/bin/env bash
# GPU-host visit for the end-to-end benchmark of issue #7 (benchmarks/e2e_decode.py + peers_e2e.py).
# Builds nothing: carries the slim build folder build-rt/ (build-rt/runner/: int4_cuda_runner,
# int4_cuda_tokenizer_tool; build-rt/runtime/: libint4_cuda_backend.so), made by `bash tests/runtime/decode_gpu_visit.sh
# slim` after building THIS tree: the exports are made on the host from this tree's Python, and a
# runner older than the exporter refuses them ("opcode N, which this runtime does not know").
# SmolLM2's GGUF travels in two parts and the wheels with the second (64 MiB per call), so one warm
# machine takes these calls in a row (results accumulate in /tmp/e2e; each call fits 10 minutes):
#   call 1: bash benchmarks/e2e_gpu_visit.sh part1                                 carry .smol/part1
#   call 2: bash tests/runtime/decode_gpu_visit.sh export                          carry .smol/part2 .whl .gpu-host
#           (joins the GGUF into /tmp/smol.gguf and installs the wheels into /tmp/site)
#   call 3: E2E_COMMIT=<sha> bash benchmarks/e2e_gpu_visit.sh ours                 carry .gpu-host build-rt
#           (prompts, the three exports, the runner on each, the copy bandwidth; ~5 min)
#   call 4: E2E_COMMIT=<sha> bash benchmarks/e2e_gpu_visit.sh peers smollm2 llama3.2-1b    (same carry)
#   call 5: E2E_COMMIT=<sha> bash benchmarks/e2e_gpu_visit.sh peers llama3-8b              (same carry)
#   call 6: E2E_COMMIT=<sha> bash benchmarks/e2e_gpu_visit.sh table                        (same carry)
#           -> prints the table last; $OUT/e2e_decode.md goes to docs/results/e2e_decode.md here
# A first argument that is a comma list of e2e_decode.py stages (e.g. prompts,ours) runs just those;
# further arguments name the models (default: smollm2 llama3.2-1b llama3-8b).
# The host copy has no .git: pass the commit as E2E_COMMIT (write it literally into the command).
# E2E_DTYPE=fp32: our exports with --dtype fp32, in /tmp/e2e_fp32 (prompts made there too).
set -uo pipefail
stage=${1:-all}; [ $# -gt 0 ] && shift
models=${*:-smollm2 llama3.2-1b llama3-8b}
out=${OUT:-/tmp/out}; mkdir -p "$out"
dtype=${E2E_DTYPE:-bf16}
W=/tmp/e2e; [ "$dtype" = bf16 ] || W=/tmp/e2e_$dtype
case "$stage" in
  part1) cp .smol/part1 /tmp/smol.part1 && ls -la /tmp/smol.part1; exit;;
esac
if [ ! -s /tmp/smol.gguf ]; then
  if [ -f /tmp/smol.part1 ] && [ -f .smol/part2 ]; then
    cat /tmp/smol.part1 .smol/part2 > /tmp/smol.gguf
  else
    echo "no /tmp/smol.gguf: run 'part1' (carry .smol/part1), then this call with .smol/part2 carried;" \
         "continuing (the presets do not need it once /tmp/e2e/tokenizer/tokenizer.json exists)"
  fi
fi
. tests/gpu_host_env.sh "$out" || exit 1
export LD_LIBRARY_PATH=$PWD/build-rt/runner:$PWD/build-rt/runtime:/tmp/site/executorch/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export INT4_CUDA_SMOLLM2_GGUF=/tmp/smol.gguf
for b in build-rt/runner/int4_cuda_runner build-rt/runtime/libint4_cuda_backend.so build-rt/runner/int4_cuda_tokenizer_tool; do
  [ -f "$b" ] || { echo "missing $b: carry build-rt/ (made by: bash tests/runtime/decode_gpu_visit.sh slim)"; exit 3; }
done
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,temperature.gpu,power.draw \
  --format=csv >>"$out/smi.txt" 2>&1
D=(python3 -P benchmarks/e2e_decode.py --work "$W" --gguf /tmp/smol.gguf --runner build-rt/runner/int4_cuda_runner
   --tokenizer_tool build-rt/runner/int4_cuda_tokenizer_tool --out "$out" --models "$models" --dtype "$dtype")
case "$stage" in
  ours)  "${D[@]}" prompts export ours copybw; rc=$?;;
  peers) [ -f "$W/prompt_ids.json" ] || "${D[@]}" prompts; "${D[@]}" peers; rc=$?;;
  table) "${D[@]}" table; rc=$?;;
  all)   "${D[@]}" all; rc=$?;;
  *)     "${D[@]}" ${stage//,/ }; rc=$?;;
esac
# one archive: the device tool brings back only a few files per call
tar czf "$out/e2e_results.tgz" -C "$W" results logs prompt_ids.json 2>/dev/null
[ -f docs/results/e2e_decode.md ] && cp docs/results/e2e_decode.md "$out/"
echo "e2e_gpu_visit $stage: rc=$rc; results and logs in \$OUT/e2e_results.tgz"
exit $rc
