"""GPU fault injection for issue #8, run on the GPU host (not collected by pytest: no test_ prefix).

    python3 tests/reliability/gpu_faults.py OUT_DIR        (run_gpu_faults.sh sets the host up)

Exports small programs on the host (ExecuTorch's Python export works there), loads them through
the C API (int4_cuda.cuda_runtime.CudaProgram) and records, in OUT_DIR/gpu_faults.json and as a
table on stdout:
  oom            most free GPU memory reserved with torch, then a program whose constants do not
                 fit is loaded: the error text (does it state required vs free bytes?), and whether
                 GPU memory is back where it was after the failed load (nothing half-loaded)
  cycles         100 load/run/unload cycles of one program: cudaMemGetInfo free bytes before/after
  two_programs   two different programs loaded at once, run interleaved, each vs the reference
  kv_full        a forward past the KV cache is an error; generate's loop stops with kv_cache_full
"""
import json
import os
import sys
import time

import torch

import int4_cuda
from int4_cuda import cuda_runtime
from int4_cuda.errors import Int4CudaError

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))


def free_bytes():
    torch.cuda.synchronize()
    return torch.cuda.mem_get_info()[0]


def mlp_files(d, name, dims, seed):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [torch.nn.Linear(a, b, bias=False), torch.nn.SiLU()]
    m = torch.nn.Sequential(*layers[:-1]).to(torch.bfloat16)
    int4_cuda.quantize_(m, 32)
    x = torch.randn(4, dims[0], dtype=torch.bfloat16)
    return int4_cuda.export_to_files(m, (x,), d, name=name), x


def check_oom(d):
    files, x = mlp_files(d, "big", (2048, 4096, 2048), 11)  # ~9 MB of int4 constants
    need = os.path.getsize(files.ptd)
    base = free_bytes()
    hold = torch.empty(max(0, base - need // 2 - (64 << 20)), dtype=torch.uint8, device="cuda")
    hold2 = None
    # Reserve in 2 MB steps until less than half the constants fit.
    while free_bytes() > need // 2:
        step = torch.empty(2 << 20, dtype=torch.uint8, device="cuda")
        hold2 = step if hold2 is None else torch.cat([hold2, step])
    before = free_bytes()
    msg, loaded = "", False
    try:
        p = cuda_runtime.CudaProgram(files.pte, files.ptd)
        p.load_method("forward")
        p.run("forward", x)
        loaded = True
        p.close()
    except Int4CudaError as e:
        msg = str(e)
        p = None
    after_fail = free_bytes()
    del hold, hold2
    torch.cuda.empty_cache()
    ok_after = None
    try:
        with cuda_runtime.CudaProgram(files.pte, files.ptd) as q:
            q.run("forward", x)
        ok_after = True
    except Int4CudaError as e:
        ok_after = f"failed: {e}"
    return {"constants_bytes": need, "free_before_load": before, "free_after_failed_load": after_fail,
            "loaded_anyway": loaded, "error": msg, "states_required_and_free": ("required" in msg or "needs" in msg) and "free" in msg,
            "leak_after_failed_load": before - after_fail, "loads_after_release": ok_after}


def check_cycles(d, n=100):
    files, x = mlp_files(d, "cyc", (256, 512, 256), 12)
    with cuda_runtime.CudaProgram(files.pte, files.ptd) as p:  # CUDA context, kernels, allocator warm
        p.run("forward", x)
    start = free_bytes()
    t0 = time.time()
    for _ in range(n):
        with cuda_runtime.CudaProgram(files.pte, files.ptd) as p:
            p.run("forward", x)
    end = free_bytes()
    return {"cycles": n, "free_before": start, "free_after": end, "delta_bytes": start - end,
            "seconds": round(time.time() - t0, 2)}


def check_two(d):
    a_files, xa = mlp_files(d, "a", (256, 512, 128), 13)
    b_files, xb = mlp_files(d, "b", (128, 384, 64), 14)
    ra, rb = int4_cuda.load(a_files.pte).run("forward", xa)[0], int4_cuda.load(b_files.pte).run("forward", xb)[0]
    pa, pb = cuda_runtime.CudaProgram(a_files.pte, a_files.ptd), cuda_runtime.CudaProgram(b_files.pte, b_files.ptd)
    worst = 0.0
    for _ in range(5):
        ya, yb = pa.run("forward", xa)[0], pb.run("forward", xb)[0]
        worst = max(worst, float((ya.float() - ra.float()).abs().max()), float((yb.float() - rb.float()).abs().max()))
    pa.close(), pb.close()
    return {"max_abs_diff_vs_reference": worst, "ok": worst < 0.05}


def check_kv_full(d):
    from make_fuzz_corpus import tiny_llm

    pte = tiny_llm(d)
    out = {}
    with cuda_runtime.CudaProgram(pte, os.path.join(d, "llm.ptd")) as p:
        p.run("forward", torch.tensor([[1, 2]]), torch.tensor([0]))
        try:
            p.run("forward", torch.tensor([[3, 4]]), torch.tensor([15]))
            out["past_cache"] = "no error"
        except Int4CudaError as e:
            out["past_cache"] = f"error: {str(e)[:300]}"
        p.run("forward", torch.tensor([[5]]), torch.tensor([2]))  # still usable after the error
        out["usable_after_error"] = True
    return out


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    d = os.path.join(out_dir, "files")
    os.makedirs(d, exist_ok=True)
    ok, why = cuda_runtime.available()
    res = {"gpu": why}
    for name, fn in (("oom", check_oom), ("cycles", check_cycles), ("two_programs", check_two), ("kv_full", check_kv_full)):
        try:
            res[name] = fn(os.path.join(d, name))
        except Exception as e:  # record and go on: one visit
            res[name] = {"exception": f"{type(e).__name__}: {str(e)[:400]}"}
        print(name, json.dumps(res[name]), flush=True)
    with open(os.path.join(out_dir, "gpu_faults.json"), "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/gpu_faults")
