"""StampInt4LayoutPass: record on every int4_plain_mm node which layout its constants are stored in.

The layout is read from the graph, not guessed from shapes (N == n_groups makes both layouts the
same shape): scale/zero consumed directly from a constant are stored [N, n_groups]
(COALESCED_N_GROUPS); scale/zero reached through a transpose of a constant are stored
[n_groups, N] (LEGACY_GROUPS_N) and would be transposed at run time. Anything else (weights that
are not constants) is refused here, naming the node.

Writes node.meta[INT4_WEIGHT_META] = {name, layout, n, k, group_size}.
"""
from __future__ import annotations

import torch
from executorch.exir.pass_base import ExportedProgramPassBase, ExportedProgramPassResult
from torch.export import ExportedProgram

from int4_cuda.schema import WeightLayout

from .graph_utils import INT4_WEIGHT_META, aten_op, constant_target, is_int4_mm, layer_name

_TRANSPOSES = {
    torch.ops.aten.t.default,
    torch.ops.aten.t_copy.default,
    torch.ops.aten.transpose.int,
    torch.ops.aten.transpose_copy.int,
    torch.ops.aten.permute.default,
    torch.ops.aten.permute_copy.default,
}


def _source(ep: ExportedProgram, mm: torch.fx.Node, arg, what: str):
    """(constant placeholder, transposed?) behind one weight argument of int4_plain_mm."""
    if isinstance(arg, torch.fx.Node):
        if constant_target(ep, arg) is not None:
            return arg, False
        if arg.op == "call_function" and aten_op(arg) in _TRANSPOSES:
            src = arg.args[0]
            if isinstance(src, torch.fx.Node) and constant_target(ep, src) is not None and src.meta["val"].dim() == 2:
                return src, True
    raise ValueError(
        f"{mm.name}: int4_plain_mm's {what} is not a constant weight (got {arg}); int4_cuda exports "
        f"only weights known at export time — pack the model's Int4Tensor weights with int4_cuda.pack_"
    )


class StampInt4LayoutPass(ExportedProgramPassBase):
    def call(self, exported_program: ExportedProgram) -> ExportedProgramPassResult:
        ep = exported_program
        modified = False
        for node in ep.graph.nodes:
            if not is_int4_mm(node):
                continue
            x, q_arg, s_arg, z_arg, group_size = node.args[:5]
            qdata, q_t = _source(ep, node, q_arg, "qdata")
            scale, s_t = _source(ep, node, s_arg, "scale")
            zero, z_t = _source(ep, node, z_arg, "zero")
            name = layer_name(constant_target(ep, qdata))
            if q_t:
                raise ValueError(f"{name}: int4_plain_mm's qdata is transposed in the graph; qdata must be [N, K/2]")
            if s_t != z_t:
                raise ValueError(f"{name}: scale and zero of int4_plain_mm are stored in different layouts")
            n = qdata.meta["val"].shape[0]
            k = x.meta["val"].shape[-1]
            node.meta[INT4_WEIGHT_META] = {
                "name": name,
                "layout": WeightLayout.LEGACY_GROUPS_N if s_t else WeightLayout.COALESCED_N_GROUPS,
                "n": int(n),
                "k": int(k),
                "group_size": int(group_size),
            }
            modified = True
        return ExportedProgramPassResult(ep, modified)
