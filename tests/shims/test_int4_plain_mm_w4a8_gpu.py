"""The W4A8 decode experiment (int4_plain_mm variants 26-28, shims/int4_plain_mm_w4a8.cuh) on the GPU.

Two independent references, both computed here from the packed bytes:
  * the W4A8 math itself: x quantized per 32 k exactly as the kernel's header specifies (f32, IEEE
    division, round half to even), then float64 - the kernel must match it to f32 accumulation error,
    which tells the int8 path ran (the bf16 kernel differs from it by ~5e-3);
  * the float64 dequant of the bf16 x: the error the quantization costs, within the issue's 1e-2.
Needs an NVIDIA GPU: marked `gpu`."""

import pytest

torch = pytest.importorskip("torch")

from test_int4_plain_mm_gpu import check, make_inputs, reference, run  # noqa: E402

pytestmark = pytest.mark.gpu

W4A8_VARIANTS = [26, 27, 28, 29, 30]  # see int4_cuda_int4_plain_mm_variant in shims/int4_plain_mm.h


@pytest.fixture(scope="module")
def dev():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return torch.device("cuda")


def quantize_x(x):
    """[1, K] bf16 -> (qx int, sx f32 per 32-block, expanded to K), as the kernel does it."""
    xf = x.float().reshape(-1, 32)
    amax = xf.abs().amax(dim=1, keepdim=True)
    inv = torch.where(amax > 0, torch.tensor(127.0, device=x.device) / amax, torch.zeros_like(amax))
    qx = torch.round(xf * inv)  # f32 product, then half-to-even, like __float2int_rn(f * inv)
    sx = amax / 127.0
    return qx.reshape(x.shape), sx.repeat_interleave(32, dim=1).reshape(x.shape)


def reference_w4a8(x, qdata, scale, zero, gs):
    """float64 of the W4A8 formula: sum_c s * sx_c * sum (u - 8) qx + z * sum x."""
    qx, sx = quantize_x(x)
    q = qdata.to(torch.int64)
    u = torch.stack([q & 0xF, q >> 4], dim=-1).reshape(q.shape[0], -1).double()
    s = scale.double().repeat_interleave(gs, dim=1)
    z = zero.double().repeat_interleave(gs, dim=1)
    return (qx.double() * sx.double()) @ ((u - 8.0) * s).t() + x.double() @ z.t()


def run_w4a8(lib, x, qdata, scale, zero, N, K, gs, variant):
    out = torch.full((1, N), float("nan"), device=x.device, dtype=torch.bfloat16)
    run(lib, x, qdata, scale, zero, out, 1, N, K, gs, variant)
    return out.double()


SHAPES = [(1000, 1536, 32), (1000, 1536, 64), (1000, 1536, 128), (1000, 1536, 256), (192, 576, 32), (20000, 576, 64),
          (64, 21504, 256), (333, 5376, 128), (8000, 4096, 32), (7001, 5376, 64), (130, 32, 32), (320, 96, 32)]


@pytest.mark.parametrize("variant", W4A8_VARIANTS)
@pytest.mark.parametrize("N,K,gs", SHAPES)
def test_w4a8_matches_its_formula(shims_lib, dev, variant, N, K, gs):
    x, qdata, scale, zero = make_inputs(1, N, K, gs, dev, seed=N * 31 + K + gs + variant)
    o = run_w4a8(shims_lib, x, qdata, scale, zero, N, K, gs, variant)
    assert not torch.isnan(o).any(), f"{int(torch.isnan(o).sum())} output elements not written"
    ref8 = reference_w4a8(x, qdata, scale, zero, gs)
    rel8 = (torch.linalg.norm(o - ref8) / torch.linalg.norm(ref8)).item()
    # bf16 output rounding alone is up to 2^-9 per element (~2e-3 as a norm ratio): compare before it.
    assert rel8 <= 3e-3, f"vs the W4A8 formula: {rel8:.3e}"
    ref = reference(x, qdata, scale, zero, gs)
    rel = (torch.linalg.norm(o - ref) / torch.linalg.norm(ref)).item()
    assert rel <= 1e-2, f"vs float64 on the bf16 x: {rel:.3e}"
    # The int8 path ran: the formula is closer than the bf16 x reference (the bf16 kernel is the other
    # way round).
    assert rel8 < rel, (rel8, rel)


