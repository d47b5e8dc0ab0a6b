"""pack_: stock Int4Tensor -> CoalescedInt4Tensor on the module; other torchao types refused."""
import pytest
import torch
import torch.nn as nn
from torchao.quantization.quantize_.workflows.intx.intx_unpacked_to_int8_tensor import IntxUnpackedToInt8Tensor

from int4_cuda import CoalescedInt4Tensor, pack_, quantize_


def test_pack_swaps_int4tensor_weights():
    m = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16)).to(torch.bfloat16)
    quantize_(m, 32)
    x = torch.randn(3, 64, dtype=torch.bfloat16)
    assert pack_(m) == ["0", "2"]
    assert all(isinstance(m[i].weight, CoalescedInt4Tensor) for i in (0, 2))
    assert m(x).shape == (3, 16)
    assert pack_(m) == ["0", "2"]  # idempotent


def test_other_torchao_type_is_refused_by_layer_name():
    m = nn.Sequential(nn.Linear(64, 32))
    w = IntxUnpackedToInt8Tensor(
        qdata=torch.randint(-8, 8, (32, 64), dtype=torch.int8), scale=torch.ones(32, 2), zero_point=torch.zeros(32, 2),
        target_dtype=torch.int4, block_size=(1, 32), dtype=torch.float32, activation_quantization=None)
    m[0].weight = nn.Parameter(w, requires_grad=False)
    with pytest.raises(TypeError, match=r"^0: weight is a torchao IntxUnpackedToInt8Tensor.*int4_cuda.quantize_"):
        pack_(m)
