"""Shared fixtures (the built runtime, native binaries, seeding). Shared helpers live in
tests/testutil.py: a nested conftest.py would shadow this one under `from conftest import`."""
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))


RUNTIME_BUILD_HINT = (
    "the C++ runtime is not built: run ./setup.sh (needs `apt-get install flatbuffers-compiler "
    "libflatbuffers-dev`), or cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build; "
    "set INT4_CUDA_SKIP_NATIVE=1 to skip native tests"
)


@pytest.fixture(scope="session")
def runtime():
    """The int4_cuda.cuda_runtime module with its library loaded (fails, not skips, when unbuilt)."""
    if os.environ.get("INT4_CUDA_SKIP_NATIVE") == "1":
        pytest.skip("INT4_CUDA_SKIP_NATIVE=1")
    from int4_cuda import cuda_runtime
    from int4_cuda.errors import Int4CudaError

    try:
        cuda_runtime._load()
    except Int4CudaError as e:
        pytest.fail(f"{e}; {RUNTIME_BUILD_HINT}", pytrace=False)
    return cuda_runtime


def _find_native(name: str, sub: str):
    """A built native binary: under $INT4_CUDA_RUNNER_BUILD (a build dir or a slim folder holding
    the binaries) or build/; fails with the build hint when absent."""
    import pathlib

    env = os.environ.get("INT4_CUDA_RUNNER_BUILD")
    repo = pathlib.Path(__file__).resolve().parents[1]
    for base in ([pathlib.Path(env)] if env else []) + [repo / "build"]:
        for p in (base / sub / name, base / name):
            if p.is_file():
                return p
    pytest.fail(f"{name} is not built: run ./setup.sh (needs `apt-get install nlohmann-json3-dev libpcre2-dev`) "
                f"or cmake --build build; set INT4_CUDA_SKIP_NATIVE=1 to skip native tests", pytrace=False)


@pytest.fixture(scope="session")
def find_native():
    if os.environ.get("INT4_CUDA_SKIP_NATIVE") == "1":
        pytest.skip("INT4_CUDA_SKIP_NATIVE=1")
    return _find_native


@pytest.fixture(scope="session")
def runner_bin(find_native):
    return find_native("int4_cuda_runner", "examples/runner")


@pytest.fixture
def seed():
    torch.manual_seed(int.from_bytes(os.urandom(4), "little"))
