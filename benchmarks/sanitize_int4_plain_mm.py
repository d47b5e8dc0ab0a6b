#!/usr/bin/env python3
"""One small call of every M path of int4_plain_mm (and every kernel variant, bf16 and f32), for
`compute-sanitizer --tool memcheck python3 benchmarks/sanitize_int4_plain_mm.py`.
Exact-size allocations (no slack) so an out-of-bounds access lands outside them."""
import ctypes
import glob
import pathlib
import sys

import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
libs = [REPO / "build-gpu" / "libint4_cuda_shims.so"] + [pathlib.Path(p) for p in glob.glob(str(REPO / "build*/**/libint4_cuda_shims.so"), recursive=True)]
lib = ctypes.CDLL(str(next(p for p in libs if p.is_file())))
vp, i64 = ctypes.c_void_p, ctypes.c_int64
lib.int4_cuda_int4_plain_mm_variant.argtypes = [vp, vp, vp, vp, vp, i64, i64, i64, i64, vp, ctypes.c_size_t, vp, ctypes.c_int]
# The workspace (shims/int4_plain_mm.h) at its documented size, so the stream-K path runs too.
ws = torch.zeros(1 << 20, dtype=torch.uint8, device="cuda")
bad = 0
for M in [1, 2, 3, 4, 5, 8, 9, 16, 17, 32, 33, 63, 64, 65, 128, 512]:
    # (17920, 128, 32) at M = 512: on an H100 the Hopper tile choice splits into two launches.
    for (N, K, gs) in [(200, 576, 64), (200, 576, 32), (37, 1536, 256), (130, 96, 32), (70, 512, 32), (37, 2560, 64)] + ([(17920, 128, 32)] if M == 512 else []):
        variants = [0, 8, 9, 17, 19, 20, 21, 22, 23, 24, 25] + ([1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 14, 15, 26, 27, 28, 29, 30, 31, 32, 33] if M <= 32 else [16])
        for v in variants:
            x = torch.randn(M, K, device="cuda").to(torch.bfloat16)
            q = torch.randint(0, 256, (N, K // 2), dtype=torch.uint8, device="cuda")
            s = torch.rand(N, K // gs, device="cuda").to(torch.bfloat16)
            z = torch.rand(N, K // gs, device="cuda").to(torch.bfloat16)
            o = torch.full((M, N), float("nan"), device="cuda", dtype=torch.bfloat16)
            rc = lib.int4_cuda_int4_plain_mm_variant(x.data_ptr(), q.data_ptr(), s.data_ptr(), z.data_ptr(), o.data_ptr(),
                                                     M, N, K, gs, ws.data_ptr(), ws.numel(),
                                                     torch.cuda.current_stream().cuda_stream, v)
            torch.cuda.synchronize()
            nan = int(torch.isnan(o.float()).sum())
            if rc != 0 or nan:
                bad += 1
                print(f"M={M} N={N} K={K} gs={gs} variant={v}: rc={rc} unwritten={nan}")
# f32 activations: both kernels (variant 9 = prefill) at every f32 M path.
lib.int4_cuda_int4_plain_mm_f32_variant.argtypes = [vp, vp, vp, vp, vp, i64, i64, i64, i64, vp, ctypes.c_int]
for M in [1, 2, 4, 5, 8, 9, 16, 17, 33, 64, 65, 130]:
    for (N, K, gs) in [(200, 576, 64), (37, 1536, 256), (130, 96, 32)]:
        for v in (0, 9, 13, 14, 15, 16, 17, 18):
            x = torch.randn(M, K, device="cuda")
            q = torch.randint(0, 256, (N, K // 2), dtype=torch.uint8, device="cuda")
            s = torch.rand(N, K // gs, device="cuda").to(torch.bfloat16)
            z = torch.rand(N, K // gs, device="cuda").to(torch.bfloat16)
            o = torch.full((M, N), float("nan"), device="cuda")
            rc = lib.int4_cuda_int4_plain_mm_f32_variant(x.data_ptr(), q.data_ptr(), s.data_ptr(), z.data_ptr(),
                                                         o.data_ptr(), M, N, K, gs, torch.cuda.current_stream().cuda_stream, v)
            torch.cuda.synchronize()
            nan = int(torch.isnan(o).sum())
            if rc != 0 or nan:
                bad += 1
                print(f"f32 M={M} N={N} K={K} gs={gs} variant={v}: rc={rc} unwritten={nan}")
print("sanitize script done, problems:", bad)
sys.exit(1 if bad else 0)
