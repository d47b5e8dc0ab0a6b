"""pack_: swap every stock torchao Int4Tensor weight of a model for a CoalescedInt4Tensor.

This runs on the nn.Module, before torch.export: a stock Int4Tensor's linear calls mslk kernels
that can neither run nor be traced here, so the layout change must happen before tracing. Other
torchao quantized types are refused by name rather than exported with a meaning we don't know.
"""
from __future__ import annotations

from typing import List

import torch
import torch.nn as nn
from torchao.quantization import Int4Tensor
from torchao.utils import TorchAOBaseTensor

from .coalesced_int4_tensor import CoalescedInt4Tensor


def pack_(model: nn.Module) -> List[str]:
    """In place. Returns the names of the layers whose weights are now CoalescedInt4Tensor."""
    packed = []
    for fqn, mod in model.named_modules():
        w = getattr(mod, "weight", None)
        if not isinstance(w, torch.Tensor):
            continue
        name = fqn or "<root>"
        if isinstance(w, CoalescedInt4Tensor):
            packed.append(name)
        elif isinstance(w, Int4Tensor):
            mod.weight = nn.Parameter(CoalescedInt4Tensor.from_int4_tensor(w, name=name), requires_grad=False)
            packed.append(name)
        elif isinstance(w, TorchAOBaseTensor):
            raise TypeError(
                f"{name}: weight is a torchao {type(w).__name__}, which int4_cuda cannot export; "
                f"quantize with int4_cuda.quantize_ (or torchao Int4WeightOnlyConfig, plain packing) "
                f"to get Int4Tensor weights"
            )
    return packed
