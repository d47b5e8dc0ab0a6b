#!/usr/bin/env bash
# GPU-host visit for decode speed on the random-weight presets (issue #7), no GGUF needed:
#   call 1: bash benchmarks/presets_gpu_visit.sh export    carry .whl .gpu-host build-rt
#           (installs the wheels; exports llama3-8b and llama3.2-1b into /tmp/presets)
#   call 2: bash benchmarks/presets_gpu_visit.sh           carry .gpu-host build-rt .smol/tokenizer.json
#           (GPU op tests, int4_cuda_runner decode with PDL on/off, ncu of one 8B decode step)
# Builds nothing (build-rt/ from `bash tests/runtime/decode_gpu_visit.sh slim`).
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
P=/tmp/presets
. tests/gpu_host_env.sh "$out" || exit 1
if [ "${1:-}" = export ]; then
  for m in llama3-8b:1024 llama3.2-1b:512; do
    timeout 250 python3 -P -m int4_cuda.llm.export_llm --backend cuda --preset "${m%%:*}" --max_seq_length "${m##*:}" \
      --output_dir "$P/${m%%:*}" --output_name model >"$out/export_${m%%:*}.log" 2>&1; echo "export ${m%%:*} rc=$?"
    tail -2 "$out/export_${m%%:*}.log"
  done
  exit
fi
export INT4_CUDA_RUNTIME_LIB=$PWD/build-rt/runtime/libint4_cuda_runtime.so
export LD_LIBRARY_PATH=$PWD/build-rt/runner:$PWD/build-rt/runtime:/tmp/site/executorch/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)
timeout 150 python3 -P -m pytest -q -s -p no:cacheprovider tests/runtime/test_runtime_gpu.py >"$out/pytest_gpu.log" 2>&1; py_rc=$?
grep -E "worst|FAILED|passed|failed" "$out/pytest_gpu.log" | tail -14
# a prompt of ~128 tokens; the presets have no tokenizer of their own and borrow SmolLM2's (carry
# .smol/tokenizer.json: ids only matter as ids to random weights)
python3 -c "print(('The river runs through the old town, past the market square where farmers sell apples. ' * 8).strip())" >/tmp/p128.txt
speed() { grep -E "Prompt Tokens|Generated [0-9]+ tokens" "$1" | tail -2 | tr -s ' \t' ' ' | tr '\n' ' '; }
for m in llama3-8b llama3.2-1b; do
  for pdl in 1 0; do
    INT4_CUDA_PDL=$pdl timeout 120 build-rt/runner/int4_cuda_runner --model_path $P/$m/model.pte \
      --tokenizer_path .smol/tokenizer.json --prompt_file /tmp/p128.txt --max_new_tokens 256 --ignore_eos --warmup \
      --num_iters 3 --cuda_graph 1 >"$out/bench_${m}_pdl$pdl.txt" 2>"$out/bench_${m}_pdl$pdl.err"
    echo "$m PDL=$pdl rc=$?: $(speed "$out/bench_${m}_pdl$pdl.err")"
  done
done
bash benchmarks/profile_decode_step.sh $P/llama3-8b/model.pte 128 | tail -16
echo "| run | result |"; echo "|---|---|"; echo "| GPU | $gpu |"
echo "| GPU op tests | rc=$py_rc, $(grep -E '[0-9]+ (passed|failed)' "$out/pytest_gpu.log" | tail -1) |"
for m in llama3-8b llama3.2-1b; do for pdl in 1 0; do
  echo "| $m runner PDL=$pdl | $(speed "$out/bench_${m}_pdl$pdl.err") |"; done; done
