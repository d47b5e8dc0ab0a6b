"""Decode and verify one int4_cuda delegate blob: the checks the C++ runtime's init() also makes.

Everything a later step relies on is checked here, so executors can index without checking:
file identifier, format version, every value/op/weight reference in range, weight layout
(legacy refused with the shared message), weight shapes/dtypes/group size, and every constant's
bytes present with the size its dims declare.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

from int4_cuda.backend.coalesced_int4_tensor import SUPPORTED_GROUP_SIZES
from int4_cuda.backend.serialize import CONSTANT_KEY_PREFIX, constant_key
from int4_cuda.errors import Int4CudaFileError, legacy_layout_error
from int4_cuda.schema import DType, FILE_IDENTIFIER, FormatVersion, Graph, GraphT, OpArg, OpCode, WeightLayout

DTYPE_SIZE = {DType.FLOAT32: 4, DType.BFLOAT16: 2, DType.FLOAT16: 2, DType.INT64: 8, DType.INT32: 4,
              DType.UINT8: 1, DType.INT8: 1, DType.BOOL: 1}


def decode_blob(blob: bytes, where: str) -> GraphT:
    if len(blob) < 8 or blob[4:8] != FILE_IDENTIFIER:
        raise Int4CudaFileError(
            f"{where}: not an int4_cuda delegate blob (identifier {bytes(blob[4:8])!r}, expected {FILE_IDENTIFIER!r})"
        )
    try:
        root = Graph.GetRootAs(blob, 0)
        version = root.Version()
    except Exception:
        raise Int4CudaFileError(f"{where}: corrupt int4_cuda delegate blob") from None
    if version != FormatVersion.CURRENT:
        raise Int4CudaFileError(
            f"{where}: int4_cuda blob format version {version}, but this build reads version "
            f"{FormatVersion.CURRENT}; re-export the model with this version of int4_cuda"
        )
    try:
        g = _plain(GraphT.InitFromObj(root))
    except Exception:
        raise Int4CudaFileError(f"{where}: corrupt int4_cuda delegate blob") from None
    _normalize(g)
    check_structure(g, where)
    return g


def _normalize(g: GraphT) -> None:
    """Absent vectors and strings (None in the object API) as empty ones, so readers can iterate
    and print every field of a decoded graph."""
    for attr in ("values", "inputs", "outputs", "ops", "int4Weights", "symbols"):
        if getattr(g, attr) is None:
            setattr(g, attr, [])
    for t in g.values:
        t.dims = t.dims or []
        t.name = t.name or ""
    for op in g.ops:
        op.inputs, op.outputs, op.name = op.inputs or [], op.outputs or [], op.name or ""
    for w in g.int4Weights:
        w.name = w.name or ""


def check_structure(g: GraphT, where: str) -> None:
    """The checks every reader (inspect, verify_graph, executors) relies on to index the graph:
    known dtypes, every value/symbol/weight reference in range, one output per op, an argument
    table for every op that names an argument type. Layout and constants are verify_graph's."""
    values = g.values or []
    nv = len(values)
    nsym = len(g.symbols or [])
    weights = g.int4Weights or []

    def vid(i, what, optional=False):
        if (optional and i == -1) or (0 <= i < nv):
            return
        raise Int4CudaFileError(f"{where}: {what} refers to value {i}, but the blob has {nv} values")

    for t in values:
        if t.dtype not in DTYPE_SIZE:
            raise Int4CudaFileError(f"{where}: value {t.name} has unknown dtype {t.dtype}")
        for d in t.dims or []:
            if d.symbol >= nsym or d.symbol < -1:
                raise Int4CudaFileError(f"{where}: value {t.name} uses undeclared symbol {d.symbol}")
            if d.symbol < 0 and d.offset < 0:
                raise Int4CudaFileError(f"{where}: value {t.name} has a negative static dimension {d.offset}; "
                                        f"the blob is corrupt: re-export the model")
    for i in g.inputs or []:
        vid(i, "a graph input", optional=True)
    for i in g.outputs or []:
        vid(i, "a graph output")
    for s in g.symbols or []:
        vid(s.value, "a symbol binding")
        if s.dim >= len(values[s.value].dims or []):
            raise Int4CudaFileError(f"{where}: a symbol binds to dim {s.dim} of {values[s.value].name}, which has fewer dims")
    for op in g.ops or []:
        for i in op.inputs or []:
            vid(i, f"op {op.name} input", optional=True)
        n_out = 2 if op.code == OpCode.ADD_RMS_NORM else 1
        if len(op.outputs or []) != n_out:
            raise Int4CudaFileError(f"{where}: op {op.name} has {len(op.outputs or [])} outputs, expected {n_out}")
        for i in op.outputs:
            vid(i, f"op {op.name} output")
        if op.argType != OpArg.NONE and op.arg is None:
            raise Int4CudaFileError(f"{where}: op {op.name} names argument type {op.argType} but has no argument")
        if op.argType == OpArg.Int4MatMul and not (0 <= op.arg.weight < len(weights)):
            raise Int4CudaFileError(f"{where}: op {op.name} refers to int4 weight {op.arg.weight} of {len(weights)}")
    for w in weights:
        for what, v in (("qdata", w.qdata), ("scale", w.scale), ("zero", w.zero)):
            vid(v, f"weight '{w.name}' {what}")


