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

from int4_cuda.backend import CoalescedInt4Tensor, SUPPORTED_GROUP_SIZES, quantize_, quantize_int4
from int4_cuda.backend.lower import ExportedFiles, export_to_files, lower, save
from int4_cuda.backend.pack import pack_
from int4_cuda.backend.partitioner import Int4CudaPartitioner
from int4_cuda.backend.int4_cuda_backend import Int4CudaBackend

__all__ = [
    "CoalescedInt4Tensor", "SUPPORTED_GROUP_SIZES", "quantize_", "quantize_int4", "pack_", "lower", "save",
    "export_to_files", "ExportedFiles", "Int4CudaPartitioner", "Int4CudaBackend", "load",
]


def load(pte_path: str, ptd_path=None):
    from int4_cuda.reference import load as _load

    return _load(pte_path, ptd_path)
