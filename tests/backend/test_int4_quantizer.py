"""The quantizer reproduces torchao/mslk's int4_row_quantize_zp + pack_int4 exactly."""
import numpy as np
import pytest
import torch
from torchao.quantization import Int4Tensor

from int4_cuda import quantize_, quantize_int4


def mslk_reference(w: torch.Tensor, gs: int):
    """Independent float32 re-statement of mslk's formula (numpy, group by group)."""
    a = w.float().numpy()
    n, k = a.shape
    q = np.zeros((n, k), np.int8)
    scale = np.zeros((k // gs, n), np.float32)
    zero = np.zeros((k // gs, n), np.float32)
    for g in range(k // gs):
        blk = a[:, g * gs:(g + 1) * gs]
        mn, mx = blk.min(1), blk.max(1)
        s = np.maximum(mx - mn, np.float32(1e-6)) / np.float32(15)
        scale[g], zero[g] = s, mn + np.float32(8) * s
        q[:, g * gs:(g + 1) * gs] = (np.clip(np.round((blk - mn[:, None]) / s[:, None]), 0, 15) - 8).astype(np.int8)
    return q, scale, zero


def unpack_signed(qdata: torch.Tensor) -> np.ndarray:
    b = qdata.view(torch.uint8).numpy().astype(np.int16)
    lo, hi = b & 0xF, b >> 4
    q = np.stack([lo, hi], -1).reshape(b.shape[0], -1)
    return np.where(q >= 8, q - 16, q).astype(np.int8)


@pytest.mark.parametrize("gs", [32, 64, 128, 256])
@pytest.mark.parametrize("n,k", [(96, 512), (33, 1536)])
def test_codes_scale_zero_match_mslk(seed, gs, n, k):
    w = (torch.randn(n, k) * torch.rand(n, 1) * 0.1).to(torch.bfloat16)
    t = quantize_int4(w, gs)
    assert isinstance(t, Int4Tensor) and t.block_size == [1, gs]
    q, scale, zero = mslk_reference(w, gs)
    assert t.qdata.dtype == torch.int8 and tuple(t.qdata.shape) == (n, k // 2)
    np.testing.assert_array_equal(unpack_signed(t.qdata), q)
    assert t.scale.dtype == torch.bfloat16 and tuple(t.scale.shape) == (k // gs, n)
    torch.testing.assert_close(t.scale, torch.from_numpy(scale).to(torch.bfloat16), rtol=0, atol=0)
    torch.testing.assert_close(t.zero_point, torch.from_numpy(zero).to(torch.bfloat16), rtol=0, atol=0)
    # Dequant q*scale+zero lands within half a step of w (fp32 scale/zero; bf16 rounding of the
    # stored fields adds at most |q|*ulp(scale) + ulp(zero)).
    wf = w.double().numpy()
    s_full = np.repeat(scale.T.astype(np.float64), gs, 1)
    z_full = np.repeat(zero.T.astype(np.float64), gs, 1)
    deq = q.astype(np.float64) * s_full + z_full
    assert np.all(np.abs(deq - wf) <= s_full / 2 * (1 + 1e-5) + 1e-7)
    sb = np.repeat(t.scale.double().numpy().T, gs, 1)
    zb = np.repeat(t.zero_point.double().numpy().T, gs, 1)
    deq_b = q.astype(np.float64) * sb + zb
    bound = sb / 2 + 8 * np.abs(sb) * 2**-8 + np.abs(zb) * 2**-8 + 1e-7
    assert np.all(np.abs(deq_b - wf) <= bound)


def test_k576_group32_and_64():
    w = torch.randn(64, 576, dtype=torch.bfloat16)
    for gs in (32, 64):
        assert tuple(quantize_int4(w, gs).scale.shape) == (576 // gs, 64)
    with pytest.raises(ValueError, match="not divisible by the group size 128"):
        quantize_int4(w, 128)


def test_bad_group_size_names_layer():
    m = torch.nn.Sequential(torch.nn.Linear(96, 8)).to(torch.bfloat16)
    with pytest.raises(ValueError, match=r"^0: in_features K=96 is not divisible by the group size 64"):
        quantize_(m, 64)
    with pytest.raises(ValueError, match="group size 16 is not supported"):
        quantize_(m, 16)


def test_quantize_in_place_and_filter():
    m = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 32)).to(torch.bfloat16)
    done = quantize_(m, 32, filter_fn=lambda mod, fqn: fqn == "1")
    assert done == ["1"]
    assert isinstance(m[1].weight, Int4Tensor) and not isinstance(m[0].weight, Int4Tensor)