def _plain(obj):
    """Object-API tree with numpy vectors as lists and strings as str (the generated code
    returns numpy arrays and bytes), so verification and executors see plain Python values."""
    if isinstance(obj, list):
        return [_plain(o) for o in obj]
    if hasattr(obj, "__dict__"):
        for k, v in vars(obj).items():
            if hasattr(v, "tolist"):
                setattr(obj, k, v.tolist())
            elif isinstance(v, bytes):
                setattr(obj, k, v.decode("utf-8", errors="replace"))
            else:
                setattr(obj, k, _plain(v))
    return obj


def static_dims(t, where: str):
    dims = []
    for d in t.dims or []:
        if d.symbol >= 0:
            raise Int4CudaFileError(f"{where}: constant {t.name} has a dynamic dimension")
        dims.append(d.offset)
    return dims


def verify_graph(
    g: GraphT, where: str, pte_path: str, named_bytes: Callable[[str], Optional[bytes]], check_hashes: bool = True
) -> Dict[int, bytes]:
    """Raises Int4CudaFileError on anything wrong; returns {value id: constant bytes}.

    check_hashes: int4_cuda constant keys are the sha256 of their bytes, so recomputing them
    catches a damaged weight of the right size (the structural checks come first, so e.g. a
    legacy layout is reported as such)."""
    check_structure(g, where)  # again: g may have been built or edited after decode_blob
    values = g.values or []
    weights = g.int4Weights or []

    consts: Dict[int, bytes] = {}
    for i, t in enumerate(values):
        if not t.constantKey:
            continue
        key = t.constantKey
        data = named_bytes(key)
        if data is None:
            raise Int4CudaFileError(
                f"{where}: constant {t.name} (key {key[:20]}…) is in neither the .pte nor its .ptd: the "
                f".ptd belongs to another model or export; pass the .ptd written with this .pte, or re-export"
            )
        n = DTYPE_SIZE[t.dtype]
        for d in static_dims(t, where):
            n *= d
        if len(data) != n:
            raise Int4CudaFileError(
                f"{where}: constant {t.name} holds {len(data)} bytes, but its shape {static_dims(t, where)} needs {n}"
            )
        consts[i] = data

    for w in weights:
        name = w.name
        if w.layout == WeightLayout.LEGACY_GROUPS_N:
            raise legacy_layout_error(name, pte_path)
        if w.layout != WeightLayout.COALESCED_N_GROUPS:
            raise Int4CudaFileError(f"{where}: weight '{name}' has unknown layout {w.layout}; re-export the model")
        if w.groupSize not in SUPPORTED_GROUP_SIZES or w.k <= 0 or w.n <= 0 or w.k % w.groupSize:
            raise Int4CudaFileError(
                f"{where}: weight '{name}' has group size {w.groupSize} for K={w.k}; supported: "
                f"{SUPPORTED_GROUP_SIZES} dividing K"
            )
        for what, v, dtype, shape in (("qdata", w.qdata, DType.UINT8, [w.n, w.k // 2]),
                                      ("scale", w.scale, DType.BFLOAT16, [w.n, w.k // w.groupSize]),
                                      ("zero", w.zero, DType.BFLOAT16, [w.n, w.k // w.groupSize])):
            t = values[v]
            if v not in consts or t.dtype != dtype or static_dims(t, where) != shape:
                raise Int4CudaFileError(
                    f"{where}: weight '{name}' {what} must be a constant {dtype} {shape}, "
                    f"found dims {static_dims(t, where) if t.constantKey else 'non-constant'}"
                )
    if check_hashes:
        for key in {values[v].constantKey for v in consts}:
            if key.startswith(CONSTANT_KEY_PREFIX) and constant_key(named_bytes(key)) != key:
                name = next(values[v].name for v in consts if values[v].constantKey == key)
                raise Int4CudaFileError(
                    f"{where}: constant {name} does not match its content hash: the weights file is "
                    f"damaged; export again or restore the .ptd/.pte"
                )
    return consts
