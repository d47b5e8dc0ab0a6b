import pytest
import torch
import torch.nn as nn

from int4_cuda import CoalescedInt4Tensor
from int4_cuda.passes import Int4LayoutError, StampInt4LayoutPass, ValidateInt4LayoutPass, int4_cuda_passes
from int4_cuda.passes.graph_utils import INT4_WEIGHT_META

from helpers import LegacyLinear, edge_program, int4_nodes


def test_legacy_square_weight_is_refused_by_recorded_layout(seed):
    ep = StampInt4LayoutPass()(edge_program(LegacyLinear(8, 256, 32), torch.randn(1, 256, dtype=torch.bfloat16))).exported_program
    with pytest.raises(Int4LayoutError, match=r"legacy \[n_groups, N\] layout"):
        ValidateInt4LayoutPass()(ep)


def test_unstamped_node_is_refused():
    ep = edge_program(LegacyLinear(16, 64, 32), torch.randn(1, 64, dtype=torch.bfloat16))
    with pytest.raises(Int4LayoutError, match="no recorded layout"):
        ValidateInt4LayoutPass()(ep)


def test_pipeline_accepts_folded_legacy_and_float32_activations_are_refused(seed):
    x = torch.randn(2, 256, dtype=torch.bfloat16)
    ep = edge_program(LegacyLinear(8, 256, 32), x)
    for p in int4_cuda_passes():
        ep = p(ep).exported_program
    assert int4_nodes(ep)[0].meta[INT4_WEIGHT_META]["layout"] == 1

    m = nn.Sequential(nn.Linear(64, 16, bias=False))
    m[0].weight = nn.Parameter(CoalescedInt4Tensor.from_hp(m[0].weight.detach().bfloat16(), 32), requires_grad=False)
    ep = StampInt4LayoutPass()(edge_program(m, torch.randn(2, 64))).exported_program
    with pytest.raises(Int4LayoutError, match=r"^0: activations are torch.float32"):
        ValidateInt4LayoutPass()(ep)
