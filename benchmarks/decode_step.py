"""One prefill of P random tokens and one decode step of an exported LLM through the CUDA runtime
(int4_cuda.cuda_runtime, eager launches): the program benchmarks/profile_decode_step.sh puts under
Nsight Compute, and compute-sanitizer runs on.

    python3 benchmarks/decode_step.py MODEL.pte [--data MODEL.ptd] [--prompt 128]
"""
import argparse

import torch

from int4_cuda import cuda_runtime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pte")
    ap.add_argument("--data")
    ap.add_argument("--prompt", type=int, default=128)
    a = ap.parse_args()
    prog = cuda_runtime.CudaProgram(a.pte, a.data or a.pte[:-4] + ".ptd")
    # ids below 32000 fit every vocabulary the presets and SmolLM2 have
    ids = torch.randint(0, 32000, (1, a.prompt), generator=torch.Generator().manual_seed(0))
    (logits,) = prog.run("forward", ids, torch.tensor([0]))
    nxt = int(logits.reshape(-1, logits.shape[-1])[-1].argmax())
    (logits2,) = prog.run("forward", torch.tensor([[nxt]]), torch.tensor([a.prompt]))
    assert torch.isfinite(logits).all() and torch.isfinite(logits2).all()
    print(f"decode_step: prefill {a.prompt} tokens + 1 decode step, next token {int(logits2.argmax())}")


if __name__ == "__main__":
    main()
