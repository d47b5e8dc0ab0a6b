"""CoalescedInt4Tensor: the one owner of the packed int4 layout that int4_cuda kernels read.

Layout spec (every field; the C++ runtime and shims/int4_plain_mm.h rely on exactly this):

  Weight W, logical shape [N, K] (out_features, in_features), group-wise along K.

  qdata   uint8  [N, K/2]  contiguous. Byte j of row n packs two 4-bit codes:
                           low nibble = u[n, 2j], high nibble = u[n, 2j+1].
                           u is UNSIGNED in [0, 15]: u = q + 8, where q in [-8, 7] is the signed code
                           of torchao's Int4Tensor (so the byte is torchao's byte XOR 0x88).
  scale   bf16   [N, G]    contiguous, G = K / group_size. Row n holds the G scales of weight row n
                           ("coalesced": a warp streaming row n reads its scales as one run).
  zero    bf16   [N, G]    contiguous, same shape as scale.
  group_size int           one of SUPPORTED_GROUP_SIZES; K % group_size == 0, K even.

  Dequantization (exactly torchao Int4Tensor / mslk `int4_row_quantize_zp` semantics):
      W[n, k] = (u[n, k] - 8) * scale[n, k // group_size] + zero[n, k // group_size]

torchao's Int4Tensor stores the same numbers as qdata int8 [N, K/2] (signed nibbles) and
scale/zero [G, N]; `from_int4_tensor` is the only place that transposes and re-codes them.
The type is the layout: no other tensor type dispatches to int4_cuda::int4_plain_mm.
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torchao.quantization import Int4Tensor
from torchao.utils import TorchAOBaseTensor

SUPPORTED_GROUP_SIZES = (32, 64, 128, 256)

aten = torch.ops.aten


def unpack_codes(qdata: torch.Tensor) -> torch.Tensor:
    """uint8 [N, K/2] -> unsigned codes int32 [N, K] in [0, 15] (low nibble first)."""
    q = qdata.view(torch.uint8).to(torch.int32)
    return torch.stack([q & 0xF, q >> 4], dim=-1).reshape(q.shape[0], -1)


def dequantize_coalesced(
    qdata: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, group_size: int, dtype=torch.float32
) -> torch.Tensor:
    """W [N, K] from the coalesced fields, computed in `dtype` (float32 or float64)."""
    u = unpack_codes(qdata).to(dtype)
    s = scale.to(dtype).repeat_interleave(group_size, dim=1)
    z = zero.to(dtype).repeat_interleave(group_size, dim=1)
    return (u - 8) * s + z


def check_group_size(name: str, k: int, group_size: int) -> None:
    """Raises ValueError naming `name` when (K, group_size) is not something the kernels handle."""
    if group_size not in SUPPORTED_GROUP_SIZES:
        raise ValueError(
            f"{name}: int4 group size {group_size} is not supported; use one of {SUPPORTED_GROUP_SIZES}"
        )
    if k % 2 or k % group_size:
        raise ValueError(
            f"{name}: in_features K={k} is not divisible by the group size {group_size}; "
            f"choose a group size that divides K (K=576 allows 32 or 64)"
        )


class CoalescedInt4Tensor(TorchAOBaseTensor):
    """int4 weight in the coalesced layout (module docstring is the spec)."""

    tensor_data_names = ["qdata", "scale", "zero"]
    tensor_attribute_names = ["group_size", "shape"]

    def __new__(cls, qdata, scale, zero, group_size, shape):
        return torch.Tensor._make_wrapper_subclass(
            cls, shape, dtype=scale.dtype, device=qdata.device, requires_grad=False
        )

    def __init__(self, qdata: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, group_size: int, shape):
        super().__init__()
        self.qdata = qdata
        self.scale = scale
        self.zero = zero
        self.group_size = group_size

    def _quantization_type(self):
        return f"shape={list(self.shape)}, group_size={self.group_size}, layout=[N, n_groups]"

    @classmethod
    def from_int4_tensor(cls, t: Int4Tensor, name: str = "weight") -> "CoalescedInt4Tensor":
        """Re-lays a stock torchao Int4Tensor (plain packing) without changing any value."""
        if not isinstance(t, Int4Tensor):
            raise TypeError(f"{name}: expected a torchao Int4Tensor, got {type(t).__name__}")
        if t.qdata.ndim != 2:
            raise ValueError(f"{name}: only 2-D (linear) int4 weights are supported, got qdata {tuple(t.qdata.shape)}")
        if t.act_pre_scale is not None or t.activation_dtype != torch.bfloat16:
            raise ValueError(f"{name}: Int4Tensor with act_pre_scale or non-bf16 activations is not supported")
        n, k = t.shape
        block = list(t.block_size)
        if len(block) != 2 or block[0] != 1:
            raise ValueError(f"{name}: only group-wise block_size [1, group_size] is supported, got {block}")
        group_size = block[1]
        check_group_size(name, k, group_size)
        if t.scale.dtype != torch.bfloat16 or t.zero_point.dtype != torch.bfloat16:
            raise ValueError(
                f"{name}: scale/zero are {t.scale.dtype}; the kernels take bfloat16 — "
                f"convert the model with model.to(torch.bfloat16) before quantizing"
            )
        g = k // group_size
        if tuple(t.qdata.shape) != (n, k // 2) or tuple(t.scale.shape) != (g, n) or tuple(t.zero_point.shape) != (g, n):
            raise ValueError(
                f"{name}: Int4Tensor fields disagree with shape [{n}, {k}] and group size {group_size}: "
                f"qdata {tuple(t.qdata.shape)}, scale {tuple(t.scale.shape)}, zero {tuple(t.zero_point.shape)}"
            )
        qdata = (t.qdata.view(torch.uint8) ^ 0x88).contiguous()  # signed nibble -> u = q + 8
        scale = t.scale.t().contiguous()  # the transpose: [G, N] -> [N, G]
        zero = t.zero_point.t().contiguous()
        return cls(qdata, scale, zero, group_size, torch.Size([n, k]))

    @classmethod
    def from_hp(cls, w: torch.Tensor, group_size: int, name: str = "weight") -> "CoalescedInt4Tensor":
        from .int4_quantizer import quantize_int4

        return cls.from_int4_tensor(quantize_int4(w, group_size, name=name), name=name)

    def dequantize(self, dtype=torch.float32) -> torch.Tensor:
        return dequantize_coalesced(self.qdata, self.scale, self.zero, self.group_size, dtype)


implements = CoalescedInt4Tensor.implements
implements_torch_function = CoalescedInt4Tensor.implements_torch_function


@implements([aten.linear.default])
@implements_torch_function([F.linear, aten.linear.default])
def _linear(func, types, args, kwargs):
    x, w = args[0], args[1]
    bias = args[2] if len(args) > 2 else kwargs.get("bias")
    k = w.shape[1]
    lead = x.shape[:-1]
    y = torch.ops.int4_cuda.int4_plain_mm(x.reshape(-1, k), w.qdata, w.scale, w.zero, w.group_size)
    y = y.reshape(*lead, w.shape[0])
    return y if bias is None else y + bias


