#!/usr/bin/env python3
"""Benchmark int4_plain_mm (shims/, via its C ABI) against the peers, on the GPU host.

Measured in the same run: device-to-device copy bandwidth (read + write), torch tinygemm
`_weight_int4pack_mm` at the same group size, cuBLAS bf16 (`torch.matmul`) on the dequantized weight.
Every kernel is timed back-to-back inside a CUDA graph, rotating over enough weight copies (>= 400 MB,
at most 2048 copies) that the weights come from DRAM, median of many replays, random data.

Effective bandwidth counts packed weights + scale/zero + activations read + output written.

Usage (GPU host, repo root):  python3 benchmarks/bench_int4_plain_mm.py [--quick] [--variants] [--out DIR]
Writes DIR/int4_plain_mm_results.md (ready for docs/results/int4_plain_mm.md) and DIR/bench.json.
"""
import argparse
import ctypes
import datetime
import glob
import json
import math
import os
import pathlib
import subprocess
import sys

import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
DEV = "cuda"
ROTATE_BYTES = 400e6
MAX_COPIES = 2048
MIN_LAUNCHES = 200
WORKSPACE_BYTES = 1 << 20  # INT4_CUDA_PLAIN_MM_WORKSPACE_BYTES (shims/int4_plain_mm.h)

DECODE_SHAPES = [(28672, 4096), (4096, 14336), (21504, 5376), (5376, 21504), (128256, 4096), (4096, 4096), (6144, 4096)]
SMOL_SHAPES = [(192, 576), (576, 576), (1536, 576), (3072, 576), (49152, 576), (576, 1536), (3072, 1536)]
SMALL_M_SHAPES = [(4096, 4096), (28672, 4096), (4096, 14336)]
PREFILL_SHAPES = [(4096, 4096), (6144, 4096), (28672, 4096), (4096, 14336)]
# f32 activations (int4_cuda_int4_plain_mm_f32, export_llm --dtype fp32) next to bf16 at the same shape.
F32_PLAN = [(28672, 4096, 1), (4096, 4096, 1), (21504, 5376, 1), (4096, 14336, 1), (6144, 4096, 1), (128256, 4096, 1),
            (1536, 576, 1), (3072, 576, 1), (49152, 576, 1),
            (576, 1536, 1), (4096, 4096, 4), (4096, 4096, 16), (4096, 4096, 33), (4096, 4096, 64), (4096, 4096, 512),
            (3072, 576, 64)]
# Hopper wgmma prefill (shims/int4_plain_mm_sm90.cuh): its own tile choice, 128- and 256-token tiles, and K split over 2 or 4 blocks.
SM90_VARIANTS = ((19, "sm90 policy"), (20, "sm90 BT128"), (21, "sm90 BT256"), (22, "sm90 BT256 split 2"), (23, "sm90 BT128 split 2"),
                 (24, "sm90 BT256 split 4"), (25, "sm90 BT128 split 4"))
F32_VARIANTS = {13: "XS persistent", 14: "XS block/tile", 15: "XS U2 persistent", 9: "prefill kernel", 16: "decode kernel, token chunks",
                17: "prefill kernel, BM 64", 18: "no XS (x split per lane)"}
DECODE_VARIANTS = {26: "W2 XS persistent 3/SM", 27: "W2 XS persistent 2/SM", 28: "W2 XS block/tile", 29: "W2 block/tile", 4: "U1 block/tile", 5: "U2 block/tile", 6: "U2 persistent", 7: "U1 persistent", 13: "XS U1 persistent", 14: "XS U1 block/tile", 15: "XS U2 persistent", 30: "XS U1 persistent, whole-line L2 fetches", 31: "TMA ring (sm_90a)", 32: "TMA ring, whole tiles", 33: "TMA ring, stream-K always"}


def find_lib(explicit):
    cands = [explicit] if explicit else []
    cands += [os.environ.get("INT4_CUDA_SHIMS_LIB"), REPO / "build-gpu" / "libint4_cuda_shims.so",
              REPO / "build" / "shims" / "libint4_cuda_shims.so"]
    cands += sorted(glob.glob(str(REPO / "build*" / "**" / "libint4_cuda_shims.so"), recursive=True))
    for c in cands:
        if c and pathlib.Path(c).is_file():
            return pathlib.Path(c)
    sys.exit("libint4_cuda_shims.so not found: build it (see shims/CMakeLists.txt) or pass --lib")


