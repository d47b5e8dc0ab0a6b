"""Group-wise int4 quantization into stock torchao `Int4Tensor`s, without mslk.

torchao's `Int4Tensor.from_hp` needs the `mslk` package, which cannot be installed here. This
reproduces its math (mslk `int4_row_quantize_zp` + `pack_int4`) exactly, in float32:

    scale = clamp(max - min, 1e-6) / 15          per group of `group_size` along K
    zero  = min + 8 * scale
    q     = clamp(round((w - min) / scale), 0, 15) - 8     signed code in [-8, 7]
    qdata byte j of row n = (q[n, 2j] & 0xF) | (q[n, 2j+1] << 4)   (int8)
    scale, zero: [K / group_size, N], cast to the weight's dtype

and dequantizes as w = q * scale + zero.
"""
from __future__ import annotations

from typing import Callable, List, Optional

import torch
import torch.nn as nn
from torchao.quantization import Int4Tensor

from .coalesced_int4_tensor import check_group_size


def int4_row_quantize_zp(w: torch.Tensor, group_size: int):
    """w [N, K] -> (q int8 [N, K] in [-8, 7], scale fp32 [G, N], zero fp32 [G, N])."""
    n, k = w.shape
    g = w.to(torch.float32).reshape(n, k // group_size, group_size)
    mx = g.amax(dim=-1, keepdim=True)
    mn = g.amin(dim=-1, keepdim=True)
    scale = (mx - mn).clamp(min=1e-6) / 15
    zero = mn + 8 * scale
    q = g.sub(mn).div(scale).round().clamp(0, 15) - 8
    q = q.to(torch.int8).reshape(n, k)
    return q, scale.reshape(n, -1).t().contiguous(), zero.reshape(n, -1).t().contiguous()


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """int8 codes [N, K] in [-8, 7] -> int8 [N, K/2], even k in the low nibble."""
    return ((q[:, 1::2] << 4) | (q[:, 0::2] & 0xF)).to(torch.int8)


def quantize_int4(w: torch.Tensor, group_size: int, name: str = "weight") -> Int4Tensor:
    """A stock torchao Int4Tensor for the 2-D weight `w`, bit-identical to `Int4Tensor.from_hp`."""
    if w.ndim != 2:
        raise ValueError(f"{name}: int4 quantization takes a 2-D weight, got shape {tuple(w.shape)}")
    if not w.dtype.is_floating_point:
        raise ValueError(f"{name}: cannot quantize a {w.dtype} weight; expected a floating-point weight")
    n, k = w.shape
    check_group_size(name, k, group_size)
    q, scale, zero = int4_row_quantize_zp(w, group_size)
    return Int4Tensor(
        qdata=pack_int4(q),
        scale=scale.to(w.dtype),
        zero_point=zero.to(w.dtype),
        block_size=[1, group_size],
        shape=w.shape,
    )


def quantize_(
    model: nn.Module, group_size: int = 32, filter_fn: Optional[Callable[[nn.Module, str], bool]] = None
) -> List[str]:
    """In place, like torchao's `quantize_`: every nn.Linear (or those `filter_fn(module, fqn)`
    accepts) gets a stock Int4Tensor weight. Returns the quantized layer names."""
    done = []
    for fqn, mod in model.named_modules():
        if not isinstance(mod, nn.Linear) or (filter_fn is not None and not filter_fn(mod, fqn)):
            continue
        if isinstance(mod.weight, Int4Tensor):
            continue
        w = quantize_int4(mod.weight.detach(), group_size, name=fqn)
        mod.weight = nn.Parameter(w, requires_grad=False)
        done.append(fqn)
    return done