@pytest.mark.parametrize("variant", W4A8_VARIANTS)
def test_w4a8_formula_tight(shims_lib, dev, variant):
    """Element-wise: every output within one bf16 ulp of the W4A8 formula (a norm ratio would hide a
    few wrong rows)."""
    N, K, gs = 512, 4096, 32
    x, qdata, scale, zero = make_inputs(1, N, K, gs, dev, seed=11 + variant)
    o = run_w4a8(shims_lib, x, qdata, scale, zero, N, K, gs, variant)
    ref8 = reference_w4a8(x, qdata, scale, zero, gs)
    # Each output is the formula rounded once to bf16: within one bf16 ulp of it (the f32 sums differ
    # from float64 by far less, except for outputs near zero, where the f32 error is relative to the
    # size of the terms: atol).
    ulp = torch.exp2(torch.floor(torch.log2(ref8.abs().clamp_min(1e-30))) - 7)
    atol = 1e-5 * ref8.abs().max()
    bad = ((o - ref8).abs() > ulp + atol).sum().item()
    assert bad == 0, f"{bad} of {N} outputs more than one bf16 ulp from the W4A8 formula"


@pytest.mark.parametrize("variant", W4A8_VARIANTS)
def test_w4a8_zero_blocks_and_outliers(shims_lib, dev, variant):
    """Some 32-blocks all zero (amax = 0), one with a large outlier: each block has its own scale."""
    N, K, gs = 700, 2048, 64
    x, qdata, scale, zero = make_inputs(1, N, K, gs, dev, seed=5)
    x = x.clone()
    x[0, 64:128] = 0
    x[0, 300] = 200.0
    o = run_w4a8(shims_lib, x, qdata, scale, zero, N, K, gs, variant)
    ref8 = reference_w4a8(x, qdata, scale, zero, gs)
    rel8 = (torch.linalg.norm(o - ref8) / torch.linalg.norm(ref8)).item()
    assert rel8 <= 3e-3, rel8


@pytest.mark.parametrize("variant", W4A8_VARIANTS)
@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_w4a8_nonfinite_x_gives_nan(shims_lib, dev, variant, bad):
    N, K, gs = 300, 1536, 32
    x, qdata, scale, zero = make_inputs(1, N, K, gs, dev, seed=9)
    x = x.clone()
    x[0, 777] = bad
    o = run_w4a8(shims_lib, x, qdata, scale, zero, N, K, gs, variant)
    assert torch.isnan(o).all(), "a non-finite activation must not give a finite output"


@pytest.mark.parametrize("variant", W4A8_VARIANTS)
@pytest.mark.parametrize("M", [2, 8, 33])
def test_w4a8_variant_is_m1_only(shims_lib, dev, variant, M):
    """For M > 1 the variant number takes the default dispatch (bf16 numerics)."""
    check(shims_lib, M, 1000, 1536, 32, dev, variant=variant)


SA_VARIANTS = [31, 32, 33]  # bf16 x, exact weights, scales after the MMA (M = 1)


@pytest.mark.parametrize("variant", SA_VARIANTS)
@pytest.mark.parametrize("N,K,gs", SHAPES)
def test_scale_after_matches_float64(shims_lib, dev, variant, N, K, gs):
    """Exact weights: every output within one bf16 ulp (plus the f32 error on cancelling sums) of the
    float64 reference on the bf16 x."""
    x, qdata, scale, zero = make_inputs(1, N, K, gs, dev, seed=N * 37 + K + gs + variant)
    o = torch.full((1, N), float("nan"), device=dev, dtype=torch.bfloat16)
    run(shims_lib, x, qdata, scale, zero, o, 1, N, K, gs, variant)
    o = o.double()
    assert not torch.isnan(o).any(), f"{int(torch.isnan(o).sum())} output elements not written"
    ref = reference(x, qdata, scale, zero, gs)
    ulp = torch.exp2(torch.floor(torch.log2(ref.abs().clamp_min(1e-30))) - 7)
    atol = 1e-5 * ref.abs().max()
    bad = ((o - ref).abs() > ulp + atol).sum().item()
    assert bad == 0, f"{bad} of {N} outputs more than one bf16 ulp from float64"
