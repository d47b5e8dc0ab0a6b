"""CoalescedInt4Tensor: same numbers as torchao's Int4Tensor, coalesced layout, routing by type."""
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torchao.quantization import Int4Tensor

from int4_cuda import CoalescedInt4Tensor, quantize_int4

INT4_MM = torch.ops.int4_cuda.int4_plain_mm.default


class OpLog(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func)
        return func(*args, **(kwargs or {}))


def torchao_meaning(t: Int4Tensor) -> torch.Tensor:
    """float64 W from the stock Int4Tensor's own fields: signed nibbles, scale/zero [G, N]."""
    b = t.qdata.view(torch.uint8).to(torch.int64)
    q = torch.stack([b & 0xF, b >> 4], -1).reshape(b.shape[0], -1)
    q = torch.where(q >= 8, q - 16, q).double()
    gs = t.block_size[1]
    s = t.scale.double().t().repeat_interleave(gs, 1)
    z = t.zero_point.double().t().repeat_interleave(gs, 1)
    return q * s + z


@pytest.mark.parametrize("n,k,gs", [(48, 256, 32), (8, 256, 32), (64, 512, 128), (40, 1536, 64)])
def test_same_meaning_as_int4tensor(seed, n, k, gs):
    t = quantize_int4(torch.randn(n, k, dtype=torch.bfloat16), gs)
    c = CoalescedInt4Tensor.from_int4_tensor(t)
    assert c.qdata.dtype == torch.uint8 and tuple(c.qdata.shape) == (n, k // 2)
    assert tuple(c.scale.shape) == (n, k // gs) and c.scale.is_contiguous() and c.zero.is_contiguous()
    torch.testing.assert_close(c.dequantize(torch.float64), torchao_meaning(t), rtol=0, atol=0)
    # the coalesced row n holds column n of torchao's [G, N] fields
    torch.testing.assert_close(c.scale, t.scale.t(), rtol=0, atol=0)


def test_square_weight_n_equals_n_groups(seed):
    t = quantize_int4(torch.randn(8, 256, dtype=torch.bfloat16), 32)  # N = 8 = K/32
    assert tuple(t.scale.shape) == (8, 8)
    c = CoalescedInt4Tensor.from_int4_tensor(t)
    torch.testing.assert_close(c.scale, t.scale.t().contiguous(), rtol=0, atol=0)
    assert not torch.equal(c.scale, t.scale)  # a layout mix-up would not be caught by shape
    torch.testing.assert_close(c.dequantize(torch.float64), torchao_meaning(t), rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(1, 256), (4, 256), (64, 256), (2, 3, 256)])
def test_linear_routes_to_int4_plain_mm(seed, shape):
    c = CoalescedInt4Tensor.from_hp(torch.randn(96, 256, dtype=torch.bfloat16), 32)
    x = torch.randn(*shape, dtype=torch.bfloat16)
    bias = torch.randn(96, dtype=torch.bfloat16)
    with OpLog() as log:
        y = F.linear(x, c, bias)
    assert log.ops.count(INT4_MM) == 1
    assert y.shape == (*shape[:-1], 96) and y.dtype == torch.bfloat16
    ref = (x.double() @ c.dequantize(torch.float64).t() + bias.double())
    assert ((y.double() - ref).norm() / ref.norm()) < 1e-2
    with OpLog() as log:
        y2 = torch.ops.aten.linear.default(x, c, bias)
    assert log.ops.count(INT4_MM) == 1 and torch.equal(y, y2)


def test_stock_int4tensor_never_reaches_int4_plain_mm():
    t = quantize_int4(torch.randn(64, 128, dtype=torch.bfloat16), 32)
    x = torch.randn(2, 128, dtype=torch.bfloat16)
    with OpLog() as log:
        with pytest.raises(Exception, match="mslk"):  # stock behaviour: torchao calls mslk's kernel
            F.linear(x, t)
    assert INT4_MM not in log.ops


@pytest.mark.parametrize("bad,msg", [
    (dict(gs=16), "group size 16 is not supported"),
    (dict(dtype=torch.float32), "convert the model with model.to"),
])
def test_refuses_what_kernels_cannot_run(bad, msg):
    w = torch.randn(32, 128, dtype=bad.get("dtype", torch.bfloat16))
    t = quantize_int4(w, 32)
    if "gs" in bad:
        t.block_size = [1, bad["gs"]]
    with pytest.raises(ValueError, match=msg):
        CoalescedInt4Tensor.from_int4_tensor(t, name="layer7")
