"""Program passes that run after to_edge and before partitioning, in this order."""
from typing import List

from executorch.exir.pass_base import ExportedProgramPassBase
from torch.export import ExportedProgram

from .fold_constants import FoldConstantsPass
from .stamp_int4_layout import StampInt4LayoutPass
from .validate_int4_layout import Int4LayoutError, ValidateInt4LayoutPass


def int4_cuda_passes() -> List[ExportedProgramPassBase]:
    """The ordered pipeline: fold constant transposes away, record each int4 layout, refuse bad ones."""
    return [FoldConstantsPass(), StampInt4LayoutPass(), ValidateInt4LayoutPass()]


def run_passes(ep: ExportedProgram) -> ExportedProgram:
    for p in int4_cuda_passes():
        ep = p(ep).exported_program
    return ep


__all__ = ["FoldConstantsPass", "StampInt4LayoutPass", "ValidateInt4LayoutPass", "Int4LayoutError",
           "int4_cuda_passes", "run_passes"]
