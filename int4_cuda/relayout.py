"""Rewrite the int4 weights of a .pte (+ .ptd) into another WeightLayout, changing nothing else.

`upgrade` (the CLI's `int4-cuda upgrade OLD.pte NEW.pte`) moves legacy [n_groups, N] scale/zero
to the coalesced [N, n_groups] layout the runtime needs; the committed legacy test fixture is
made with the inverse. Each rewritten constant gets its new content-hash key; the blob's
dims, keys and layout field are updated together, and files are written atomically.
"""
from __future__ import annotations

import os
from typing import Callable, Dict, List, Optional

import flatbuffers

from int4_cuda.backend.serialize import CONSTANT_ALIGNMENT, CONSTANT_KEY_PREFIX, DTYPE_TO_TORCH, constant_key, tensor_bytes
from int4_cuda.blob import decode_blob, static_dims
from int4_cuda.errors import Int4CudaFileError
from int4_cuda.backend.int4_cuda_backend import SPEC_NAME
from int4_cuda.pte_file import ProgramFile
from int4_cuda.reference import _bytes_to_tensor
from int4_cuda.schema import FILE_IDENTIFIER, WeightLayout, WEIGHT_LAYOUT_NAMES, DimT, make


def _transpose_constant(pf: ProgramFile, g, vid: int, new: Dict[str, bytes], where: str) -> None:
    t = g.values[vid]
    data = pf.named_bytes(t.constantKey)
    if data is None:
        raise Int4CudaFileError(f"{where}: constant {t.name} is missing from the .pte/.ptd")
    dims = static_dims(t, where)
    x = _bytes_to_tensor(data, DTYPE_TO_TORCH[t.dtype], dims).t().contiguous()
    b = tensor_bytes(x)
    t.constantKey = constant_key(b)
    t.dims = [make(DimT, offset=d, coeff=0, symbol=-1) for d in x.shape]
    new[t.constantKey] = b


def rewrite(src: str, dst: str, edit: Callable, ptd: Optional[str] = None) -> None:
    """Writes dst (.pte, and `<dst stem>.ptd` when weights are external) from src, with each
    int4_cuda delegate blob replaced by `edit(graph, program_file, new_constants, where)`'s bytes.
    `edit` may add constants to `new_constants` {key: bytes}; constants no blob refers to any more
    are dropped. Everything else in the program is kept as it is."""
    from executorch.exir._serialize._named_data_store import NamedDataStore
    from executorch.exir._serialize._program import PTEFile, serialize_pte_binary
    from executorch.exir._serialize.data_serializer import DataEntry, DataPayload
    from executorch.extension.flat_tensor.serialize.serialize import FlatTensorSerializer

    if os.path.abspath(src) == os.path.abspath(dst):
        raise Int4CudaFileError(f"{dst}: write the rewritten program to a new file, not over {src}")
    pf = ProgramFile.open(src, ptd)
    prog = pf.program
    new_bytes: Dict[str, bytes] = {}
    referenced = set()  # constant keys the rewritten blobs use
    stem = os.path.splitext(os.path.basename(dst))[0]
    plans = {p.name: p for p in prog.execution_plan}
    for d in pf.delegates():
        where = f"{src} [{d.plan} delegate {d.index}]"
        g = decode_blob(d.blob, where)
        blob = edit(g, pf, new_bytes, where)
        referenced.update(t.constantKey for t in g.values if t.constantKey)
        delegate = plans[d.plan].delegates[d.index]
        prog.backend_delegate_data[delegate.processed.index].data = blob
        if not d.embedded:
            for s in delegate.compile_specs:
                if s.key == SPEC_NAME:
                    s.value = stem.encode()

    def keep(key: str) -> bool:
        return key in referenced or not key.startswith(CONSTANT_KEY_PREFIX)

    pte_store = NamedDataStore()
    old = pf.pte.named_data
    if old is not None:
        for k, e in old.pte_data.items():
            if keep(k):
                pte_store.add_named_data(k, bytes(old.buffers[e.buffer_index]), alignment=CONSTANT_ALIGNMENT)
    external = pf._ptd is not None
    if not external:
        for k, b in new_bytes.items():
            pte_store.add_named_data(k, b, alignment=CONSTANT_ALIGNMENT)
    pte_out = PTEFile(program=prog, mutable_data=pf.pte.mutable_data, named_data=pte_store.get_named_data_store_output())
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    tmp = dst + ".partial"
    with open(tmp, "wb") as f:
        serialize_pte_binary(pte_out, extract_delegate_segments=True).write_to_file(f)
    if external:
        buffers, entries = [], {}
        for k, e in pf._ptd.named_data.items():
            if keep(k):
                entries[k] = DataEntry(len(buffers), CONSTANT_ALIGNMENT, e.tensor_layout)
                buffers.append(bytes(pf._ptd.buffers[e.buffer_index]))
        for k, b in new_bytes.items():
            entries[k] = DataEntry(len(buffers), CONSTANT_ALIGNMENT, None)
            buffers.append(b)
        ptd_dst = os.path.join(os.path.dirname(os.path.abspath(dst)), f"{stem}.ptd")
        with open(ptd_dst + ".partial", "wb") as f:
            FlatTensorSerializer().serialize(DataPayload(buffers=buffers, named_data=entries)).write_to_file(f)
        os.replace(ptd_dst + ".partial", ptd_dst)
    os.replace(tmp, dst)


def pack_graph(g) -> bytes:
    b = flatbuffers.Builder(1024)
    b.Finish(g.Pack(b), file_identifier=FILE_IDENTIFIER)
    return bytes(b.Output())


def relayout(src: str, dst: str, layout: int, ptd: Optional[str] = None) -> List[str]:
    """Moves every int4 weight of src to `layout`. Returns the names of the weights rewritten."""
    changed: List[str] = []

    def edit(g, pf, new_bytes, where):
        for w in g.int4Weights or []:
            if w.layout == layout:
                continue
            if w.layout not in WEIGHT_LAYOUT_NAMES:
                raise Int4CudaFileError(f"{where}: weight '{w.name}' has unknown layout {w.layout}")
            _transpose_constant(pf, g, w.scale, new_bytes, where)
            _transpose_constant(pf, g, w.zero, new_bytes, where)
            w.layout = layout
            changed.append(w.name)
        return pack_graph(g)

    rewrite(src, dst, edit, ptd)
    return changed


def upgrade(src: str, dst: str, ptd: Optional[str] = None) -> List[str]:
    return relayout(src, dst, WeightLayout.COALESCED_N_GROUPS, ptd)


__all__ = ["relayout", "upgrade"]
