#!/usr/bin/env python3
"""SM clock and board power while int4_plain_mm's prefill and cuBLAS bf16 run, on the GPU host.

Each phase replays one kernel back to back (the CUDA graphs of bench_int4_plain_mm.py) for a few
seconds while `nvidia-smi` samples the SM clock and power every 50 ms. The table gives each phase's
time per call, median clock and power, and the time in clock cycles (µs × MHz): when both kernels
sit at the board's power limit, the clock they get says how much energy their work costs, and the
cycle count what is left once the clock is factored out (notes v25-v26).

With --decode the same for M = 1 (ours with the workspace, as the runtime calls it, against cuBLAS's
GEMV): whether a decode call at full memory bandwidth also runs at the power limit.

Usage (GPU host, repo root): python3 benchmarks/clocks_prefill.py [--lib PATH] [--seconds S] [--decode]
"""
import argparse
import datetime
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench_int4_plain_mm as bench

SHAPES = [(28672, 4096, 512), (4096, 4096, 512), (4096, 14336, 512)]
DECODE_SHAPES = [(28672, 4096, 1), (128256, 4096, 1), (5376, 21504, 1)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--decode", action="store_true", help="M = 1 shapes instead of M = 512")
    args = ap.parse_args()
    lib = bench.load_lib(bench.find_lib(args.lib))
    phases = []  # (name, start, end, µs per call)
    with tempfile.TemporaryFile("w+") as log:
        smi = subprocess.Popen(["nvidia-smi", "--query-gpu=timestamp,clocks.sm,power.draw,clocks_throttle_reasons.active",
                                "--format=csv,noheader,nounits", "-lms", "50"], stdout=log, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            for N, K, M in DECODE_SHAPES if args.decode else SHAPES:
                case = bench.Case(N, K, 32)

                def ours(case=case, M=M):
                    return bench.time_ours(lib, case, M, check=False)[0]

                def cublas(case=case, M=M):
                    bench._cublas_cache.clear()  # time it again, not from the cache
                    return bench.time_cublas(case, M)

                for name, fn in ((f"ours {N}x{K} M={M}", ours), (f"cuBLAS {N}x{K} M={M}", cublas)):
                    start, us = datetime.datetime.now(), []
                    while (datetime.datetime.now() - start).total_seconds() < args.seconds:
                        us.append(fn())
                    phases.append((name, start, datetime.datetime.now(), statistics.median(us)))
                    time.sleep(0.5)
        finally:
            smi.terminate()
            smi.wait()
        log.seek(0)
        lines = log.read().splitlines()
    samples = []
    for line in lines:
        p = [x.strip() for x in line.split(",")]
        try:
            samples.append((datetime.datetime.strptime(p[0], "%Y/%m/%d %H:%M:%S.%f"), float(p[1]), float(p[2]), p[3]))
        except (ValueError, IndexError):
            continue
    print(f"{'phase':<28} {'us/call':>8} {'SM MHz':>7} {'W':>6} {'Mcycles':>8}  throttle reasons (bitmask)")
    for name, start, end, us in phases:
        # Skip the first 0.5 s of a phase: the clock is still settling from the idle gap.
        w = [s for s in samples if start + datetime.timedelta(seconds=0.5) <= s[0] <= end]
        if not w:
            print(f"{name:<28} {us:8.1f}  (no samples)")
            continue
        mhz, watts = statistics.median(s[1] for s in w), statistics.median(s[2] for s in w)
        reasons = statistics.mode(s[3] for s in w)
        print(f"{name:<28} {us:8.1f} {mhz:7.0f} {watts:6.0f} {us * mhz / 1e6:8.3f}  {reasons}")


if __name__ == "__main__":
    main()
