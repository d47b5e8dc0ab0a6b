"""Fixtures for the runtime tests: the built C++ runtime (libint4_cuda_runtime.so) and its ctest binaries."""
import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
BUILD_HINT = (
    "the C++ runtime is not built: run ./setup.sh (needs `apt-get install flatbuffers-compiler "
    "libflatbuffers-dev`), or cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build; "
    "set INT4_CUDA_SKIP_NATIVE=1 to skip native tests"
)


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
        pytest.fail(f"{e}; {BUILD_HINT}", pytrace=False)
    return cuda_runtime


@pytest.fixture(scope="session")
def runtime_build_dir(runtime):
    return runtime.find_library().parent
