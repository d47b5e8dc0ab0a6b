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


def test_pipeline_accepts_folded_legacy(seed):
    x = torch.randn(2, 256, dtype=torch.bfloat16)
    ep = edge_program(LegacyLinear(8, 256, 32), x)
    for p in int4_cuda_passes():
        ep = p(ep).exported_program
    assert int4_nodes(ep)[0].meta[INT4_WEIGHT_META]["layout"] == 1


def _int4_linear_program(x):
    m = nn.Sequential(nn.Linear(64, 16, bias=False))
    m[0].weight = nn.Parameter(CoalescedInt4Tensor.from_hp(m[0].weight.detach().bfloat16(), 32), requires_grad=False)
    return StampInt4LayoutPass()(edge_program(m, x)).exported_program


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_bf16_and_float32_activations_are_accepted(seed, dtype):
    ep = _int4_linear_program(torch.randn(2, 64, dtype=dtype))
    ValidateInt4LayoutPass()(ep)
    (mm,) = int4_nodes(ep)
    assert mm.args[0].meta["val"].dtype == dtype


def test_float16_activations_are_refused_naming_layer_node_and_fix(seed):
    ep = _int4_linear_program(torch.randn(2, 64, dtype=torch.float16))
    (mm,) = int4_nodes(ep)
    with pytest.raises(Int4LayoutError, match=rf"^0 \({mm.name}\): activations are torch.float16; .*"
                                              r"export with --dtype bf16 or fp32"):
        ValidateInt4LayoutPass()(ep)
