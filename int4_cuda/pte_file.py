"""Reading and rewriting .pte/.ptd files that hold int4_cuda delegates.

Parsing is ExecuTorch's own (exir._serialize for the program, flat_tensor for .ptd); this module
adds the checks and messages a user needs (which file, what is wrong, what to do) and never lets
an exception from inside flatbuffers or ExecuTorch reach the user.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional

from int4_cuda.backend.int4_cuda_backend import SPEC_EMBED_WEIGHTS, SPEC_NAME
from int4_cuda.errors import Int4CudaFileError

BACKEND_ID = "Int4CudaBackend"
_PTE_MAGIC_OFFSET = 4  # flatbuffer file identifier "ET12"-style sits at bytes 4..8


def _read(path: str, what: str) -> bytes:
    if not os.path.isfile(path):
        raise Int4CudaFileError(f"{path}: {what} not found")
    with open(path, "rb") as f:
        return f.read()


def _check_entries(path: str, what: str, entries, buffers) -> None:
    """Every named-data entry must point at a buffer that exists (a damaged file may not)."""
    for key, e in entries.items():
        if not 0 <= e.buffer_index < len(buffers):
            raise Int4CudaFileError(
                f"{path}: corrupt {what}: entry {str(key)[:80]!r} points at buffer {e.buffer_index} of "
                f"{len(buffers)}; the file is damaged: re-export"
            )


@dataclass
class Delegate:
    plan: str            # method name, e.g. "forward"
    index: int           # position among that plan's delegates
    blob: bytes
    specs: Dict[str, str]

    @property
    def model_name(self) -> str:
        return self.specs.get(SPEC_NAME, "model")

    @property
    def embedded(self) -> bool:
        return self.specs.get(SPEC_EMBED_WEIGHTS) == "1"


@dataclass
class ProgramFile:
    """A .pte with its named data, plus the .ptd it needs (if any)."""

    path: str
    pte: object                      # executorch.exir._serialize._program.PTEFile
    ptd_path: Optional[str] = None
    _ptd: Optional[object] = None    # executorch DataPayload
    _pte_named: Dict[str, bytes] = field(default_factory=dict)
    _delegates: Optional[List[Delegate]] = None

    # -- opening ---------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str, ptd_path: Optional[str] = None) -> "ProgramFile":
        data = _read(path, "program file (.pte)")
        if len(data) < 8 or data[_PTE_MAGIC_OFFSET:_PTE_MAGIC_OFFSET + 2] != b"ET":
            raise Int4CudaFileError(f"{path}: not an ExecuTorch program (.pte): bad file identifier")
        from executorch.exir._serialize._program import deserialize_pte_binary

        try:
            pte = deserialize_pte_binary(data)
        except Exception as e:  # flatc/segment errors: the file is damaged
            raise Int4CudaFileError(f"{path}: corrupt or truncated .pte ({type(e).__name__}: {str(e)[:200]})") from None
        pf = cls(path, pte)
        try:
            # The generated Python flatbuffer readers give None for absent fields and do not check
            # indices: any error while walking a damaged program is reported as a corrupt file.
            nd = pte.named_data
            if nd is not None:
                _check_entries(path, ".pte named data", nd.pte_data, nd.buffers)
                pf._pte_named = {k: bytes(nd.buffers[e.buffer_index]) for k, e in nd.pte_data.items()}
            for plan in pte.program.execution_plan:
                if not isinstance(plan.name, str) or not plan.name:
                    raise Int4CudaFileError(f"{path}: corrupt .pte: a method has no name; re-export")
            pf._delegates = pf._find_delegates()
        except Int4CudaFileError:
            raise
        except Exception as e:
            raise Int4CudaFileError(
                f"{path}: corrupt .pte: its program structure is damaged ({type(e).__name__}: {str(e)[:200]}); re-export"
            ) from None
        external = {d.model_name for d in pf.delegates() if not d.embedded}
        if external:
            if len(external) > 1:
                raise Int4CudaFileError(f"{path}: delegates name several weight files {sorted(external)}")
            pf.ptd_path = ptd_path or os.path.join(os.path.dirname(os.path.abspath(path)), f"{external.pop()}.ptd")
            if ptd_path is not None or os.path.isfile(pf.ptd_path):
                pf._load_ptd()
            # else: a program without constants needs no .ptd (save() writes none); named_bytes
            # reports the missing file if a constant is asked for.
        return pf

    def _load_ptd(self) -> None:
        data = _read(self.ptd_path, f"weights file (.ptd) needed by {self.path}")
        from executorch.exir._serialize._cord import Cord
        from executorch.extension.flat_tensor.serialize.serialize import FlatTensorSerializer

        try:
            self._ptd = FlatTensorSerializer().deserialize(Cord(data))
        except Exception as e:
            raise Int4CudaFileError(
                f"{self.ptd_path}: corrupt or truncated .ptd ({type(e).__name__}: {str(e)[:200]})"
            ) from None
        _check_entries(self.ptd_path, ".ptd", self._ptd.named_data, self._ptd.buffers)

    # -- contents --------------------------------------------------------------------------------
    @property
    def program(self):
        return self.pte.program

    def delegates(self) -> List[Delegate]:
        """The int4_cuda delegates, as found (and checked) when the file was opened."""
        if self._delegates is None:
            self._delegates = self._find_delegates()
        return list(self._delegates)

    def _find_delegates(self) -> List[Delegate]:
        out = []
        prog = self.program
        for plan in prog.execution_plan:
            for i, d in enumerate(plan.delegates):
                if d.id != BACKEND_ID:
                    continue
                ref = d.processed
                if not 0 <= ref.index < len(prog.backend_delegate_data):
                    raise Int4CudaFileError(f"{self.path}: delegate {i} of '{plan.name}' points past the delegate data")
                specs = {s.key: bytes(s.value).decode(errors="replace") for s in d.compile_specs}
                out.append(Delegate(plan.name, i, bytes(prog.backend_delegate_data[ref.index].data), specs))
        return out

    def named_bytes(self, key: str) -> Optional[bytes]:
        """Bytes stored under `key` in the .pte, else in the .ptd, else None."""
        if key in self._pte_named:
            return self._pte_named[key]
        if self._ptd is None and self.ptd_path is not None:
            raise Int4CudaFileError(
                f"{self.path}: needs its weights file {self.ptd_path} (not found); pass --data/ptd_path, "
                f"or re-export with --embed_weights"
            )
        if self._ptd is not None and key in self._ptd.named_data:
            return bytes(self._ptd.buffers[self._ptd.named_data[key].buffer_index])
        return None

    def iter_plans(self) -> Iterator[object]:
        return iter(self.program.execution_plan)
