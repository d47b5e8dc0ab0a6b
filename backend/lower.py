"""export → passes → partition → preprocess → .pte (+ .ptd): the whole ahead-of-time path."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn as nn
from executorch.exir import EdgeCompileConfig, ExecutorchProgramManager, to_edge
from executorch.exir.pass_manager import ExportedProgramPassManager

from int4_cuda.passes import int4_cuda_passes

from .pack import pack_
from .partitioner import Int4CudaPartitioner


@dataclass
class ExportedFiles:
    pte: str
    ptd: Optional[str]  # None when weights are embedded in the .pte


def lower(
    model: nn.Module,
    example_inputs: Tuple[Any, ...],
    *,
    name: str = "model",
    dynamic_shapes=None,
    embed_weights: bool = False,
    constant_methods: Optional[Dict[str, Any]] = None,
) -> ExecutorchProgramManager:
    """Packs the model's Int4Tensor weights (in place), exports it and lowers it to int4_cuda."""
    pack_(model)
    with torch.no_grad():
        ep = torch.export.export(model, example_inputs, dynamic_shapes=dynamic_shapes, strict=False)
    partitioner = Int4CudaPartitioner(name=name, embed_weights=embed_weights)
    # to_edge + transform + to_backend rather than to_edge_transform_and_lower: the latter copies
    # every constant once more while it decomposes (an 8B model would need two copies in memory).
    keep_whole, _ = partitioner.ops_to_not_decompose(ep)
    edge = to_edge(ep, constant_methods=constant_methods,
                   compile_config=EdgeCompileConfig(_check_ir_validity=False, preserve_ops=keep_whole))
    del ep
    edge = edge.transform(ExportedProgramPassManager(int4_cuda_passes()))
    return edge.to_backend(partitioner).to_executorch()


def save(program: ExecutorchProgramManager, output_dir: str, name: str, verbose: bool = True) -> ExportedFiles:
    """Writes <output_dir>/<name>.pte and, when weights are external, <output_dir>/<name>.ptd.

    Files are written under a temporary name and renamed, so an interrupted export never leaves
    a file that looks complete."""
    os.makedirs(output_dir, exist_ok=True)
    pte = os.path.join(output_dir, f"{name}.pte")
    tmp = pte + ".partial"
    with open(tmp, "wb") as f:
        program.write_to_file(f)
    ptd = None
    data = program._tensor_data or {}  # ExecuTorch keeps the per-tag .ptd payloads here
    if data:
        tags = {t if t.endswith(".ptd") else t + ".ptd" for t in data}
        if tags != {f"{name}.ptd"}:
            raise RuntimeError(f"int4_cuda: expected one data file {name}.ptd, ExecuTorch produced {sorted(tags)}")
        ptd = os.path.join(output_dir, f"{name}.ptd")
        with open(ptd + ".partial", "wb") as f:
            next(iter(data.values())).write_to_file(f)
        os.replace(ptd + ".partial", ptd)
    os.replace(tmp, pte)
    if verbose:
        for p in (pte, ptd):
            if p:
                print(f"wrote {p} ({os.path.getsize(p):,} bytes)")
    return ExportedFiles(pte, ptd)


def export_to_files(model, example_inputs, output_dir: str, name: str = "model", **kw) -> ExportedFiles:
    return save(lower(model, example_inputs, name=name, **kw), output_dir, name)
