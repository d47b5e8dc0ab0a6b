"""Reference executor: runs an int4_cuda .pte on the CPU with plain torch ops.

It is the executable specification of schema/int4_cuda.fbs and the oracle for the GPU runtime:
each OpCode below is the meaning the CUDA kernels must reproduce. It interprets the whole
ExecuTorch program itself (KernelCall through torch's out= ops, DelegateCall through the blob
executor), so a .pte runs here with no ExecuTorch runtime at all.

    prog = load("model.pte")            # finds model.ptd beside it, or pass ptd_path
    logits, = prog.run("forward", tokens, start_pos)
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F

import int4_cuda.backend  # noqa: F401  (registers torch.ops.int4_cuda.*)
from int4_cuda.backend.coalesced_int4_tensor import dequantize_coalesced
from int4_cuda.backend.ops import (
    kv_attention_reference, linear_f32, matmul_dequantized, operand_weight, qkv_attention_reference, swiglu,
)
from int4_cuda.backend.serialize import DTYPE_TO_TORCH
from int4_cuda.blob import decode_blob, static_dims, verify_graph
from int4_cuda.errors import Int4CudaError, Int4CudaFileError
from int4_cuda.pte_file import BACKEND_ID, ProgramFile
from int4_cuda.schema import GraphT, OpCode, OP_NAMES

# Dequantized float32 weights are kept between runs up to this total (SmolLM2-135M needs ~0.4 GiB).
DEQUANT_CACHE_BYTES = 2 << 30

# ExecuTorch ScalarType -> torch dtype (the subset programs use).
_ET_DTYPES = {0: torch.uint8, 1: torch.int8, 2: torch.int16, 3: torch.int32, 4: torch.int64, 5: torch.float16,
              6: torch.float32, 7: torch.float64, 11: torch.bool, 15: torch.bfloat16}


def _bytes_to_tensor(data: bytes, dtype: torch.dtype, shape: Sequence[int]) -> torch.Tensor:
    if not data:
        return torch.empty(list(shape), dtype=dtype)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(dtype).reshape(list(shape))


class BlobExecutor:
    """Runs one verified int4_cuda delegate blob."""

    def __init__(self, g: GraphT, consts: Dict[int, bytes], where: str):
        self.g, self.where = g, where
        self.consts = {
            i: _bytes_to_tensor(b, DTYPE_TO_TORCH[g.values[i].dtype], static_dims(g.values[i], where))
            for i, b in consts.items()
        }
        self.weights = g.int4Weights or []
        self.kv_cache: Dict[int, tuple] = {}  # layer -> (K, V) [max_seq_len, Hkv, D], kept across runs
        self._w_cache: Dict[tuple, torch.Tensor] = {}
        self._cache_ok = sum(4 * w.n * w.k for w in self.weights) <= DEQUANT_CACHE_BYTES

    def _operand(self, i: int, dtype: torch.dtype) -> torch.Tensor:
        """W of int4 weight i as int4_plain_mm's GEMM operand (backend/ops.py), kept after first use
        when all of them fit DEQUANT_CACHE_BYTES (a decode step would otherwise dequantize the
        whole model again)."""
        if (i, dtype) in self._w_cache:
            return self._w_cache[(i, dtype)]
        w = self.weights[i]
        dq = dequantize_coalesced(self.consts[w.qdata], self.consts[w.scale], self.consts[w.zero], w.groupSize)
        dq = operand_weight(dq, dtype)
        if self._cache_ok:
            self._w_cache[(i, dtype)] = dq
        return dq

    def _shape(self, vid: int, sym: List[int]) -> List[int]:
        return [d.offset + (d.coeff * sym[d.symbol] if d.symbol >= 0 else 0) for d in self.g.values[vid].dims or []]

    def run(self, inputs: Sequence[object]) -> List[torch.Tensor]:
        g = self.g
        if len(inputs) != len(g.inputs):
            raise Int4CudaError(f"{self.where}: expected {len(g.inputs)} inputs, got {len(inputs)}")
        env: Dict[int, torch.Tensor] = dict(self.consts)
        for vid, x in zip(g.inputs, inputs):
            if vid < 0:
                continue
            want = DTYPE_TO_TORCH[g.values[vid].dtype]
            if not isinstance(x, torch.Tensor) or x.dtype != want:
                raise Int4CudaError(f"{self.where}: input {g.values[vid].name} must be a {want} tensor")
            env[vid] = x.contiguous()
        sym = []
        for s in g.symbols or []:
            v = env[s.value].shape[s.dim]
            if not s.minValue <= v <= s.maxValue:
                raise Int4CudaError(
                    f"{self.where}: input {g.values[s.value].name} dim {s.dim} is {v}; the program was "
                    f"exported for {s.minValue}..{s.maxValue}"
                )
            sym.append(v)
        for vid in g.inputs:
            if vid >= 0 and list(env[vid].shape) != self._shape(vid, sym):
                raise Int4CudaError(
                    f"{self.where}: input {g.values[vid].name} has shape {list(env[vid].shape)}, "
                    f"expected {self._shape(vid, sym)}"
                )
        for op in g.ops:
            ins = [env[i] if i >= 0 else None for i in op.inputs or []]
            if op.code == OpCode.ADD_RMS_NORM:  # two outputs: the sum as stored, then its norm
                ys = [torch.add(ins[0], ins[1]).to(DTYPE_TO_TORCH[g.values[op.outputs[0]].dtype])]
                ys.append(torch.ops.aten.rms_norm(ys[0], [ys[0].shape[-1]], ins[2], op.arg.eps))
            else:
                out_vid = op.outputs[0]
                ys = [self._op(op, ins, self._shape(out_vid, sym), DTYPE_TO_TORCH[g.values[out_vid].dtype])]
            for out_vid, y in zip(op.outputs, ys):
                if list(y.shape) != self._shape(out_vid, sym):
                    raise Int4CudaError(
                        f"{self.where}: op {op.name} ({OP_NAMES.get(op.code)}) produced {list(y.shape)}, "
                        f"the blob declares {self._shape(out_vid, sym)}"
                    )
                env[out_vid] = y.to(DTYPE_TO_TORCH[g.values[out_vid].dtype]).contiguous()
        return [env[o] for o in g.outputs]

    def _kv(self, layer: int, max_seq_len: int, hkv: int, d: int, dtype: torch.dtype):
        """The (K, V) caches of `layer`, [max_seq_len, Hkv, D], zeroed on first use."""
        if layer not in self.kv_cache:
            shape = (max_seq_len, hkv, d)
            self.kv_cache[layer] = (torch.zeros(shape, dtype=dtype), torch.zeros(shape, dtype=dtype))
        return self.kv_cache[layer]

    def _op(self, op, ins, out_shape: List[int], out_dtype: torch.dtype) -> torch.Tensor:
        c, arg = op.code, op.arg
        x = ins[0] if ins else None
        if c == OpCode.INT4_PLAIN_MM:
            return matmul_dequantized(x, self._operand(arg.weight, x.dtype))
        if c in (OpCode.ADD, OpCode.SUB, OpCode.MUL, OpCode.DIV):
            other = ins[1] if len(ins) > 1 else arg.value
            fn = {OpCode.ADD: torch.add, OpCode.SUB: torch.sub, OpCode.MUL: torch.mul, OpCode.DIV: torch.div}[c]
            return fn(x, other)
        if c == OpCode.NEG:
            return torch.neg(x)
        if c == OpCode.RSQRT:
            return torch.rsqrt(x)
        if c == OpCode.SILU:
            return F.silu(x)
        if c == OpCode.SIGMOID:
            return torch.sigmoid(x)
        if c == OpCode.POW:
            return torch.pow(x, arg.value)
        if c == OpCode.MEAN:
            return torch.mean(x, dim=list(arg.dims), keepdim=arg.keepdim)
        if c == OpCode.RMS_NORM:
            return torch.ops.aten.rms_norm(x, [x.shape[-1]], ins[1], arg.eps)
        if c == OpCode.SOFTMAX:
            return torch.softmax(x, dim=int(arg.dims[0]))
        if c == OpCode.BMM:
            return torch.bmm(x, ins[1])
        if c == OpCode.LINEAR:  # x, w and bias each in its own dtype (f32 x with a bf16 table)
            return linear_f32(x, ins[1], ins[2]).to(out_dtype)
        if c == OpCode.MATMUL:
            return torch.matmul(x, ins[1])
        if c == OpCode.SDPA:
            q, k, v, mask = ins
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=arg.isCausal,
                                                  scale=arg.scale or None, enable_gqa=q.shape[1] != k.shape[1])
        if c == OpCode.VIEW:
            return x.reshape(out_shape)
        if c == OpCode.EXPAND:
            return x.expand(out_shape)
        if c == OpCode.PERMUTE:
            return x.permute(list(arg.dims))
        if c == OpCode.CAT:
            return torch.cat(ins, dim=int(arg.dims[0]))
        if c == OpCode.SLICE:
            size = x.shape[arg.dim]
            start, end = (max(0, min(size, b + size if b < 0 else b)) for b in (arg.start, arg.end))
            idx = [slice(None)] * x.dim()
            idx[arg.dim] = slice(start, end, arg.step)
            return x[tuple(idx)].reshape(out_shape)
        if c == OpCode.ROPE:
            return torch.ops.int4_cuda.rope(x, ins[1], ins[2], ins[3], arg.interleaved)
        if c == OpCode.KV_ATTENTION:
            q, k, v, pos = ins
            kc, vc = self._kv(arg.layer, arg.maxSeqLen, k.shape[2], k.shape[3], q.dtype)
            try:
                return kv_attention_reference(q, k, v, kc, vc, int(pos.reshape(-1)[0]), arg.scale)
            except ValueError as e:
                raise Int4CudaError(f"{self.where}: {e}") from None
        if c == OpCode.QKV_ATTENTION:
            d = x.shape[-1] // (arg.nHeads + 2 * arg.nKvHeads)
            kc, vc = self._kv(arg.layer, arg.maxSeqLen, arg.nKvHeads, d, x.dtype)
            try:
                return qkv_attention_reference(x, ins[1], ins[2], ins[3], arg.nHeads, arg.nKvHeads,
                                               arg.interleaved, kc, vc, arg.scale)
            except ValueError as e:
                raise Int4CudaError(f"{self.where}: {e}") from None
        if c == OpCode.SWIGLU:
            return swiglu(x)
        if c == OpCode.COPY:
            return x.to(out_dtype, copy=True)
        if c == OpCode.EMBEDDING:
            return F.embedding(ins[1], x)
        raise Int4CudaError(f"{self.where}: op {op.name} has opcode {c}, which this executor does not know")


class ReferenceProgram:
    """A whole .pte, every method runnable on the CPU."""

    def __init__(self, pf: ProgramFile):
        self.file = pf
        self.plans = {p.name: p for p in pf.program.execution_plan}
        self.blobs: Dict[tuple, BlobExecutor] = {}
        for d in pf.delegates():
            where = f"{pf.path} [{d.plan} delegate {d.index}]"
            g = decode_blob(d.blob, where)
            consts = verify_graph(g, where, pf.path, pf.named_bytes)
            self.blobs[(d.plan, d.index)] = BlobExecutor(g, consts, where)

    @property
    def method_names(self) -> List[str]:
        return list(self.plans)

    def run(self, method: str = "forward", *inputs) -> List[object]:
        if method not in self.plans:
            raise Int4CudaError(f"{self.file.path}: no method '{method}' (has {sorted(self.plans)})")
        plan = self.plans[method]
        values = [self._init_value(v.val, plan) for v in plan.values]
        if len(inputs) != len(plan.inputs):
            raise Int4CudaError(f"{method} takes {len(plan.inputs)} inputs, got {len(inputs)}")
        for i, x in zip(plan.inputs, inputs):
            values[i] = x
        from executorch.exir import schema as S

        for ins in plan.chains[0].instructions:
            a = ins.instr_args
            if isinstance(a, S.KernelCall):
                self._kernel(plan, a, values)
            elif isinstance(a, S.DelegateCall):
                d = plan.delegates[a.delegate_index]
                if d.id != BACKEND_ID:
                    raise Int4CudaError(f"{self.file.path}: delegate {d.id} cannot run in the reference executor")
                ex = self.blobs[(method, a.delegate_index)]
                n_in = len(ex.g.inputs)
                outs = ex.run([values[i] for i in a.args[:n_in]])
                for i, o in zip(a.args[n_in:], outs):
                    values[i] = o
            elif isinstance(a, S.MoveCall):
                values[a.move_to] = values[a.move_from]
            elif isinstance(a, S.FreeCall):
                pass
            else:
                raise Int4CudaError(f"{self.file.path}: instruction {type(a).__name__} is not supported")
        return [values[i] for i in plan.outputs]

    def _init_value(self, v, plan):
        from executorch.exir import schema as S

        if isinstance(v, S.Tensor):
            dtype = _ET_DTYPES.get(int(v.scalar_type))
            if dtype is None:
                raise Int4CudaFileError(f"{self.file.path}: tensor dtype {v.scalar_type} is not supported")
            info = v.extra_tensor_info
            if info is not None and info.location == S.TensorDataLocation.EXTERNAL:
                data = self.file.named_bytes(info.fully_qualified_name)
                if data is None:
                    raise Int4CudaFileError(f"{self.file.path}: constant {info.fully_qualified_name} not in the .ptd")
                return _bytes_to_tensor(data, dtype, v.sizes)
            if v.data_buffer_idx > 0:
                return _bytes_to_tensor(bytes(self.file.program.constant_buffer[v.data_buffer_idx].storage), dtype, v.sizes)
            return torch.empty(0, dtype=dtype)
        for cls, attr in ((S.Int, "int_val"), (S.Bool, "bool_val"), (S.Double, "double_val"), (S.String, "string_val")):
            if isinstance(v, cls):
                return float(getattr(v, attr)) if cls is S.Double else getattr(v, attr)
        if isinstance(v, (S.IntList, S.TensorList, S.OptionalTensorList)):
            return ("list", v.items)
        if isinstance(v, (S.DoubleList, S.BoolList)):
            return list(v.items)
        return None

    def _kernel(self, plan, call, values) -> None:
        opdef = plan.operators[call.op_index]
        ns, name = opdef.name.split("::")
        try:
            op = getattr(getattr(getattr(torch.ops, ns), name), opdef.overload or "default")
        except AttributeError:
            raise Int4CudaError(f"{self.file.path}: operator {opdef.name}.{opdef.overload} is unknown to torch") from None
        args, kwargs = [], {}
        for spec, vi in zip(op._schema.arguments, call.args):
            val = values[vi]
            if isinstance(val, tuple) and val and val[0] == "list":
                val = [values[j] if not isinstance(values[j], tuple) else None for j in val[1]]
            if spec.is_out:
                val = torch.empty(0, dtype=values[vi].dtype)
                values[vi] = val
            if spec.kwarg_only:
                kwargs[spec.name] = val
            else:
                args.append(val)
        op(*args, **kwargs)


def load(pte_path: str, ptd_path: Optional[str] = None) -> ReferenceProgram:
    return ReferenceProgram(ProgramFile.open(pte_path, ptd_path))
