#!/usr/bin/env bash
# Per-kernel GPU time of one decode step through the CUDA runtime (eager launches, so Nsight Compute
# times each kernel alone; launch gaps are not included, caches are flushed between kernels).
#   bash benchmarks/profile_decode_step.sh [MODEL.pte [PROMPT_TOKENS]]   (default: /tmp/smol/smollm2.pte)
# Needs build-rt/ and the wheels installed (tests/gpu_host_env.sh). Prints the decode step's kernels,
# grouped, last.
set -uo pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
. tests/gpu_host_env.sh "$out" || exit 1
export INT4_CUDA_RUNTIME_LIB=$PWD/build-rt/runtime/libint4_cuda_runtime.so
model=${1:-/tmp/smol/smollm2.pte}; prompt=${2:-37}
timeout 400 ncu --clock-control none --metrics gpu__time_duration.sum --csv \
  python3 -P benchmarks/decode_step.py "$model" --prompt "$prompt" >"$out/ncu.csv" 2>"$out/ncu.err"; echo "ncu rc=$?"
python3 - "$out/ncu.csv" <<'PY'
import csv, sys, collections, re
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
head, body = rows[0], rows[1:]
ki, vi, ii, ui = (head.index(c) for c in ("Kernel Name", "Metric Value", "ID", "Metric Unit"))
scale = {"nsecond": 1.0, "usecond": 1e3, "msecond": 1e6, "second": 1e9}
ks = [(int(r[ii]), r[ki], float(r[vi].replace(",", "")) * scale.get(r[ui], 1.0)) for r in body]
ks.sort()
starts = [i for i, k in enumerate(ks) if "embedding_kernel" in k[1]]  # each step starts with the embedding
dec = ks[starts[-1]:]
agg = collections.OrderedDict()
for _, name, ns in dec:
    m = re.search(r"(\w+)(<[^()]*>)?\(", re.sub(r"\(anonymous namespace\)::", "", name))
    short = (m.group(1) + (m.group(2) or "")) if m else name[:48]
    c, t = agg.get(short, (0, 0.0))
    agg[short] = (c + 1, t + ns)
total = sum(t for c, t in agg.values())
print(f"decode step: {len(dec)} kernels, {total/1e3:.1f} us of kernel time (no launch gaps)")
print("| kernel | launches | total us | us each | share |")
print("|---|---|---|---|---|")
for k, (c, t) in sorted(agg.items(), key=lambda kv: -kv[1][1]):
    print(f"| {k} | {c} | {t/1e3:.1f} | {t/c/1e3:.2f} | {100*t/total:.0f}% |")
PY
