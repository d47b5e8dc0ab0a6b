"""Int4CudaBackend: ExecuTorch's ahead-of-time half of the delegate.

ExecuTorch routes a lowered partition to the backend whose BackendDetails subclass has this class
name; the C++ runtime registers the same name ("Int4CudaBackend"). preprocess turns the partition
into one flatbuffer blob (schema/int4_cuda.fbs) and hands its constants to the NamedDataStore.
"""
from __future__ import annotations

from typing import Dict, List

from executorch.exir._serialize._named_data_store import NamedDataStore
from executorch.exir.backend.backend_details import BackendDetails, PreprocessResult
from executorch.exir.backend.compile_spec_schema import CompileSpec
from torch.export import ExportedProgram

from int4_cuda.errors import Int4CudaError

from .op_support import Unsupported
from .serialize import serialize_graph

# Compile-spec keys (values are utf-8 bytes).
SPEC_NAME = "name"                # model name: constants go to <name>.ptd
SPEC_EMBED_WEIGHTS = "embed_weights"  # b"1": constants stay inside the .pte


def compile_specs(name: str, embed_weights: bool) -> List[CompileSpec]:
    return [CompileSpec(SPEC_NAME, name.encode()), CompileSpec(SPEC_EMBED_WEIGHTS, b"1" if embed_weights else b"0")]


def parse_specs(specs: List[CompileSpec]) -> Dict[str, str]:
    return {s.key: s.value.decode() for s in specs}


class Int4CudaBackend(BackendDetails):
    @classmethod
    def copy_exported_program_for_preprocess(cls, edge_program: ExportedProgram, compile_specs) -> ExportedProgram:
        # ExecuTorch deep-copies the partition (every weight) in case preprocess edits it. Ours only
        # reads the graph and its constants, so it gets the program itself: one copy of an 8B
        # model's weights in host memory instead of two.
        return edge_program

    @staticmethod
    def preprocess(edge_program: ExportedProgram, compile_specs: List[CompileSpec]) -> PreprocessResult:
        spec = parse_specs(compile_specs)
        name = spec.get(SPEC_NAME, "model")
        tag = None if spec.get(SPEC_EMBED_WEIGHTS) == "1" else name
        store = NamedDataStore()
        try:
            blob = serialize_graph(edge_program, store, tag)
        except Unsupported as e:  # surfaces as one clear error, not a traceback from ExecuTorch's lowering
            raise Int4CudaError(f"int4_cuda cannot lower this program: {e}") from None
        return PreprocessResult(processed_bytes=blob, data_store_output=store.get_named_data_store_output())
