"""Which edge-dialect nodes the int4_cuda delegate runs, and what each becomes in the schema.

`describe(node)` is the single table: it returns the schema OpCode, the node inputs and the op
argument, or raises Unsupported with the reason. The partitioner delegates exactly the nodes
`describe` accepts (and whose shapes `shape_ok` can express); the serializer writes them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional

import sympy
import torch
import executorch.exir  # noqa: F401  (registers torch.ops.dim_order_ops)

from int4_cuda.passes.graph_utils import INT4_MM, aten_op
from int4_cuda.schema import (
    DimsArgT, KvAttentionArgT, NormArgT, OpCode, QkvAttentionArgT, RopeArgT, ScalarArgT, SdpaArgT, SliceArgT, make,
)

aten = torch.ops.aten
dim_order_ops = torch.ops.dim_order_ops


class Unsupported(Exception):
    pass


@dataclass
class OpDesc:
    code: int
    inputs: List[Optional[torch.fx.Node]]
    arg: Any = None  # one of the schema's OpArg tables (object API), or an Int4MatMul placeholder


_BINARY = {
    aten.add.Tensor: OpCode.ADD, aten.add.Scalar: OpCode.ADD,
    aten.sub.Tensor: OpCode.SUB, aten.sub.Scalar: OpCode.SUB,
    aten.mul.Tensor: OpCode.MUL, aten.mul.Scalar: OpCode.MUL,
    aten.div.Tensor: OpCode.DIV, aten.div.Scalar: OpCode.DIV,
}
_UNARY = {
    aten.neg.default: OpCode.NEG, aten.rsqrt.default: OpCode.RSQRT,
    aten.silu.default: OpCode.SILU, aten.sigmoid.default: OpCode.SIGMOID,
}
_VIEWS = {
    aten.view_copy.default, aten.view.default, aten._unsafe_view.default, aten.reshape.default,
    aten.unsqueeze_copy.default, aten.squeeze_copy.dim, aten.squeeze_copy.dims, aten.squeeze_copy.default,
}
_COPIES = {
    aten.clone.default, aten._to_copy.default,
    dim_order_ops._clone_dim_order.default, dim_order_ops._to_dim_order_copy.default,
}
# Shape-only nodes: the partition may hold them, the blob does not (shapes live in the value table).
SHAPE_ONLY = {aten.sym_size.int}

_FLOAT = {torch.float32, torch.bfloat16, torch.float16}
_BIG = 2**62  # "to the end" for slice bounds


def _val(node) -> torch.Tensor:
    return node.meta["val"]


def _norm_dim(d: int, ndim: int) -> int:
    return d + ndim if d < 0 else d


def _scalar(x) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise Unsupported(f"non-constant scalar operand {x!r}")
    return float(x)


def _contiguous_dim_order(node) -> None:
    order = node.kwargs.get("dim_order")
    if order is not None and list(order) != list(range(len(order))):
        raise Unsupported(f"non-contiguous dim_order {list(order)}")
    mf = node.kwargs.get("memory_format")
    if mf not in (None, torch.preserve_format, torch.contiguous_format):
        raise Unsupported(f"memory_format {mf}")


def describe(node: torch.fx.Node) -> OpDesc:
    op = aten_op(node)
    a = node.args
    if op is INT4_MM:
        return OpDesc(OpCode.INT4_PLAIN_MM, [a[0]], "int4_weight")
    if op in _BINARY:
        if op in (aten.add.Tensor, aten.sub.Tensor) and node.kwargs.get("alpha", 1) != 1:
            raise Unsupported("alpha != 1")
        if isinstance(a[1], torch.fx.Node):
            return OpDesc(_BINARY[op], [a[0], a[1]])
        return OpDesc(_BINARY[op], [a[0]], make(ScalarArgT, value=_scalar(a[1])))
    if op in _UNARY:
        return OpDesc(_UNARY[op], [a[0]])
    if op is aten.pow.Tensor_Scalar:
        return OpDesc(OpCode.POW, [a[0]], make(ScalarArgT, value=_scalar(a[1])))
    if op is aten.mean.dim:
        if node.kwargs.get("dtype") is not None:
            raise Unsupported("mean with dtype")
        ndim = _val(a[0]).dim()
        dims = [_norm_dim(d, ndim) for d in (a[1] or range(ndim))]
        keep = bool(a[2]) if len(a) > 2 else bool(node.kwargs.get("keepdim", False))
        return OpDesc(OpCode.MEAN, [a[0]], make(DimsArgT, dims=dims, keepdim=keep))
    if op is aten.rms_norm.default:
        x = _val(a[0])
        shape = list(a[1])
        if len(shape) != 1 or shape[0] != x.shape[-1]:
            raise Unsupported("rms_norm over more than the last dimension")
        weight = a[2] if len(a) > 2 else node.kwargs.get("weight")
        eps = a[3] if len(a) > 3 else node.kwargs.get("eps")
        if eps is None:  # ATen's default: machine epsilon of the (upcast) compute type
            eps = torch.finfo(torch.float32 if x.dtype in (torch.bfloat16, torch.float16) else x.dtype).eps
        return OpDesc(OpCode.RMS_NORM, [a[0], weight], make(NormArgT, eps=float(eps)))
    if op in (aten._softmax.default, aten.softmax.int):
        if op is aten._softmax.default and a[2]:
            raise Unsupported("softmax half_to_float")
        if op is aten.softmax.int and len(a) > 2 and a[2] is not None:
            raise Unsupported("softmax with dtype")
        return OpDesc(OpCode.SOFTMAX, [a[0]], make(DimsArgT, dims=[_norm_dim(a[1], _val(a[0]).dim())]))
    if op is aten.bmm.default:
        return OpDesc(OpCode.BMM, [a[0], a[1]])
    if op is aten.linear.default or op is torch.ops.int4_cuda.linear.default:
        # int4_cuda::linear is aten.linear that allows x and w of different float dtypes; LINEAR
        # reads each in its own dtype either way.
        return OpDesc(OpCode.LINEAR, [a[0], a[1], a[2] if len(a) > 2 else node.kwargs.get("bias")])
    if op is aten.mm.default:
        return OpDesc(OpCode.MATMUL, [a[0], a[1]])
    if op is aten.scaled_dot_product_attention.default:
        names = ["query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa"]
        defaults = [None, None, None, None, 0.0, False, None, False]
        v = {n: (a[i] if i < len(a) else node.kwargs.get(n, defaults[i])) for i, n in enumerate(names)}
        if v["dropout_p"]:
            raise Unsupported("sdpa with dropout")
        q, k = _val(v["query"]), _val(v["key"])
        if q.dim() != 4 or k.dim() != 4:
            raise Unsupported("sdpa on non-4-D tensors")
        if q.shape[1] != k.shape[1] and not v["enable_gqa"]:
            raise Unsupported("sdpa with different head counts and enable_gqa=False")
        return OpDesc(OpCode.SDPA, [v["query"], v["key"], v["value"], v["attn_mask"]],
                      make(SdpaArgT, isCausal=bool(v["is_causal"]), scale=float(v["scale"] or 0.0)))
    if op in _VIEWS:
        return OpDesc(OpCode.VIEW, [a[0]])
    if op is aten.expand_copy.default or op is aten.expand.default:
        return OpDesc(OpCode.EXPAND, [a[0]])
    if op is aten.permute_copy.default or op is aten.permute.default:
        ndim = _val(a[0]).dim()
        return OpDesc(OpCode.PERMUTE, [a[0]], make(DimsArgT, dims=[_norm_dim(d, ndim) for d in a[1]]))
    if op is aten.cat.default:
        tensors = list(a[0])
        dim = a[1] if len(a) > 1 else node.kwargs.get("dim", 0)
        return OpDesc(OpCode.CAT, tensors, make(DimsArgT, dims=[_norm_dim(dim, _val(node).dim())]))
    if op in (aten.slice_copy.Tensor, aten.slice.Tensor, aten.select_copy.int, aten.select.int):
        x = _val(a[0])
        dim = _norm_dim(a[1] if len(a) > 1 else 0, x.dim())
        if op in (aten.select_copy.int, aten.select.int):
            start, end, step = a[2], (a[2] + 1) or _BIG, 1
        else:
            start = a[2] if len(a) > 2 and a[2] is not None else 0
            end = a[3] if len(a) > 3 and a[3] is not None else _BIG
            step = a[4] if len(a) > 4 else 1
        if not all(isinstance(t, int) for t in (start, end, step)) or step < 1:
            raise Unsupported("slice with symbolic bounds or a non-positive step")
        size = x.shape[dim]
        if isinstance(size, int):  # static: resolve now; dynamic: negative bounds resolve at run time
            start, end = (max(0, min(size, t + size if t < 0 else t)) for t in (start, end))
        elif start > 0 or (0 <= end < _BIG):
            raise Unsupported("slice of a dynamic dimension at a positive offset")
        return OpDesc(OpCode.SLICE, [a[0]], make(SliceArgT, dim=dim, start=start, end=min(end, _BIG), step=step))
    if op in _COPIES:
        _contiguous_dim_order(node)
        return OpDesc(OpCode.COPY, [a[0]])
    if op is aten.embedding.default:
        return OpDesc(OpCode.EMBEDDING, [a[0], a[1]])
    if op is torch.ops.int4_cuda.rope.default:
        return OpDesc(OpCode.ROPE, [a[0], a[1], a[2], a[3]], make(RopeArgT, interleaved=bool(a[4])))
    if op is torch.ops.int4_cuda.kv_attention.default:
        scale = a[6] if len(a) > 6 else node.kwargs.get("scale", 0.0)
        return OpDesc(OpCode.KV_ATTENTION, [a[0], a[1], a[2], a[3]],
                      make(KvAttentionArgT, layer=int(a[4]), maxSeqLen=int(a[5]), scale=float(scale)))
    if op is torch.ops.int4_cuda.swiglu.default:
        return OpDesc(OpCode.SWIGLU, [a[0]])
    if op is torch.ops.int4_cuda.qkv_attention.default:
        scale = a[9] if len(a) > 9 else node.kwargs.get("scale", 0.0)
        return OpDesc(OpCode.QKV_ATTENTION, [a[0], a[1], a[2], a[3]],
                      make(QkvAttentionArgT, nHeads=int(a[4]), nKvHeads=int(a[5]), interleaved=bool(a[6]),
                           layer=int(a[7]), maxSeqLen=int(a[8]), scale=float(scale)))
    raise Unsupported(f"operator {op} is not in the int4_cuda op set")


def affine_dim(size) -> tuple:
    """(offset, coeff, symbol) with size = offset + coeff * symbol; raises Unsupported otherwise."""
    if isinstance(size, int):
        return size, 0, None
    expr = sympy.expand(size.node.expr)
    syms = list(expr.free_symbols)
    if not syms:
        return int(expr), 0, None
    if len(syms) > 1:
        raise Unsupported(f"dimension {expr} depends on several dynamic sizes")
    s = syms[0]
    poly = sympy.Poly(expr, s)
    if poly.degree() > 1 or not all(c.is_integer for c in poly.all_coeffs()):
        raise Unsupported(f"dimension {expr} is not affine in {s}")
    coeff, offset = (poly.all_coeffs() + [0])[:2] if poly.degree() == 1 else (0, poly.all_coeffs()[0])
    return int(offset), int(coeff), s


def shape_ok(node: torch.fx.Node) -> None:
    """Raises Unsupported unless the node's output is one tensor of a supported dtype and shape."""
    val = node.meta.get("val")
    if not isinstance(val, torch.Tensor):
        raise Unsupported("output is not a single tensor")
    if val.dtype not in _FLOAT | {torch.int64, torch.int32, torch.uint8, torch.int8, torch.bool}:
        raise Unsupported(f"dtype {val.dtype}")
    for d in val.shape:
        affine_dim(d)


def is_supported(node: torch.fx.Node) -> Optional[str]:
    """None if the delegate runs `node`, else the reason it does not."""
    if node.op != "call_function":
        return "not an operator call"
    if aten_op(node) in SHAPE_ONLY:
        return None
    try:
        describe(node)
        shape_ok(node)
    except Unsupported as e:
        return str(e)
    return None


__all__ = ["OpDesc", "Unsupported", "describe", "affine_dim", "shape_ok", "is_supported", "SHAPE_ONLY"]
