#!/usr/bin/env bash
# GPU-host visit for int4_cuda_runner (issue #5). Builds nothing: carries a slim build folder
# (build-runner/: int4_cuda_runner, libint4_cuda_backend.so, the tokenizer tool and unit test),
# made here with `bash tests/runtime/llm/runner_gpu_visit.sh slim`.
# SmolLM2's GGUF travels in two parts, as in tests/runtime/smollm2_gpu_visit.sh:
#   call 1: bash tests/runtime/llm/runner_gpu_visit.sh part1      (carry .smol/part1)
#   call 2: bash tests/runtime/llm/runner_gpu_visit.sh            (carry .smol/part2 .whl .gpu-host build-runner)
# Call 2 joins the GGUF, exports SmolLM2 on the host, runs the runner (Paris, graph vs eager,
# a ~400-token prompt benchmark) and the gpu tests, and prints a table last.
set -uo pipefail
case "${1:-}" in
  slim)
    rm -rf build-runner && mkdir -p build-runner &&
      cp build/examples/runner/int4_cuda_runner build/runtime/libint4_cuda_backend.so \
         build/runtime/llm/int4_cuda_tokenizer_tool build/runtime/llm/int4_cuda_llm_test build-runner/ &&
      strip --strip-unneeded build-runner/* && du -sh build-runner; exit;;
  part1) cp .smol/part1 /tmp/smol.part1 && ls -la /tmp/smol.part1; exit;;
esac
out=${OUT:-/tmp/out}; mkdir -p "$out"
[ -f /tmp/smol.part1 ] || { echo "no /tmp/smol.part1: the machine was not kept warm; run part1 again"; exit 3; }
cat /tmp/smol.part1 .smol/part2 > /tmp/smol.gguf
. tests/gpu_host_env.sh "$out" || exit 1
export INT4_CUDA_SMOLLM2_DIR=/tmp/smol
export INT4_CUDA_RUNNER_BUILD=$PWD/build-runner LD_LIBRARY_PATH=/tmp/site/executorch/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)
timeout 150 python3 -P -m int4_cuda.llm.export_llm --backend cuda --gguf /tmp/smol.gguf --output_name smollm2 \
  --output_dir /tmp/smol --max_seq_length 512 >"$out/export.log" 2>&1; ex_rc=$?
tail -2 "$out/export.log"
R="build-runner/int4_cuda_runner --model_path /tmp/smol/smollm2.pte --tokenizer_path /tmp/smol/tokenizer.json"
timeout 60 $R --prompt "What is the capital of France?" --chat --max_new_tokens 64 >"$out/paris.txt" 2>"$out/paris.err"; p_rc=$?
cat "$out/paris.txt"; tail -12 "$out/paris.err"
python3 - >/tmp/long_prompt.txt <<'PY'
s = ("The river runs through the old town, past the market square where farmers sell apples, bread and cheese "
     "every Saturday morning. In 1889 the engineers built a bridge of iron and stone; it still carries trains to "
     "the coast, and on clear days you can see the lighthouse from its highest arch. ")
print(s * 6 + "Write a short story about the bridge.")
PY
for g in 1 0; do
  timeout 60 $R --prompt_file /tmp/long_prompt.txt --max_new_tokens 128 --ignore_eos --warmup --num_iters 3 \
    --cuda_graph $g >"$out/bench_g$g.txt" 2>"$out/bench_g$g.err"; echo "bench cuda_graph=$g rc=$?"
  tail -11 "$out/bench_g$g.err"
done
timeout 120 python3 -P -m pytest -q -rA -s -p no:cacheprovider tests/runtime/llm/test_runner_gpu.py \
  >"$out/pytest.log" 2>&1; py_rc=$?
grep -E "runner CUDA answer|PASSED|FAILED|SKIPPED|ERROR|passed|failed" "$out/pytest.log" | tail -15
rate() { grep PyTorchObserver "$1" | tail -1 | sed 's/^PyTorchObserver //' | python3 -c \
  "import json,sys; j=json.load(sys.stdin); print(f\"prefill {j['prefill_tokens_per_s']:.0f} tok/s ({j['prompt_tokens']} tokens), decode {j['decode_tokens_per_s']:.1f} tok/s ({j['decode_steps']} steps), ttft {j['time_to_first_token_ms']} ms, load {j['load_time_ms']} ms, replays {j['cuda_graph_replays']}\")"; }
tok() { grep -o '\[tokens: [0-9,]*\]' "$1" | tail -1 | md5sum | cut -c1-8; }
echo
echo "| check | result |"
echo "|---|---|"
echo "| GPU | $gpu |"
echo "| export on host | rc=$ex_rc |"
echo "| Paris (greedy ChatML, CUDA graph) | rc=$p_rc, $(grep -c Paris "$out/paris.txt") line(s) with Paris; $(rate "$out/paris.txt") |"
echo "| bench CUDA graph | $(rate "$out/bench_g1.txt"), tokens md5 $(tok "$out/bench_g1.err") |"
echo "| bench eager | $(rate "$out/bench_g0.txt"), tokens md5 $(tok "$out/bench_g0.err") |"
echo "| pytest test_runner_gpu.py | rc=$py_rc, $(grep -E '[0-9]+ (passed|failed)' "$out/pytest.log" | tail -1) |"
