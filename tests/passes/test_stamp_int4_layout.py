import pytest
import torch
import torch.nn as nn

from int4_cuda import CoalescedInt4Tensor
from int4_cuda.passes import FoldConstantsPass, StampInt4LayoutPass
from int4_cuda.passes.graph_utils import INT4_WEIGHT_META
from int4_cuda.schema import WeightLayout

from helpers import LegacyLinear, edge_program, int4_nodes


def test_coalesced_weight_is_stamped(seed):
    m = nn.Sequential(nn.Linear(256, 8, bias=False)).to(torch.bfloat16)
    m[0].weight = nn.Parameter(CoalescedInt4Tensor.from_hp(m[0].weight.detach(), 32), requires_grad=False)
    ep = StampInt4LayoutPass()(edge_program(m, torch.randn(2, 256, dtype=torch.bfloat16))).exported_program
    (mm,) = int4_nodes(ep)
    assert mm.meta[INT4_WEIGHT_META] == {"name": "0", "layout": WeightLayout.COALESCED_N_GROUPS,
                                         "n": 8, "k": 256, "group_size": 32}


def test_transposed_square_weight_is_stamped_legacy(seed):
    # N == n_groups: both layouts have shape [8, 8]; only the graph tells them apart.
    ep = edge_program(LegacyLinear(8, 256, 32), torch.randn(1, 256, dtype=torch.bfloat16))
    ep = StampInt4LayoutPass()(ep).exported_program
    (mm,) = int4_nodes(ep)
    assert mm.meta[INT4_WEIGHT_META]["layout"] == WeightLayout.LEGACY_GROUPS_N
    ep = StampInt4LayoutPass()(FoldConstantsPass()(ep).exported_program).exported_program
    (mm,) = int4_nodes(ep)
    assert mm.meta[INT4_WEIGHT_META]["layout"] == WeightLayout.COALESCED_N_GROUPS


class WeightsAsInputs(nn.Module):
    def forward(self, x, q, s, z):
        return torch.ops.int4_cuda.int4_plain_mm(x, q, s, z, 32)


def test_non_constant_weights_are_refused():
    c = CoalescedInt4Tensor.from_hp(torch.randn(16, 64, dtype=torch.bfloat16), 32)
    ep = edge_program(WeightsAsInputs(), torch.randn(1, 64, dtype=torch.bfloat16), c.qdata, c.scale, c.zero)
    with pytest.raises(ValueError, match="qdata is not a constant weight"):
        StampInt4LayoutPass()(ep)
