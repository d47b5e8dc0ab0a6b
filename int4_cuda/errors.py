"""Errors users see, and the message texts the C++ runtime repeats word for word."""


class Int4CudaError(Exception):
    """Base of every error int4_cuda raises on purpose (the CLI prints these without a traceback)."""


class Int4CudaFileError(Int4CudaError, ValueError):
    """A .pte/.ptd/blob that cannot be used: missing, truncated, corrupt, mismatched or outdated."""


# Shared with runtime/ (C++), which logs exactly this text (tests compare the two).
LEGACY_LAYOUT_MESSAGE = (
    "int4_cuda: weight '{weight}' stores scale/zero in the legacy [n_groups, N] layout "
    "(LEGACY_GROUPS_N); this runtime needs COALESCED_N_GROUPS ([N, n_groups]). Re-export the model, "
    "or convert the file: int4-cuda upgrade OLD.pte NEW.pte"
)


def legacy_layout_error(weight: str, pte: str) -> Int4CudaFileError:
    return Int4CudaFileError(f"{pte}: " + LEGACY_LAYOUT_MESSAGE.format(weight=weight))
