#!/bin/bash
# One GPU-host visit: SASS summary, GPU tests, memcheck, benchmark. Logs under $OUT.
# Usage (device tool, repo root, carry build-gpu [+ build-whl]): bash benchmarks/gpu_visit.sh [bench args...]
set -o pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-out}; mkdir -p "$OUT"
LIB=build-gpu/libint4_cuda_shims.so
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw --format=csv > "$OUT/smi.txt" 2>&1
if ! python3 -c "import pytest" 2>/dev/null && ls build-whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site build-whl/*.whl && export PYTHONPATH=/tmp/site
fi
{
  cuobjdump -res-usage "$LIB" 2>&1 | grep -A1 "sm_90" | grep -E "Function|REG" | head -40
  cuobjdump -sass -arch sm_90a "$LIB" > /tmp/sass.txt 2>&1
  awk '/Function :/{fn=$3} /LDG|HMMA|LDSM|LDS|STS|LDGSTS|BAR|SHFL|STL|LDL/{for(i=1;i<=NF;i++) if ($i ~ /^(LDG|HMMA|LDSM|LDS|STS|LDGSTS|LDL|STL)/) {split($i,a,";"); c[fn" "a[1]]++}} END{for(k in c) print c[k], k}' /tmp/sass.txt | sort -k2 | head -80
} > "$OUT/sass_summary.txt" 2>&1
gzip -c /tmp/sass.txt > "$OUT/sass.txt.gz"
INT4_CUDA_SHIMS_LIB=$LIB timeout 300 python3 -m pytest -q -x -p no:cacheprovider -c /dev/null tests/shims 2>&1 | tail -25 > "$OUT/pytest.log"
echo "pytest rc=$?" >> "$OUT/pytest.log"
timeout 300 compute-sanitizer --tool memcheck --print-limit 20 python3 benchmarks/sanitize_int4_plain_mm.py > "$OUT/memcheck.log" 2>&1
echo "memcheck rc=$?" >> "$OUT/memcheck.log"
if [ -n "$PROFILE" ]; then  # e.g. PROFILE="28672 4096 1 32 0"
  timeout 200 ncu --clock-control none --kernel-name regex:int4_mm --launch-skip 4 --launch-count 1 --section SpeedOfLight --section Occupancy --section WarpStateStats --section MemoryWorkloadAnalysis --section LaunchStats python3 benchmarks/profile_int4_plain_mm.py $PROFILE > "$OUT/ncu.txt" 2>&1
  if [ -n "$PROFILE2" ]; then timeout 200 ncu --clock-control none --kernel-name regex:int4_mm --launch-skip 4 --launch-count 1 --section SpeedOfLight --section Occupancy --section WarpStateStats --section LaunchStats python3 benchmarks/profile_int4_plain_mm.py $PROFILE2 >> "$OUT/ncu.txt" 2>&1; fi
fi
python3 benchmarks/bench_int4_plain_mm.py --lib $LIB --out "$OUT" "$@" > "$OUT/bench.log" 2>&1
echo "bench rc=$?" >> "$OUT/bench.log"
echo "==== pytest"; tail -6 "$OUT/pytest.log"; echo "==== memcheck"; tail -4 "$OUT/memcheck.log"
echo "==== sass"; head -30 "$OUT/sass_summary.txt"
echo "==== bench"; tail -80 "$OUT/bench.log"