def load_lib(path):
    lib = ctypes.CDLL(str(path))
    vp, i64 = ctypes.c_void_p, ctypes.c_int64
    lib.int4_cuda_int4_plain_mm_variant.argtypes = [vp, vp, vp, vp, vp, i64, i64, i64, i64, vp, ctypes.c_size_t, vp,
                                                    ctypes.c_int]
    lib.int4_cuda_int4_plain_mm_variant.restype = ctypes.c_int
    lib.int4_cuda_int4_plain_mm_f32_variant.argtypes = [vp, vp, vp, vp, vp, i64, i64, i64, i64, vp, ctypes.c_int]
    lib.int4_cuda_int4_plain_mm_f32_variant.restype = ctypes.c_int
    lib.int4_cuda_status_string.restype = ctypes.c_char_p
    lib.int4_cuda_last_cuda_error.restype = ctypes.c_char_p
    return lib


def graph_time(fns, reps=15):
    """fns: callables (one per rotating copy). Returns the median µs per call."""
    inner = max(1, math.ceil(MIN_LAUNCHES / len(fns)))
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for f in fns:
            f()
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(inner):
            for f in fns:
                f()
    g.replay()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b) * 1e3 / (inner * len(fns)))
    del g
    ts.sort()
    return ts[len(ts) // 2]


def copy_bandwidth():
    n = 1 << 30
    src = torch.empty(n, dtype=torch.uint8, device=DEV).random_()
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    torch.cuda.synchronize()
    res = []
    for _ in range(3):
        a, b = torch.cuda.Event(True), torch.cuda.Event(True)
        a.record()
        for _ in range(10):
            dst.copy_(src)
        b.record()
        b.synchronize()
        res.append(2 * n * 10 / (a.elapsed_time(b) / 1e3) / 1e9)
    del src, dst
    torch.cuda.empty_cache()
    return sorted(res)[1]


def n_copies(nbytes):
    return int(min(MAX_COPIES, max(2, math.ceil(ROTATE_BYTES / nbytes))))


def int4_bytes(N, K, gs):
    return N * K // 2 + 2 * N * (K // gs) * 2


def dequant_bf16(qdata, scale, zero, gs):
    q = qdata.to(torch.int32)
    u = torch.stack([q & 0xF, q >> 4], dim=-1).reshape(q.shape[0], -1).float()
    s = scale.float().repeat_interleave(gs, dim=1)
    z = zero.float().repeat_interleave(gs, dim=1)
    return ((u - 8.0) * s + z).to(torch.bfloat16)


_WORKSPACE = []


def workspace():
    """The kernel's workspace (shims/int4_plain_mm.h), zero-filled once; every call leaves it usable."""
    if not _WORKSPACE:
        _WORKSPACE.append(torch.zeros(WORKSPACE_BYTES, dtype=torch.uint8, device=DEV))
    return _WORKSPACE[0]


class Case:
    def __init__(self, N, K, gs):
        self.N, self.K, self.gs = N, K, gs
        nc = n_copies(int4_bytes(N, K, gs))
        self.q = [torch.randint(0, 256, (N, K // 2), dtype=torch.uint8, device=DEV) for _ in range(nc)]
        self.s = [(torch.rand(N, K // gs, device=DEV) * 0.02 + 0.002).to(torch.bfloat16) for _ in range(nc)]
        self.z = [(torch.randn(N, K // gs, device=DEV) * 0.02).to(torch.bfloat16) for _ in range(nc)]


def time_ours(lib, case, M, variant=0, check=True, f32=False):
    N, K, gs = case.N, case.K, case.gs
    dt = torch.float32 if f32 else torch.bfloat16
    entry = lib.int4_cuda_int4_plain_mm_f32_variant if f32 else lib.int4_cuda_int4_plain_mm_variant
    x = torch.randn(M, K, device=DEV).to(dt)
    outs = [torch.empty(M, N, device=DEV, dtype=dt) for _ in case.q]
    stream_of = lambda: torch.cuda.current_stream().cuda_stream
    # bf16: with a workspace, as the runtime calls it (int4_cuda_int4_plain_mm_ws); f32 takes none.
    ws = () if f32 else (workspace().data_ptr(), workspace().numel())

    def mk(i):
        q, s, z, o = case.q[i], case.s[i], case.z[i], outs[i]
        args = (x.data_ptr(), q.data_ptr(), s.data_ptr(), z.data_ptr(), o.data_ptr(), M, N, K, gs) + ws

        def f():
            rc = entry(*args, stream_of(), variant)
            if rc != 0:
                raise RuntimeError(f"rc={rc} {lib.int4_cuda_status_string(rc).decode()} "
                                   f"{lib.int4_cuda_last_cuda_error().decode()}")
        return f

    err = float("nan")
    if check:
        outs[0].fill_(float("nan"))
        mk(0)()
        torch.cuda.synchronize()
        w = dequant_bf16(case.q[0], case.s[0], case.z[0], gs).float()
        ref = (x.double() @ w.double().t()).float()
        err = (torch.linalg.norm(outs[0].float() - ref) / torch.linalg.norm(ref)).item()
        if not math.isfinite(err):
            err = float("inf")
    t = graph_time([mk(i) for i in range(len(case.q))])
    return t, err


def time_tinygemm(case, M):
    N, K, gs = case.N, case.K, case.gs
    x = torch.randn(M, K, device=DEV).to(torch.bfloat16)
    nc = len(case.q)
    last = None
    for inner_k in (8, 4, 2):
        try:
            packs = [torch.ops.aten._convert_weight_to_int4pack(case.q[i], inner_k) for i in range(nc)]
            szs = [torch.randn(K // gs, N, 2, dtype=torch.bfloat16, device=DEV) for _ in range(nc)]
            torch.ops.aten._weight_int4pack_mm(x, packs[0], gs, szs[0])
            torch.cuda.synchronize()
            t = graph_time([lambda w=w, sz=sz: torch.ops.aten._weight_int4pack_mm(x, w, gs, sz) for w, sz in zip(packs, szs)])
            del packs, szs
            return t
        except Exception as e:  # tinygemm rejects some K (needs K % (inner_k*16) == 0)
            last = e
            torch.cuda.synchronize()
    return None if last is None else None


_cublas_cache = {}


def time_cublas(case, M):
    key = (case.N, case.K, M)
    if key in _cublas_cache:
        return _cublas_cache[key]
    N, K = case.N, case.K
    nc = int(min(64, max(2, math.ceil(ROTATE_BYTES / (N * K * 2)))))
    w0 = dequant_bf16(case.q[0], case.s[0], case.z[0], case.gs)
    ws = [w0] + [w0.clone() for _ in range(nc - 1)]
    x = torch.randn(M, K, device=DEV).to(torch.bfloat16)
    outs = [torch.empty(M, N, device=DEV, dtype=torch.bfloat16) for _ in ws]
    t = graph_time([lambda w=w, o=o: torch.matmul(x, w.t(), out=o) for w, o in zip(ws, outs)])
    del ws, outs
    torch.cuda.empty_cache()
    _cublas_cache[key] = t
    return t


def git_commit(explicit):
    if explicit:
        return explicit
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, stderr=subprocess.DEVNULL).decode().strip()
    except Exception:
        return "unknown (working tree)"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib")
    ap.add_argument("--out", default=os.environ.get("OUT", str(REPO / "out")))
    ap.add_argument("--quick", action="store_true", help="fewer shapes")
    ap.add_argument("--variants", action="store_true", help="also time every decode variant (tuning)")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--commit")
    ap.add_argument("--sections", default="decode,smol,smallm,prefill")
    args = ap.parse_args()
    lib = load_lib(find_lib(args.lib))
    torch.manual_seed(0)
    props = torch.cuda.get_device_properties(0)
    card = f"{torch.cuda.get_device_name()} ({props.multi_processor_count} SMs, {props.total_memory / 2**30:.0f} GiB)"
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    commit = git_commit(args.commit)
    print(f"card: {card}; torch {torch.__version__}; date {date}; commit {commit}", flush=True)
    copy_bw = copy_bandwidth()
    print(f"D2D copy: {copy_bw:.0f} GB/s (read+write)", flush=True)

    sections = args.sections.split(",")
    decode_shapes = DECODE_SHAPES[:3] + DECODE_SHAPES[5:6] if args.quick else DECODE_SHAPES
    plan = []  # (section, N, K, M, gs)
    if "decode" in sections:
        for gs in (32, 64, 128):
            for N, K in decode_shapes:
                plan.append(("decode", N, K, 1, gs))
    if "smol" in sections:
        for gs in (32, 64):
            for N, K in SMOL_SHAPES:
                plan.append(("smol", N, K, 1, gs))
    if "smallm" in sections:
        for N, K in SMALL_M_SHAPES:
            for M in (2, 4, 8, 16, 32):
                plan.append(("smallm", N, K, M, 32))
    if "prefill" in sections:
        for N, K in PREFILL_SHAPES:
            for M in ((64, 512) if args.quick else (33, 64, 128, 512)):
                plan.append(("prefill", N, K, M, 32))
            plan.append(("prefill", N, K, 512, 128))
    if "f32" in sections:
        plan += [("f32", N, K, M, 32) for N, K, M in F32_PLAN]

    rows, vrows, f32_rows = [], [], []
    cases = {}
    for sec, N, K, M, gs in plan:
        key = (N, K, gs)
        if key not in cases:
            cases.clear()
            torch.cuda.empty_cache()
            cases[key] = Case(N, K, gs)
        case = cases[key]
        f32 = sec == "f32"
        t, err = time_ours(lib, case, M, f32=f32)
        byts = int4_bytes(N, K, gs) + (M * K + M * N) * (4 if f32 else 2)
        tg = cb = None
        if f32:  # the peer is our own bf16 entry point at the same shape
            r = dict(section=sec, N=N, K=K, M=M, gs=gs, us=t, pct_copy=100 * byts / t / 1e3 / copy_bw, relerr=err,
                     bf16_us=time_ours(lib, case, M, check=False)[0])
            f32_rows.append(r)
            print(f"f32      {N:>6}x{K:<6} M={M:<4} {t:9.2f} us {r['pct_copy']:5.1f}% bf16 {r['bf16_us']:9.2f} us "
                  f"err {err:.2e}", flush=True)
            for v, name in (F32_VARIANTS.items() if args.variants else ()):
                applies = {9: True, 16: 16 < M <= 64, 17: M > 16}.get(v, M <= 16)  # 13-15, 18: decode M
                if applies:
                    tv, ev = time_ours(lib, case, M, variant=v, f32=True)
                    vrows.append(dict(N=N, K=K, M=M, gs=gs, variant=v, name="f32 " + name, us=tv,
                                      pct_copy=100 * byts / tv / 1e3 / copy_bw, relerr=ev))
                    print(f"   f32 variant {v} ({name}): {tv:9.2f} us err {ev:.1e}", flush=True)
            continue
        if not args.no_peers:
            if sec in ("decode", "smol", "smallm") or M <= 64:
                tg = time_tinygemm(case, M)
            if sec in ("decode", "smol", "prefill") or M == 1:
                cb = time_cublas(case, M)
        r = dict(section=sec, N=N, K=K, M=M, gs=gs, us=t, gbps=byts / t / 1e3, pct_copy=100 * byts / t / 1e3 / copy_bw,
                 floor_us=byts / (copy_bw * 1e9) * 1e6, tflops=2 * M * N * K / t / 1e6, relerr=err,
                 tinygemm_us=tg, x_tinygemm=(tg / t if tg else None), cublas_us=cb, x_cublas=(cb / t if cb else None))
        rows.append(r)
        print(f"{sec:8s} {N:>6}x{K:<6} M={M:<4} gs={gs:<3} {t:9.2f} us {r['gbps']:7.0f} GB/s {r['pct_copy']:5.1f}% "
              f"tflops {r['tflops']:6.1f} tg {tg if tg is None else round(tg, 2)} cublas {cb if cb is None else round(cb, 2)} err {err:.2e}",
              flush=True)
        if args.variants and sec == "prefill":
            for v, name in ((9, "prefill kernel"), (16, "decode kernel, token chunks"), (17, "prefill kernel, BM 64")) + SM90_VARIANTS:
                if v == 16 and M > 128:
                    continue
                tv, ev = time_ours(lib, case, M, variant=v, check=True)
                vrows.append(dict(N=N, K=K, M=M, gs=gs, variant=v, name=name, us=tv, pct_copy=100 * byts / tv / 1e3 / copy_bw, relerr=ev))
                print(f"   variant {v} ({name}): {tv:9.2f} us {2 * M * N * K / tv / 1e6:6.1f} TFLOP/s err {ev:.1e}", flush=True)
        if args.variants and sec == "prefill" and M == 512:
            tv, ev = time_ours(lib, case, M, variant=8, check=True)
            vrows.append(dict(N=N, K=K, M=M, gs=gs, variant=8, name="prefill S=4", us=tv, pct_copy=100 * byts / tv / 1e3 / copy_bw, relerr=ev))
            print(f"   variant 8 (prefill S=4): {tv:9.2f} us  {2 * M * N * K / tv / 1e6:6.1f} TFLOP/s err {ev:.1e}", flush=True)
        if args.variants and M <= 32 and sec == "decode" and gs == 32:
            for v, name in DECODE_VARIANTS.items():
                tv, ev = time_ours(lib, case, M, variant=v, check=True)
                vrows.append(dict(N=N, K=K, M=M, gs=gs, variant=v, name=name, us=tv, pct_copy=100 * byts / tv / 1e3 / copy_bw, relerr=ev))
                print(f"   variant {v} ({name}): {tv:9.2f} us {100 * byts / tv / 1e3 / copy_bw:5.1f}% err {ev:.1e}", flush=True)

    # ---- markdown
    fmt = lambda v, f: "—" if v is None else format(v, f)
    lines = [f"# int4_plain_mm — measured", "",
             f"- card: {card}", f"- date: {date}", f"- commit: {commit}", f"- torch {torch.__version__}, CUDA {torch.version.cuda}",
             f"- device-to-device copy: **{copy_bw:.0f} GB/s** (read + write, 1 GiB, median of 3×10)",
             "- method: CUDA graph of back-to-back launches rotating over ≥ 400 MB of weight copies (≤ 2048 copies), "
             "median of 15 replays, random data. GB/s counts packed weights + scale/zero + x read + out written. "
             "× tinygemm / × cuBLAS = peer time ÷ our time (> 1: we are faster). cuBLAS runs torch.matmul on the "
             "dequantized bf16 weight. rel err vs fp32 matmul on the bf16-dequantized weight.", "",
             "| shape N×K | M | gs | µs | GB/s | % of copy | floor µs | TFLOP/s | × tinygemm | × cuBLAS bf16 | rel err |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['N']}×{r['K']} | {r['M']} | {r['gs']} | {r['us']:.2f} | {r['gbps']:.0f} | {r['pct_copy']:.1f} | "
                     f"{r['floor_us']:.2f} | {r['tflops']:.1f} | {fmt(r['x_tinygemm'], '.2f')} | {fmt(r['x_cublas'], '.2f')} | {r['relerr']:.1e} |")
    lines.append("")
    lines.append("Peer times (µs): " + "; ".join(
        f"{r['N']}×{r['K']} M{r['M']} gs{r['gs']}: tinygemm {fmt(r['tinygemm_us'], '.2f')}, cuBLAS {fmt(r['cublas_us'], '.2f')}" for r in rows))
    if vrows:
        lines += ["", "## decode variants (gs 32; f32 rows: f32 activations)", "", "| shape | M | variant | µs | % of copy |", "|---|---|---|---|---|"]
        for v in vrows:
            lines.append(f"| {v['N']}×{v['K']} | {v['M']} | {v['variant']} {v['name']} | {v['us']:.2f} | {v['pct_copy']:.1f} |")
    if f32_rows:
        lines += ["", "## f32 activations (int4_cuda_int4_plain_mm_f32) vs bf16, gs 32", "",
                  "GB/s and % of copy count x and out at 4 bytes. rel err vs float64 on the bf16 weights.", "",
                  "| shape N×K | M | f32 µs | % of copy | bf16 µs | f32 ÷ bf16 time | rel err |", "|---|---|---|---|---|---|---|"]
        for r in f32_rows:
            lines.append(f"| {r['N']}×{r['K']} | {r['M']} | {r['us']:.2f} | {r['pct_copy']:.1f} | {r['bf16_us']:.2f} | "
                         f"{r['us'] / r['bf16_us']:.2f} | {r['relerr']:.1e} |")
    md = "\n".join(lines) + "\n"
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "int4_plain_mm_results.md").write_text(md)
    (out / "bench.json").write_text(json.dumps(dict(card=card, date=date, commit=commit, copy_bw=copy_bw, rows=rows,
                                                    variants=vrows, f32=f32_rows), indent=1))
    # short table last
    print()
    print(f"{'shape':>13} {'M':>4} {'gs':>3} {'us':>8} {'GB/s':>6} {'%copy':>6} {'xTG':>5} {'xCB':>5} {'err':>7}")
    for r in rows:
        print(f"{r['N']:>6}x{r['K']:<6} {r['M']:>4} {r['gs']:>3} {r['us']:8.2f} {r['gbps']:6.0f} {r['pct_copy']:6.1f} "
              f"{fmt(r['x_tinygemm'], '5.2f'):>5} {fmt(r['x_cublas'], '5.2f'):>5} {r['relerr']:7.1e}")
    for r in f32_rows:
        print(f"f32 {r['N']:>6}x{r['K']:<6} {r['M']:>4} {r['us']:8.2f} us ({r['pct_copy']:5.1f}%) vs bf16 {r['bf16_us']:8.2f} us "
              f"= {r['us'] / r['bf16_us']:.2f}x  err {r['relerr']:.1e}")
    bad = [r for r in rows if not (r["relerr"] <= 1e-2)] + [r for r in f32_rows if not (r["relerr"] <= 1e-4)]
    if bad:
        print(f"WARNING: {len(bad)} rows with rel err > 1e-2")


if __name__ == "__main__":
    main()
