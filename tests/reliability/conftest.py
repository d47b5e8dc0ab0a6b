"""The built C++ runtime for the reliability tests (same contract as tests/runtime/conftest.py)."""
import os

import pytest

sys_hint = ("the C++ runtime is not built: run ./setup.sh (see tests/runtime/conftest.py); set "
            "INT4_CUDA_SKIP_NATIVE=1 to skip native tests")


@pytest.fixture(scope="session")
def runtime():
    """The int4_cuda.cuda_runtime module with its library loaded."""
    if os.environ.get("INT4_CUDA_SKIP_NATIVE") == "1":
        pytest.skip("INT4_CUDA_SKIP_NATIVE=1")
    from int4_cuda import cuda_runtime
    from int4_cuda.errors import Int4CudaError

    try:
        cuda_runtime._load()
    except Int4CudaError as e:
        pytest.fail(f"{e}; {sys_hint}", pytrace=False)
    return cuda_runtime
