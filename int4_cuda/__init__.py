"""int4_cuda: torchao int4 LLMs -> ExecuTorch .pte with coalesced int4 weights -> NVIDIA GPUs.

Python API, in data-flow order:
    quantize_(model, group_size)          stock torchao Int4Tensor weights (mslk math, no mslk)
    pack_(model)                          Int4Tensor -> CoalescedInt4Tensor ([N, n_groups] scale/zero)
    lower(model, example_inputs, name=)   torch.export -> passes -> Int4CudaPartitioner -> program
    save(program, output_dir, name)       <name>.pte (+ <name>.ptd)
    load(pte, ptd)                        run a .pte on the CPU with the reference executor
"""
import logging as _logging
import warnings as _warnings

# Noise from dependencies at import time, not actionable by users: torchao's CPU wheel tries to
# load its CUDA-only extension libraries, torch warns about torchao's enum registration, and
# ExecuTorch's program deserialization trips a torch pytree deprecation.
_logging.getLogger("torchao").setLevel(_logging.ERROR)
_logging.getLogger("torch.utils._pytree").setLevel(_logging.ERROR)
_warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*", category=FutureWarning)

# The API below is imported on first use (PEP 562): `int4-cuda generate` on the CUDA runtime and
# the error types need none of torchao / executorch.exir, which cost ~3 s of start-up. Code that
# uses torch.ops.int4_cuda.* imports int4_cuda.backend itself (that import registers the ops).
_LAZY = {
    "CoalescedInt4Tensor": "int4_cuda.backend",
    "SUPPORTED_GROUP_SIZES": "int4_cuda.backend",
    "quantize_": "int4_cuda.backend",
    "quantize_int4": "int4_cuda.backend",
    "ExportedFiles": "int4_cuda.backend.lower",
    "export_to_files": "int4_cuda.backend.lower",
    "lower": "int4_cuda.backend.lower",
    "save": "int4_cuda.backend.lower",
    "pack_": "int4_cuda.backend.pack",
    "Int4CudaPartitioner": "int4_cuda.backend.partitioner",
    "Int4CudaBackend": "int4_cuda.backend.int4_cuda_backend",
}

__all__ = [
    "CoalescedInt4Tensor", "SUPPORTED_GROUP_SIZES", "quantize_", "quantize_int4", "pack_", "lower", "save",
    "export_to_files", "ExportedFiles", "Int4CudaPartitioner", "Int4CudaBackend", "load",
]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'int4_cuda' has no attribute '{name}'")


def __dir__():
    return sorted(set(globals()) | set(__all__))


def load(pte_path: str, ptd_path=None):
    from int4_cuda.reference import load as _load

    return _load(pte_path, ptd_path)
