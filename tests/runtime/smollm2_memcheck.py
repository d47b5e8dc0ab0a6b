"""One prefill and one decode step of SmolLM2 through the CUDA runtime, for compute-sanitizer:
    compute-sanitizer --tool memcheck python3 tests/runtime/smollm2_memcheck.py DIR"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from int4_cuda import cuda_runtime  # noqa: E402
from smollm2_case import chat_ids  # noqa: E402

d = sys.argv[1]
prog = cuda_runtime.CudaProgram(os.path.join(d, "smollm2.pte"), os.path.join(d, "smollm2.ptd"))
_, ids = chat_ids(d)
(lg,) = prog.run("forward", torch.tensor([ids]), torch.tensor([0]))
(lg2,) = prog.run("forward", torch.tensor([[int(lg.argmax())]]), torch.tensor([len(ids)]))
assert torch.isfinite(lg).all() and torch.isfinite(lg2).all()
print("memcheck run: prefill", len(ids), "tokens + 1 decode step, next token", int(lg2.argmax()))
