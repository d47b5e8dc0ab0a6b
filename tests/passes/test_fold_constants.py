import torch

from int4_cuda.passes import FoldConstantsPass
from int4_cuda.passes.graph_utils import aten_op, constant_target

from helpers import LegacyLinear, edge_program, int4_nodes

PERMUTES = {torch.ops.aten.permute_copy.default, torch.ops.aten.t_copy.default, torch.ops.aten.transpose_copy.int}


def test_transposed_constants_are_folded(seed):
    m = LegacyLinear(8, 256, 32)  # N == n_groups == 8
    x = torch.randn(3, 256, dtype=torch.bfloat16)
    ep = edge_program(m, x)
    assert any(aten_op(n) in PERMUTES for n in ep.graph.nodes)
    before = ep.module()(x)
    ep = FoldConstantsPass()(ep).exported_program
    assert not any(aten_op(n) in PERMUTES for n in ep.graph.nodes)
    (mm,) = int4_nodes(ep)
    for arg in mm.args[1:4]:
        assert constant_target(ep, arg) is not None  # fed straight from a constant
    scale = ep.state_dict.get(constant_target(ep, mm.args[2]), None)
    if scale is None:
        scale = ep.constants[constant_target(ep, mm.args[2])]
    assert scale.is_contiguous() and torch.equal(scale, m.coalesced.scale)
    assert torch.equal(ep.module()(x), before)
