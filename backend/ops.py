"""The `int4_cuda` op library: torch.ops.int4_cuda.int4_plain_mm.

    int4_plain_mm(x [M, K], qdata uint8 [N, K/2], scale [N, G], zero [N, G], group_size) -> [M, N]

means x @ dequant(W).T with W in the coalesced layout of backend/coalesced_int4_tensor.py. The
pure-PyTorch implementation below (CPU and CUDA) is the reference the GPU kernels are tested
against; it accumulates in float32 and returns x's dtype, like the kernels.
"""
import torch

from .coalesced_int4_tensor import dequantize_coalesced

_lib = torch.library.Library("int4_cuda", "DEF")
_lib.define("int4_plain_mm(Tensor x, Tensor qdata, Tensor scale, Tensor zero, int group_size) -> Tensor")


def _check(x, qdata, scale, zero, group_size):
    torch._check(x.dim() == 2, lambda: f"int4_plain_mm: x must be 2-D [M, K], got {tuple(x.shape)}")
    torch._check(qdata.dim() == 2, lambda: f"int4_plain_mm: qdata must be [N, K/2], got {tuple(qdata.shape)}")
    torch._check(
        x.shape[1] == 2 * qdata.shape[1],
        lambda: f"int4_plain_mm: x has K={x.shape[1]} but qdata packs K={2 * qdata.shape[1]}",
    )
    torch._check(
        tuple(scale.shape) == (qdata.shape[0], x.shape[1] // group_size) and scale.shape == zero.shape,
        lambda: f"int4_plain_mm: scale/zero must be [N, K/group_size] = "
        f"[{qdata.shape[0]}, {x.shape[1] // group_size}], got {tuple(scale.shape)} / {tuple(zero.shape)}",
    )


@torch.library.impl(_lib, "int4_plain_mm", "CompositeExplicitAutograd")
def int4_plain_mm(x, qdata, scale, zero, group_size):
    _check(x, qdata, scale, zero, group_size)
    w = dequantize_coalesced(qdata, scale, zero, group_size, torch.float32)
    return (x.to(torch.float32) @ w.t()).to(x.dtype)


@torch.library.register_fake("int4_cuda::int4_plain_mm")
def _int4_plain_mm_fake(x, qdata, scale, zero, group_size):
    _check(x, qdata, scale, zero, group_size)
    return x.new_empty(x.shape[0], qdata.shape[0])
