import torch
import torch.nn as nn
from executorch.exir import EdgeCompileConfig, to_edge

from int4_cuda import quantize_int4
from int4_cuda.backend.coalesced_int4_tensor import CoalescedInt4Tensor


class LegacyLinear(nn.Module):
    """Holds scale/zero in torchao's [n_groups, N] layout and transposes them in forward: the
    pattern the passes must fold (or, unfolded, record as LEGACY_GROUPS_N)."""

    def __init__(self, n, k, gs):
        super().__init__()
        c = CoalescedInt4Tensor.from_int4_tensor(quantize_int4(torch.randn(n, k, dtype=torch.bfloat16), gs))
        self.gs = gs
        self.register_buffer("qdata", c.qdata)
        self.register_buffer("scale_gn", c.scale.t().contiguous())
        self.register_buffer("zero_gn", c.zero.t().contiguous())
        self.coalesced = c

    def forward(self, x):
        return torch.ops.int4_cuda.int4_plain_mm(x, self.qdata, self.scale_gn.t(), self.zero_gn.t(), self.gs)


def edge_program(model, *inputs):
    ep = torch.export.export(model, inputs, strict=False)
    return to_edge(ep, compile_config=EdgeCompileConfig(_check_ir_validity=False)).exported_program()


def int4_nodes(ep):
    from int4_cuda.passes.graph_utils import is_int4_mm

    return [n for n in ep.graph.nodes if is_int4_mm(n)]
