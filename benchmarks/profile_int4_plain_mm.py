#!/usr/bin/env python3
"""A few launches of int4_plain_mm on one shape, for `ncu` (args: N K M gs [variant])."""
import ctypes
import glob
import pathlib
import sys

import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
N, K, M, gs = (int(a) for a in sys.argv[1:5])
variant = int(sys.argv[5]) if len(sys.argv) > 5 else 0
lib = ctypes.CDLL(str(next(p for p in [REPO / "build-gpu" / "libint4_cuda_shims.so"] + [pathlib.Path(p) for p in glob.glob(str(REPO / "build*/**/libint4_cuda_shims.so"), recursive=True)] if p.is_file())))
vp, i64 = ctypes.c_void_p, ctypes.c_int64
lib.int4_cuda_int4_plain_mm_variant.argtypes = [vp, vp, vp, vp, vp, i64, i64, i64, i64, vp, ctypes.c_size_t, vp, ctypes.c_int]
workspace = torch.zeros(1 << 20, dtype=torch.uint8, device="cuda")  # INT4_CUDA_PLAIN_MM_WORKSPACE_BYTES
copies = max(2, int(400e6 // (N * K // 2)) + 1)
x = torch.randn(M, K, device="cuda").to(torch.bfloat16)
ws = [(torch.randint(0, 256, (N, K // 2), dtype=torch.uint8, device="cuda"),
       torch.rand(N, K // gs, device="cuda").to(torch.bfloat16), torch.rand(N, K // gs, device="cuda").to(torch.bfloat16)) for _ in range(copies)]
o = torch.empty(M, N, device="cuda", dtype=torch.bfloat16)
for i in range(3 * copies):
    q, s, z = ws[i % copies]
    rc = lib.int4_cuda_int4_plain_mm_variant(x.data_ptr(), q.data_ptr(), s.data_ptr(), z.data_ptr(), o.data_ptr(), M, N, K, gs,
                                             workspace.data_ptr(), workspace.numel(), torch.cuda.current_stream().cuda_stream,
                                             variant)
    assert rc == 0
torch.cuda.synchronize()
print("done")
