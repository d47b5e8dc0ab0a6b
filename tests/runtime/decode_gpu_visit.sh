#!/usr/bin/env bash
# GPU-host visit for the fused decode path (issues #4, #7, #8): every runtime op vs the reference
# (incl. QKV_ATTENTION/SWIGLU/split-key attention), SmolLM2 through the runtime and the runner,
# memcheck, the flipped-weight .ptd through the runner, and decode speed. Builds nothing.
# 64 MiB per call, so three calls on one warm machine:
#   bash tests/runtime/decode_gpu_visit.sh slim     (here: assembles build-rt/ from build/)
#   1. bash tests/runtime/decode_gpu_visit.sh part1   carry .smol/part1
#   2. bash tests/runtime/decode_gpu_visit.sh export  carry .smol/part2 .whl .gpu-host
#   3. bash tests/runtime/decode_gpu_visit.sh         carry .gpu-host build-rt
#   4. bash tests/runtime/decode_gpu_visit.sh sanitize [TOOL...]  carry .gpu-host build-rt
#   bash tests/runtime/decode_gpu_visit.sh bench      carry .gpu-host build-rt: decode speed, PDL on/off
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
case "${1:-}" in
  slim)
    # One copy of libint4_cuda_backend.so (33 MB), in runtime/: the runner finds it through
    # LD_LIBRARY_PATH (64 MiB carry limit).
    rm -rf build-rt && mkdir -p build-rt/runtime build-rt/runner &&
      cp build/runtime/libint4_cuda_runtime.so build/runtime/libint4_cuda_backend.so build/runtime/int4_cuda_*_test \
         build-rt/runtime/ &&
      cp build/examples/runner/int4_cuda_runner \
         build/runtime/llm/int4_cuda_tokenizer_tool build/runtime/llm/int4_cuda_llm_test build-rt/runner/ &&
      strip --strip-unneeded build-rt/runtime/* build-rt/runner/* && du -sh build-rt; exit;;
  part1) cp .smol/part1 /tmp/smol.part1 && ls -la /tmp/smol.part1; exit;;
  export)
    [ -f /tmp/smol.part1 ] || { echo "no /tmp/smol.part1: run part1 first on this warm machine"; exit 3; }
    cat /tmp/smol.part1 .smol/part2 > /tmp/smol.gguf
    . tests/gpu_host_env.sh "$out" || exit 1
    timeout 150 python3 -P -m int4_cuda.llm.export_llm --backend cuda --gguf /tmp/smol.gguf --output_name smollm2 \
      --output_dir /tmp/smol --max_seq_length 512 >"$out/export.log" 2>&1; echo "export rc=$?"
    timeout 150 python3 -P -m int4_cuda.llm.export_llm --backend cuda --gguf /tmp/smol.gguf --output_name smollm2 \
      --output_dir /tmp/smol32 --max_seq_length 512 --dtype fp32 >"$out/export32.log" 2>&1; echo "export fp32 rc=$?"
    tail -n 4 "$out/export.log" "$out/export32.log"; exit;;
esac
[ -f /tmp/smol/smollm2.pte ] || { echo "no /tmp/smol/smollm2.pte: run part1 and export first"; exit 3; }
. tests/gpu_host_env.sh "$out" || exit 1
export INT4_CUDA_RUNTIME_LIB=$PWD/build-rt/runtime/libint4_cuda_runtime.so INT4_CUDA_SMOLLM2_DIR=/tmp/smol
[ -f /tmp/smol32/smollm2.pte ] && export INT4_CUDA_SMOLLM2_FP32_DIR=/tmp/smol32
if [ "${1:-}" = sanitize ]; then  # every op case and a SmolLM2 prefill + decode, under each tool
  shift; tools=${*:-memcheck racecheck initcheck}  # one or two per call fit the 10-minute limit
  [ -f /tmp/mc/cases.pkl ] || timeout 90 python3 -P tests/runtime/memcheck_run.py /tmp/mc --export-only \
    >"$out/mc_export.log" 2>&1
  echo "| tool | op cases | SmolLM2 prefill + decode |"; echo "|---|---|---|"
  for tool in $tools; do
    timeout 130 compute-sanitizer --tool $tool --error-exitcode 9 python3 -P tests/runtime/memcheck_run.py /tmp/mc \
      >"$out/${tool}_ops.log" 2>&1; a=$?
    timeout 130 compute-sanitizer --tool $tool --error-exitcode 9 python3 -P tests/runtime/smollm2_memcheck.py /tmp/smol \
      >"$out/${tool}_smol.log" 2>&1; b=$?
    echo "| $tool | rc=$a, $(grep -E 'SUMMARY' "$out/${tool}_ops.log" | tail -1) | rc=$b, $(grep -E 'SUMMARY' "$out/${tool}_smol.log" | tail -1) |"
    if [ -n "${INT4_CUDA_SMOLLM2_FP32_DIR:-}" ]; then
      timeout 130 compute-sanitizer --tool $tool --error-exitcode 9 python3 -P tests/runtime/smollm2_memcheck.py /tmp/smol32 \
        >"$out/${tool}_smol32.log" 2>&1; c=$?
      echo "| $tool (fp32 export) | — | rc=$c, $(grep -E 'SUMMARY' "$out/${tool}_smol32.log" | tail -1) |"
    fi
  done
  exit
fi
export INT4_CUDA_RUNNER_BUILD=$PWD/build-rt/runner
export LD_LIBRARY_PATH=$PWD/build-rt/runner:$PWD/build-rt/runtime:/tmp/site/executorch/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)
python3 - >/tmp/prompt_short.txt <<'PY'
s = ("The river runs through the old town, past the market square where farmers sell apples, bread and cheese "
     "every Saturday morning. In 1889 the engineers built a bridge of iron and stone; it still carries trains to "
     "the coast, and on clear days you can see the lighthouse from its highest arch. ")
print(s * 2 + "Write a short story about the bridge.")
PY
python3 -c "print(open('/tmp/prompt_short.txt').read().strip() * 3)" >/tmp/prompt_long.txt
R="build-rt/runner/int4_cuda_runner --model_path /tmp/smol/smollm2.pte --tokenizer_path /tmp/smol/tokenizer.json"
speed() { grep -E "Prompt Tokens|Generated [0-9]+ tokens|Prompt evaluation" "$1" | tail -3 | tr -s ' \t' ' ' | tr '\n' ' '; }
if [ "${1:-}" = bench ]; then
  for pdl in 1 0; do
    INT4_CUDA_PDL=$pdl timeout 90 $R --prompt_file /tmp/prompt_short.txt --max_new_tokens 256 --ignore_eos --warmup \
      --num_iters 3 --cuda_graph 1 >"$out/bench_pdl$pdl.txt" 2>"$out/bench_pdl$pdl.err"; echo "PDL=$pdl rc=$?"
  done
  timeout 200 python3 -P -m pytest -q -s -p no:cacheprovider tests/runtime/test_runtime_gpu.py \
    tests/runtime/test_smollm2_gpu.py >"$out/pytest_gpu.log" 2>&1; py_rc=$?
  grep -E "worst|smollm2( bf16| fp32)?:|FAILED|passed|failed" "$out/pytest_gpu.log" | tail -16
  bash benchmarks/profile_decode_step.sh | tail -40
  echo "| run | result |"; echo "|---|---|"; echo "| GPU | $gpu |"
  echo "| GPU op + SmolLM2 tests (PDL on) | rc=$py_rc, $(grep -E '[0-9]+ (passed|failed)' "$out/pytest_gpu.log" | tail -1) |"
  for pdl in 1 0; do echo "| SmolLM2 runner, PDL=$pdl | $(speed "$out/bench_pdl$pdl.err") |"; done
  exit
fi
ls /usr/lib/x86_64-linux-gnu/libcrypto.so.3 >/dev/null 2>&1 && echo "libcrypto.so.3: present" || echo "libcrypto.so.3: MISSING"
timeout 300 python3 -P -m pytest -q -rA -s -p no:cacheprovider tests/runtime >"$out/pytest.log" 2>&1; py_rc=$?
grep -E "worst SQNR|smollm2( bf16| fp32)?:|CUDA answer|FAILED|ERROR|passed|failed" "$out/pytest.log" | tail -30
timeout 60 $R --prompt "What is the capital of France?" --chat --max_new_tokens 64 >"$out/paris.txt" 2>"$out/paris.err"; p_rc=$?
cat "$out/paris.txt"
for p in short long; do
  timeout 90 $R --prompt_file /tmp/prompt_$p.txt --max_new_tokens 256 --ignore_eos --warmup --num_iters 3 \
    --cuda_graph 1 >"$out/bench_$p.txt" 2>"$out/bench_$p.err"; echo "bench $p rc=$?"
done
R32="build-rt/runner/int4_cuda_runner --model_path /tmp/smol32/smollm2.pte --tokenizer_path /tmp/smol32/tokenizer.json"
if [ -f /tmp/smol32/smollm2.pte ]; then
  timeout 60 $R32 --prompt "What is the capital of France?" --chat --max_new_tokens 64 >"$out/paris32.txt" 2>"$out/paris32.err"
  echo "fp32 runner rc=$?"; cat "$out/paris32.txt"
  timeout 90 $R32 --prompt_file /tmp/prompt_short.txt --max_new_tokens 256 --ignore_eos --warmup --num_iters 3 \
    --cuda_graph 1 >"$out/bench32_short.txt" 2>"$out/bench32_short.err"; echo "bench fp32 short rc=$?"
fi
timeout 120 python3 -P -m pytest -q -rA -s -p no:cacheprovider tests/runtime/llm/test_runner_gpu.py \
  >"$out/runner_pytest.log" 2>&1; rp_rc=$?
grep -E "PASSED|FAILED|ERROR|passed|failed" "$out/runner_pytest.log" | tail -8
# A .ptd with one weight byte flipped: the runner must refuse it (constant content hashes).
cp /tmp/smol/smollm2.pte /tmp/flip.pte && python3 - <<'PY'
data = bytearray(open("/tmp/smol/smollm2.ptd", "rb").read())
data[len(data) // 2] ^= 0x10
open("/tmp/flip.ptd", "wb").write(data)
PY
timeout 60 build-rt/runner/int4_cuda_runner --model_path /tmp/flip.pte --data_path /tmp/flip.ptd \
  --tokenizer_path /tmp/smol/tokenizer.json --prompt hi --max_new_tokens 4 >"$out/flip.txt" 2>"$out/flip.err"; f_rc=$?
tail -3 "$out/flip.err"
echo
echo "| check | result |"
echo "|---|---|"
echo "| GPU | $gpu |"
echo "| pytest tests/runtime | rc=$py_rc, $(grep -E '[0-9]+ (passed|failed)' "$out/pytest.log" | tail -1) |"
echo "| runner Paris | rc=$p_rc, $(tr '\n' ' ' < "$out/paris.txt" | cut -c1-80) |"
echo "| runner pytest | rc=$rp_rc, $(grep -E '[0-9]+ (passed|failed)' "$out/runner_pytest.log" | tail -1) |"
echo "| flipped .ptd byte (runner) | rc=$f_rc, $(grep -i -m1 'hash\|damaged' "$out/flip.err" | cut -c1-100) |"
echo "| bench short (256 new) | $(speed "$out/bench_short.err") |"
echo "| bench long (256 new) | $(speed "$out/bench_long.err") |"
echo "| fp32 export: runner Paris | $(tr '\n' ' ' < "$out/paris32.txt" 2>/dev/null | cut -c1-80) |"
echo "| fp32 export: bench short (256 new) | $(speed "$out/bench32_short.err" 2>/dev/null) |"
