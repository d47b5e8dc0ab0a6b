"""int4_cuda::int4_plain_mm: reference implementation vs float64, fake kernel shapes."""
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import int4_cuda.backend  # noqa: F401


def rand_fields(n, k, gs):
    q = torch.randint(0, 256, (n, k // 2), dtype=torch.uint8)
    s = (torch.rand(n, k // gs) * 0.02 + 0.001).to(torch.bfloat16)
    z = (torch.randn(n, k // gs) * 0.05).to(torch.bfloat16)
    return q, s, z


def f64_reference(x, q, s, z, gs):
    b = q.to(torch.int64)
    u = torch.stack([b & 0xF, b >> 4], -1).reshape(q.shape[0], -1).double()
    w = (u - 8) * s.double().repeat_interleave(gs, 1) + z.double().repeat_interleave(gs, 1)
    return x.double() @ w.t()


@pytest.mark.parametrize("m", [1, 3, 8, 64])
@pytest.mark.parametrize("gs", [32, 64, 128, 256])
def test_reference_matches_float64(seed, m, gs):
    n, k = 80, 512
    x = torch.randn(m, k, dtype=torch.bfloat16)
    q, s, z = rand_fields(n, k, gs)
    y = torch.ops.int4_cuda.int4_plain_mm(x, q, s, z, gs)
    ref = f64_reference(x, q, s, z, gs)
    assert y.dtype == torch.bfloat16 and y.shape == (m, n)
    assert ((y.double() - ref).norm() / ref.norm()) < 1e-2


def test_fake_kernel_shape_and_checks():
    with FakeTensorMode():
        x = torch.empty(5, 576, dtype=torch.bfloat16)
        q = torch.empty(40, 288, dtype=torch.uint8)
        s = torch.empty(40, 18, dtype=torch.bfloat16)
        assert torch.ops.int4_cuda.int4_plain_mm(x, q, s, s, 32).shape == (5, 40)
    x = torch.randn(2, 64, dtype=torch.bfloat16)
    q, s, z = rand_fields(16, 64, 32)
    with pytest.raises(RuntimeError, match=r"scale/zero must be \[N, K/group_size\]"):
        torch.ops.int4_cuda.int4_plain_mm(x, q, s.t().contiguous(), z, 32)
    with pytest.raises(RuntimeError, match="x has K=32 but qdata packs K=64"):
        torch.ops.int4_cuda.int4_plain_mm(x[:, :32], q, s, z, 32)
