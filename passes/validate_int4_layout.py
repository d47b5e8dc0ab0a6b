"""ValidateInt4LayoutPass: refuse any int4_plain_mm the runtime would refuse, at export time.

Judged by the layout recorded by StampInt4LayoutPass (never by shape alone), then the constants'
dtypes and shapes against that layout and the group sizes the kernels support, and the
activations' dtype (bf16 or float32).
"""
from __future__ import annotations

import torch
from executorch.exir.pass_base import ExportedProgramPassBase, ExportedProgramPassResult
from torch.export import ExportedProgram

from int4_cuda.backend.coalesced_int4_tensor import check_group_size
from int4_cuda.schema import WeightLayout

from .graph_utils import INT4_WEIGHT_META, is_int4_mm


# Activation dtypes an int4 matmul has a kernel for: bf16, and float32 (the same bf16 weight
# operand with float32 x and output; backend/ops.py).
ACTIVATION_DTYPES = (torch.bfloat16, torch.float32)


class Int4LayoutError(ValueError):
    pass


class ValidateInt4LayoutPass(ExportedProgramPassBase):
    def call(self, exported_program: ExportedProgram) -> ExportedProgramPassResult:
        for node in exported_program.graph.nodes:
            if not is_int4_mm(node):
                continue
            info = node.meta.get(INT4_WEIGHT_META)
            if info is None:
                raise Int4LayoutError(f"{node.name}: int4_plain_mm has no recorded layout; run StampInt4LayoutPass first")
            name = info["name"]
            if info["layout"] != WeightLayout.COALESCED_N_GROUPS:
                raise Int4LayoutError(
                    f"{name}: scale/zero are stored in the legacy [n_groups, N] layout and would be "
                    f"transposed at run time; int4_cuda needs them coalesced [N, n_groups] — run "
                    f"FoldConstantsPass before StampInt4LayoutPass, or pack the weight with int4_cuda.pack_"
                )
            n, k, gs = info["n"], info["k"], info["group_size"]
            check_group_size(name, k, gs)
            x, q, s, z = (a.meta["val"] for a in node.args[:4])
            want = {"qdata": ((n, k // 2), torch.uint8), "scale": ((n, k // gs), torch.bfloat16),
                    "zero": ((n, k // gs), torch.bfloat16)}
            for what, t in (("qdata", q), ("scale", s), ("zero", z)):
                shape, dtype = want[what]
                if tuple(t.shape) != shape or t.dtype != dtype or not t.is_contiguous():
                    raise Int4LayoutError(
                        f"{name}: {what} is {t.dtype} {tuple(t.shape)}, expected contiguous {dtype} {shape}"
                    )
            if x.dtype not in ACTIVATION_DTYPES:
                raise Int4LayoutError(
                    f"{name} ({node.name}): activations are {x.dtype}; int4_cuda kernels take bfloat16 or "
                    f"float32 — export with --dtype bf16 or fp32 (run the model's linears in one of them)"
                )
        return ExportedProgramPassResult(exported_program, False)
