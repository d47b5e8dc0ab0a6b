"""int4_cuda ops: int4_plain_mm and linear reference implementations vs float64, fake kernel shapes,
the LLM ops."""
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


def bf16_operand_f64(q, s, z, gs):
    """The f32 kernel's weight operand, computed independently: W = q*scale + zero exactly (float64),
    rounded to float32 (what the kernel's fma gives), then once to bf16."""
    b = q.to(torch.int64)
    u = torch.stack([b & 0xF, b >> 4], -1).reshape(q.shape[0], -1).double()
    w = (u - 8) * s.double().repeat_interleave(gs, 1) + z.double().repeat_interleave(gs, 1)
    return w.float().to(torch.bfloat16).double()


@pytest.mark.parametrize("m", [1, 5, 64])
@pytest.mark.parametrize("gs", [32, 128])
def test_float32_activations_use_bf16_weights_and_stay_float32(seed, m, gs):
    """f32 x: the weight is rounded once to bf16 (the bf16 path's operand), x and the output are
    never rounded. Against float64 on those weights the only error is float32 summation (~1e-7
    relative); unrounded weights or a bf16 x or output would miss by 1e-3 or more."""
    n, k = 80, 512
    x = torch.randn(m, k, dtype=torch.float32)
    q, s, z = rand_fields(n, k, gs)
    y = torch.ops.int4_cuda.int4_plain_mm(x, q, s, z, gs)
    ref = x.double() @ bf16_operand_f64(q, s, z, gs).t()
    assert y.dtype == torch.float32 and y.shape == (m, n)
    assert ((y.double() - ref).norm() / ref.norm()) < 1e-5


@pytest.mark.parametrize("x_dtype,w_dtype", [(torch.float32, torch.bfloat16), (torch.bfloat16, torch.float32),
                                             (torch.float32, torch.float32)])
def test_linear_reads_each_operand_in_its_own_dtype(seed, x_dtype, w_dtype):
    """int4_cuda::linear: y = x @ w^T + bias with x, w, bias as stored (a bf16 table with f32 x is
    neither rounded nor upcast-copied by the caller), f32 sums, output in x's dtype."""
    x = torch.randn(2, 3, 96).to(x_dtype)
    w = torch.randn(40, 96).to(w_dtype)
    bias = torch.randn(40).to(torch.bfloat16)
    tol = 1e-5 if x_dtype == torch.float32 else 1e-2  # a bf16 output is rounded once
    for b in (bias, None):
        y = torch.ops.int4_cuda.linear(x, w, b)
        ref = x.double() @ w.double().t() + (0 if b is None else b.double())
        assert y.dtype == x_dtype and y.shape == (2, 3, 40)
        assert ((y.double() - ref).norm() / ref.norm()) < tol


def test_linear_fake_shape_and_checks():
    with FakeTensorMode():
        x = torch.empty(1, 7, 576, dtype=torch.float32)
        w = torch.empty(49152, 576, dtype=torch.bfloat16)
        y = torch.ops.int4_cuda.linear(x, w)
        assert y.shape == (1, 7, 49152) and y.dtype == torch.float32
    with pytest.raises(RuntimeError, match=r"x \[\.\.\., K\] and w \[N, K\] disagree"):
        torch.ops.int4_cuda.linear(torch.randn(2, 64), torch.randn(8, 32))
    with pytest.raises(RuntimeError, match=r"bias must be \[N\] = \[8\]"):
        torch.ops.int4_cuda.linear(torch.randn(2, 32), torch.randn(8, 32), torch.randn(7))


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


@pytest.mark.parametrize("interleaved", [True, False])
def test_rope_matches_complex_rotation(seed, interleaved):
    b, t, h, d, p0 = 1, 5, 3, 16, 7
    x = torch.randn(b, t, h, d, dtype=torch.bfloat16)
    ang = torch.rand(32, d // 2, dtype=torch.float64) * 6
    y = torch.ops.int4_cuda.rope(x, ang.cos().float(), ang.sin().float(), torch.tensor([p0]), interleaved)
    xd = x.double()
    pairs = torch.stack([xd[..., 0::2], xd[..., 1::2]], -1) if interleaved else torch.stack([xd[..., :d // 2], xd[..., d // 2:]], -1)
    z = torch.view_as_complex(pairs.contiguous()) * torch.polar(torch.ones_like(ang), ang)[p0:p0 + t][None, :, None]
    r = torch.view_as_real(z)
    ref = r.flatten(-2) if interleaved else torch.cat([r[..., 0], r[..., 1]], -1)
    assert ((y.double() - ref).norm() / ref.norm()) < 1e-2


def test_kv_attention_reference_equals_causal_sdpa_over_steps(seed):
    from int4_cuda.backend.ops import kv_attention_reference

    T, H, HKV, D, S = 9, 6, 2, 16, 32
    q, k, v = (torch.randn(1, T, n, D, dtype=torch.float32) for n in (H, HKV, HKV))
    full = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True, enable_gqa=True).transpose(1, 2)
    kc, vc = torch.zeros(S, HKV, D), torch.zeros(S, HKV, D)
    prefill = kv_attention_reference(q[:, :4], k[:, :4], v[:, :4], kc, vc, 0)
    steps = [kv_attention_reference(q[:, i:i + 1], k[:, i:i + 1], v[:, i:i + 1], kc, vc, i) for i in range(4, T)]
    torch.testing.assert_close(torch.cat([prefill] + steps, 1), full, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="do not fit the KV cache of 32 positions"):
        kv_attention_reference(q[:, :2], k[:, :2], v[:, :2], kc, vc, 31)


def test_swiglu_is_silu_gate_times_up_in_the_input_dtype(seed):
    x = torch.randn(3, 5, 2 * 48).to(torch.bfloat16)
    y = torch.ops.int4_cuda.swiglu(x)
    gate, up = x[..., :48], x[..., 48:]
    assert y.dtype == torch.bfloat16 and torch.equal(y, torch.nn.functional.silu(gate) * up)
    # and close to the float64 value (an independent check of the formula)
    exact = (torch.nn.functional.silu(gate.double()) * up.double())
    assert (y.double() - exact).abs().max() < 0.02 * exact.abs().max()
