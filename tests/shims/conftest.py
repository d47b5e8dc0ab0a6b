"""Shared fixtures for the native-kernel (shims/) tests: locating and loading libint4_cuda_shims.so."""
import ctypes
import glob
import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
LIB_NAME = "libint4_cuda_shims.so"
BUILD_HINT = (
    f"{LIB_NAME} not found. Build it first: "
    "`cmake -S . -B build -G 'Unix Makefiles' -DCMAKE_BUILD_TYPE=Release && cmake --build build -j2` "
    "(or point INT4_CUDA_SHIMS_LIB at the .so; set INT4_CUDA_SKIP_NATIVE=1 to skip native tests)."
)


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs an NVIDIA GPU (CI deselects with -m 'not gpu')")


def find_library():
    env = os.environ.get("INT4_CUDA_SHIMS_LIB")
    if env:
        return pathlib.Path(env) if pathlib.Path(env).is_file() else None
    candidates = [REPO / "build" / "shims" / LIB_NAME, REPO / "build-gpu" / LIB_NAME]
    candidates += [pathlib.Path(p) for p in sorted(glob.glob(str(REPO / "build*" / "**" / LIB_NAME), recursive=True))]
    for c in candidates:
        if c.is_file():
            return c
    return None


def load_library(path):
    lib = ctypes.CDLL(str(path))
    vp, i64 = ctypes.c_void_p, ctypes.c_int64
    lib.int4_cuda_int4_plain_mm.argtypes = [vp, vp, vp, vp, vp, i64, i64, i64, i64, vp]
    lib.int4_cuda_int4_plain_mm.restype = ctypes.c_int
    lib.int4_cuda_int4_plain_mm_ws.argtypes = [vp, vp, vp, vp, vp, i64, i64, i64, i64, vp, ctypes.c_size_t, vp]
    lib.int4_cuda_int4_plain_mm_ws.restype = ctypes.c_int
    lib.int4_cuda_int4_plain_mm_variant.argtypes = [vp, vp, vp, vp, vp, i64, i64, i64, i64, vp, ctypes.c_size_t, vp,
                                                    ctypes.c_int]
    lib.int4_cuda_int4_plain_mm_variant.restype = ctypes.c_int
    lib.int4_cuda_int4_plain_mm_f32.argtypes = [vp, vp, vp, vp, vp, i64, i64, i64, i64, vp]
    lib.int4_cuda_int4_plain_mm_f32.restype = ctypes.c_int
    lib.int4_cuda_int4_plain_mm_f32_variant.argtypes = [vp, vp, vp, vp, vp, i64, i64, i64, i64, vp, ctypes.c_int]
    lib.int4_cuda_int4_plain_mm_f32_variant.restype = ctypes.c_int
    lib.int4_cuda_status_string.argtypes = [ctypes.c_int]
    lib.int4_cuda_status_string.restype = ctypes.c_char_p
    lib.int4_cuda_last_cuda_error.argtypes = []
    lib.int4_cuda_last_cuda_error.restype = ctypes.c_char_p
    return lib


@pytest.fixture(scope="session")
def shims_lib():
    if os.environ.get("INT4_CUDA_SKIP_NATIVE") == "1":
        pytest.skip("INT4_CUDA_SKIP_NATIVE=1")
    path = find_library()
    if path is None:
        pytest.fail(BUILD_HINT, pytrace=False)
    return load_library(path)
