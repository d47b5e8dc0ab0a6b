"""Runs a few exported programs through the CUDA runtime, for compute-sanitizer (not a pytest file).

    python tests/runtime/memcheck_run.py DIR --export-only     # export the programs into DIR (CPU)
    compute-sanitizer --tool memcheck --error-exitcode 9 python tests/runtime/memcheck_run.py DIR

The second command only loads and runs (every op family, decode and prefill int4 matmuls, KV
cache steps) and prints each output's SQNR against the reference executor.
"""
import os
import pickle
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/ (testutil)

import torch  # noqa: E402

import int4_cuda  # noqa: E402
from cases import build, cases, sqnr_db  # noqa: E402

NAMES = ("elementwise", "norms", "matmuls", "attention", "shapes", "linears", "gemv", "embed", "mlp4", "block", "llm_ops",
         "fused_llm_ops")


def main():
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    if "--export-only" in sys.argv:
        todo = {}
        for make in cases():
            if make.__name__ in NAMES:
                case, files = build(make, d, seed=7)
                todo[case.name] = (files.pte, files.ptd, case.steps)
        with open(os.path.join(d, "cases.pkl"), "wb") as f:
            pickle.dump(todo, f)
        return 0
    from int4_cuda.cuda_runtime import CudaProgram

    with open(os.path.join(d, "cases.pkl"), "rb") as f:
        todo = pickle.load(f)
    worst = float("inf")
    for name, (pte, ptd, steps) in todo.items():
        ref, prog = int4_cuda.load(pte, ptd), CudaProgram(pte, ptd)
        for inputs in steps:
            for r, o in zip(ref.run("forward", *inputs), prog.run("forward", *inputs)):
                if isinstance(r, torch.Tensor) and r.is_floating_point():
                    worst = min(worst, sqnr_db(r, o))
        prog.close()
        print(f"memcheck_run: {name} ok", flush=True)
    print(f"memcheck_run: all programs ran; worst SQNR {worst:.1f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
