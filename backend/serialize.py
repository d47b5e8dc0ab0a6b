"""Delegated edge subgraph -> int4_cuda flatbuffer blob (schema/int4_cuda.fbs) + named constants.

Every constant goes to ExecuTorch's NamedDataStore under a content-hash key (identical bytes
collapse to one entry), tagged for `<name>.ptd` unless weights are embedded in the .pte.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from typing import Dict, List, Optional

import flatbuffers
import torch
from executorch.exir._serialize._named_data_store import NamedDataStore
from torch.export import ExportedProgram
from torch.export.exported_program import InputKind

from int4_cuda.passes.graph_utils import INT4_WEIGHT_META, aten_op, constant_target, constant_value
from int4_cuda.schema import (
    DimT, DType, FILE_IDENTIFIER, FormatVersion, GraphT, Int4MatMulT, Int4WeightT, OpCode, OpT,
    SymbolBindingT, TensorT, arg_type_of, make,
)

from .op_support import SHAPE_ONLY, Unsupported, affine_dim, describe


def describe_code(node: torch.fx.Node):
    try:
        return describe(node).code
    except Unsupported:
        return None

TORCH_TO_DTYPE = {
    torch.float32: DType.FLOAT32, torch.bfloat16: DType.BFLOAT16, torch.float16: DType.FLOAT16,
    torch.int64: DType.INT64, torch.int32: DType.INT32, torch.uint8: DType.UINT8,
    torch.int8: DType.INT8, torch.bool: DType.BOOL,
}
DTYPE_TO_TORCH = {v: k for k, v in TORCH_TO_DTYPE.items()}

# Alignment of each constant inside the .ptd/.pte, so a loader may map it and copy it as is.
CONSTANT_ALIGNMENT = 64


# Named-data keys of int4_cuda constants: prefix + sha256 of the bytes (identical data, one entry).
CONSTANT_KEY_PREFIX = "i4cu."


def constant_key(data: bytes) -> str:
    return CONSTANT_KEY_PREFIX + hashlib.sha256(data).hexdigest()


# Constants at least this large are spilled to a temporary file (ExecuTorch FileBackedData)
# instead of being copied into memory, so an export holds about one copy of the weights.
SPILL_BYTES = 1 << 20


def _byte_view(t: torch.Tensor):
    return t.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy()


def tensor_bytes(t: torch.Tensor) -> bytes:
    return _byte_view(t).tobytes()


def constant_payload(t: torch.Tensor):
    """(named-data key, payload) for a constant: bytes, or a FileBackedData for large ones."""
    view = _byte_view(t)
    digest = hashlib.sha256(memoryview(view)).digest()
    key = CONSTANT_KEY_PREFIX + digest.hex()
    if view.nbytes < SPILL_BYTES:
        return key, view.tobytes()
    from executorch.exir._serialize._cord import FileBackedData

    fd, path = tempfile.mkstemp(prefix="int4_cuda_", suffix=".bin")
    with os.fdopen(fd, "wb") as f:
        view.tofile(f)
    return key, FileBackedData(path, cleanup=True, sha256=digest)



class _GraphWriter:
    def __init__(self, ep: ExportedProgram, store: NamedDataStore, external_tag: Optional[str]):
        self.ep, self.store, self.tag = ep, store, external_tag
        self.g = make(GraphT, version=FormatVersion.CURRENT, values=[], inputs=[], outputs=[], ops=[],
                      int4Weights=[], symbols=[])
        self.ids: Dict[torch.fx.Node, int] = {}
        self.symbols: Dict[object, int] = {}           # sympy symbol -> index in g.symbols
        self.symbol_inputs: List[torch.fx.Node] = []   # the input each symbol binds to

    # -- values ---------------------------------------------------------------------------------
    def _dims(self, shape) -> List[DimT]:
        out = []
        for size in shape:
            offset, coeff, sym = affine_dim(size)
            if sym is not None and sym not in self.symbols:
                raise Unsupported(f"dynamic size {sym} is not a dimension of any delegate input")
            out.append(make(DimT, offset=offset, coeff=coeff, symbol=-1 if sym is None else self.symbols[sym]))
        return out

    def _new_value(self, val: torch.Tensor, name: str, key: Optional[str] = None) -> int:
        if val.dtype not in TORCH_TO_DTYPE:
            raise Unsupported(f"{name}: dtype {val.dtype}")
        self.g.values.append(make(TensorT, dtype=TORCH_TO_DTYPE[val.dtype], dims=self._dims(val.shape),
                                  constantKey=key, name=name))
        return len(self.g.values) - 1

    def value(self, node: torch.fx.Node) -> int:
        if node in self.ids:
            return self.ids[node]
        target = constant_target(self.ep, node)
        if target is not None:
            t = constant_value(self.ep, node)
            key, data = constant_payload(t)
            self.store.add_named_data(key, data, alignment=CONSTANT_ALIGNMENT, external_tag=self.tag)
            self.ids[node] = self._new_value(t, target, key)
        else:
            self.ids[node] = self._new_value(node.meta["val"], node.name)
        return self.ids[node]

    # -- graph ----------------------------------------------------------------------------------
    def _bind_symbols(self, user_inputs: List[torch.fx.Node]) -> None:
        for node in user_inputs:
            val = node.meta["val"]
            for d, size in enumerate(val.shape):
                if isinstance(size, int):
                    continue
                expr = size.node.expr
                if not expr.is_Symbol or expr in self.symbols:
                    continue
                rng = self.ep.range_constraints.get(expr) or size.node.shape_env.var_to_range.get(expr)
                lo, hi = (rng.lower, rng.upper) if rng is not None else (0, None)
                try:
                    hi = int(hi)
                except (TypeError, ValueError, OverflowError, AttributeError):  # torch's int_oo, or none
                    hi = None
                if hi is None:
                    raise Unsupported(
                        f"input {node.name} dim {d} is dynamic without an upper bound; "
                        f"give torch.export.Dim(..., max=...) so the runtime can plan memory"
                    )
                # torch.export reports a lower bound of 2 for Dim(min=1) (0/1 specialization) although
                # the graph is valid at 1 — and size 1 is the decode step — so 2 is read as 1.
                lo = 1 if int(lo) <= 2 else int(lo)
                self.symbols[expr] = len(self.g.symbols)
                self.g.symbols.append(make(SymbolBindingT, value=0, dim=d, minValue=lo, maxValue=hi))
                self.symbol_inputs.append(node)

    def _int4_weight(self, node: torch.fx.Node) -> Int4MatMulT:
        info = node.meta.get(INT4_WEIGHT_META)
        if info is None:
            raise Unsupported(f"{node.name}: int4_plain_mm without a recorded layout (the int4_cuda passes did not run)")
        q, s, z = (self.value(a) for a in node.args[1:4])
        self.g.int4Weights.append(make(
            Int4WeightT, name=info["name"], layout=info["layout"], n=info["n"], k=info["k"],
            groupSize=info["group_size"], qdata=q, scale=s, zero=z))
        return make(Int4MatMulT, weight=len(self.g.int4Weights) - 1)

    def _fuse_casts(self, ep: ExportedProgram) -> set:
        """Dtype casts (COPY) folded into a neighbour, so a decode step runs fewer kernels. Returns
        the cast nodes that emit no op.

        - into its producer: LINEAR writes its f32 accumulator in its output value's dtype, so
          `linear(...).float()` (logits) is one LINEAR with an f32 output instead of bf16 rounding
          then a copy; an f32 RMS_NORM followed by a cast to bf16/f16 writes the narrow dtype
          directly (the same single rounding). The producer's value takes the cast's dtype.
        - into its consumers: a widening cast (bf16/f16 -> f32) whose users are all f32 ADD/SUB/
          MUL/DIV: they read the narrow value (every kernel loads operands as f32; torch promotes
          the same way), e.g. the residual add `x + attention(...).float()`.
        """
        fused = set()
        narrow = (torch.bfloat16, torch.float16)
        for node in ep.graph.nodes:
            if node.op != "call_function" or describe_code(node) != OpCode.COPY:
                continue
            src = node.args[0]
            if not (isinstance(src, torch.fx.Node) and src.op == "call_function"):
                continue
            to, frm = node.meta["val"].dtype, src.meta["val"].dtype
            same_shape = list(node.meta["val"].shape) == list(src.meta["val"].shape)
            code = describe_code(src)
            if same_shape and len(src.users) == 1 and (
                    (code == OpCode.LINEAR and to == torch.float32)
                    or (code == OpCode.RMS_NORM and frm == torch.float32 and to in narrow)):
                self.ids[src] = self._new_value(node.meta["val"], node.name)
                self.ids[node] = self.ids[src]
                fused.add(node)
            elif (same_shape and frm in narrow and to == torch.float32 and node.users and all(
                    u.op == "call_function" and describe_code(u) in (OpCode.ADD, OpCode.SUB, OpCode.MUL, OpCode.DIV)
                    and u.meta["val"].dtype == torch.float32 for u in node.users)):
                self.ids[node] = self.value(src)
                fused.add(node)
        return fused

    def _fuse_add_norms(self, ep: ExportedProgram, skip: set) -> Dict[torch.fx.Node, torch.fx.Node]:
        """{add: rms_norm} pairs written as one ADD_RMS_NORM (at the add's place, both values kept):
        a decoder's residual add and the norm of its result, one kernel instead of two. Only a
        same-shape tensor + tensor ADD whose result feeds an RMS_NORM."""
        pairs = {}
        for node in ep.graph.nodes:
            if node.op != "call_function" or node in skip or describe_code(node) != OpCode.RMS_NORM:
                continue
            add = describe(node).inputs[0]
            if not (isinstance(add, torch.fx.Node) and add.op == "call_function" and add not in pairs
                    and describe_code(add) == OpCode.ADD):
                continue
            a, b = describe(add).inputs[:2] if len(describe(add).inputs) == 2 else (None, None)
            w = describe(node).inputs[1]  # emitted at the add's place: the weight must exist by then
            shape = list(add.meta["val"].shape)
            if (isinstance(a, torch.fx.Node) and isinstance(b, torch.fx.Node)
                    and list(a.meta["val"].shape) == shape == list(b.meta["val"].shape)
                    and (w is None or w.op == "placeholder")):
                pairs[add] = node
        return pairs

    def write(self) -> bytes:
        ep = self.ep
        placeholders = [n for n in ep.graph.nodes if n.op == "placeholder" and constant_target(ep, n) is None]
        user_inputs = [n for n in placeholders if isinstance(n.meta.get("val"), torch.Tensor)]
        kinds = {s.arg.name: s.kind for s in ep.graph_signature.input_specs}
        for n in user_inputs:
            if kinds.get(n.name) != InputKind.USER_INPUT:
                raise Unsupported(f"delegate input {n.name} of kind {kinds.get(n.name)} (mutable buffers are not supported)")
        self._bind_symbols(user_inputs)
        # Scalar (SymInt) delegate arguments are -1: every size is bound from the tensor inputs.
        self.g.inputs = [self.value(n) if n in user_inputs else -1 for n in placeholders]
        for sb, node in zip(self.g.symbols, self.symbol_inputs):
            sb.value = self.ids[node]
        fused = self._fuse_casts(ep)
        add_norms = self._fuse_add_norms(ep, fused)
        fused |= set(add_norms.values())
        for node in ep.graph.nodes:
            if node.op != "call_function" or aten_op(node) in SHAPE_ONLY or node in fused:
                continue
            if node in add_norms:
                norm = describe(add_norms[node])
                ins = describe(node).inputs + [norm.inputs[1]]
                self.g.ops.append(make(
                    OpT, code=OpCode.ADD_RMS_NORM, inputs=[-1 if i is None else self.value(i) for i in ins],
                    outputs=[self.value(node), self.value(add_norms[node])], name=add_norms[node].name,
                    argType=arg_type_of(norm.arg), arg=norm.arg))
                continue
            desc = describe(node)
            arg = self._int4_weight(node) if desc.code == OpCode.INT4_PLAIN_MM else desc.arg
            inputs = [-1 if i is None else self.value(i) for i in desc.inputs]
            op = make(OpT, code=desc.code, inputs=inputs, outputs=[self.value(node)], name=node.name)
            if arg is not None:
                op.argType, op.arg = arg_type_of(arg), arg
            self.g.ops.append(op)
        out_node = next(n for n in ep.graph.nodes if n.op == "output")
        outs = []
        for o in out_node.args[0]:
            vid = self.value(o)
            if vid in self.g.inputs or self.g.values[vid].constantKey:
                # A delegate output must be a value the graph computes: copy inputs/constants.
                copy = self._new_value(o.meta["val"], o.name + "_out")
                self.g.ops.append(make(OpT, code=OpCode.COPY, inputs=[vid], outputs=[copy], name=o.name + "_out"))
                vid = copy
            outs.append(vid)
        self.g.outputs = outs
        b = flatbuffers.Builder(1024)
        b.Finish(self.g.Pack(b), file_identifier=FILE_IDENTIFIER)
        return bytes(b.Output())


def serialize_graph(ep: ExportedProgram, store: NamedDataStore, external_tag: Optional[str]) -> bytes:
    return _GraphWriter(ep, store, external_tag).write()
