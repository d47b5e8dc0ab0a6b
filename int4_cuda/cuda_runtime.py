"""Run an int4_cuda .pte on the GPU from Python, through the C API of the C++ runtime (runtime/c_api.h).

ExecuTorch's own Python runtime bindings do not work on the GPU host (they are built against
another torch), so Python reaches the runtime with ctypes:

    from int4_cuda.cuda_runtime import CudaProgram, available
    ok, why = available()
    prog = CudaProgram("m.pte", "m.ptd")         # ptd=None: weights embedded (or none)
    y, = prog.run("forward", x)                   # CPU tensors in, CPU tensors out

The library is `build/runtime/libint4_cuda_runtime.so` next to the package (or wherever the
environment variable INT4_CUDA_RUNTIME_LIB points). It needs the ExecuTorch wheel's
`libexecutorch*.so`, which are loaded first from the installed `executorch` package (or
$EXECUTORCH_PREFIX/lib), so the .so works wherever the wheel is installed.

`verify_blob` exposes the runtime's blob verifier (the checks init() makes, host only) for tests;
`verify_blob_data` adds init()'s content-hash check of the constants, `check_constant` checks one.
"""
from __future__ import annotations

import ctypes
import importlib.util
import os
import pathlib
from typing import Callable, List, Optional, Tuple

import torch

from int4_cuda.errors import Int4CudaError

LIB_ENV = "INT4_CUDA_RUNTIME_LIB"
RUNTIME_LIB = "libint4_cuda_runtime.so"
BACKEND_LIB = "libint4_cuda_backend.so"
MAX_DIMS = 8
_ERR_LEN = 4096

# torch dtype <-> ExecuTorch ScalarType code.
_TO_ET = {torch.uint8: 0, torch.int8: 1, torch.int16: 2, torch.int32: 3, torch.int64: 4, torch.float16: 5,
          torch.float32: 6, torch.float64: 7, torch.bool: 11, torch.bfloat16: 15}
_FROM_ET = {v: k for k, v in _TO_ET.items()}


class _Tensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("dtype", ctypes.c_int32), ("ndim", ctypes.c_int32),
                ("sizes", ctypes.c_int64 * MAX_DIMS)]


_NAMED_SIZE_FN = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p, ctypes.c_char_p)
_NAMED_DATA_FN = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p))


def _repo_root() -> pathlib.Path:
    return pathlib.Path(__file__).resolve().parents[1]


def find_library() -> Optional[pathlib.Path]:
    """The runtime library: $INT4_CUDA_RUNTIME_LIB, else build*/runtime/ beside the package."""
    env = os.environ.get(LIB_ENV)
    if env:
        return pathlib.Path(env) if pathlib.Path(env).is_file() else None
    root = _repo_root()
    for c in [root / "build" / "runtime" / RUNTIME_LIB, *sorted(root.glob(f"build*/runtime/{RUNTIME_LIB}")),
              *sorted(root.glob(f"build*/{RUNTIME_LIB}"))]:
        if c.is_file():
            return c
    return None


def _executorch_lib_dir() -> Optional[pathlib.Path]:
    prefix = os.environ.get("EXECUTORCH_PREFIX")
    if prefix and (pathlib.Path(prefix) / "lib").is_dir():
        return pathlib.Path(prefix) / "lib"
    spec = importlib.util.find_spec("executorch")  # no import: the package's __init__ is heavy
    if spec is None or not spec.submodule_search_locations:
        return None
    return pathlib.Path(list(spec.submodule_search_locations)[0]) / "lib"


_LIB = None
_LIB_ERROR: Optional[str] = None


def _load() -> ctypes.CDLL:
    """Loads the runtime once per process (ExecuTorch's wheel libraries first, RTLD_GLOBAL, so our
    library resolves against the same registry the Python bindings use)."""
    global _LIB, _LIB_ERROR
    if _LIB is not None:
        return _LIB
    if _LIB_ERROR is not None:
        raise Int4CudaError(_LIB_ERROR)
    path = find_library()
    if path is None:
        _LIB_ERROR = (f"{RUNTIME_LIB} not found: build it (`./setup.sh`, or cmake -S . -B build && cmake --build "
                      f"build) or set {LIB_ENV}")
        raise Int4CudaError(_LIB_ERROR)
    et = _executorch_lib_dir()
    try:
        if et is not None:
            for name in ("libexecutorch.so", "libexecutorch_threadpool.so", "libexecutorch_kernels_optimized.so"):
                if (et / name).is_file():
                    ctypes.CDLL(str(et / name), mode=ctypes.RTLD_GLOBAL)
        backend = path.with_name(BACKEND_LIB)
        if backend.is_file():
            ctypes.CDLL(str(backend), mode=ctypes.RTLD_GLOBAL)
        lib = ctypes.CDLL(str(path))
    except OSError as e:
        _LIB_ERROR = f"cannot load {path}: {e}"
        raise Int4CudaError(_LIB_ERROR) from None
    vp, sz, cp = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p
    sig = {
        "int4_cuda_available": (ctypes.c_int, [cp, sz]),
        "int4_cuda_verify_blob": (ctypes.c_int, [vp, sz, _NAMED_SIZE_FN, vp, cp, sz]),
        "int4_cuda_verify_blob_data": (ctypes.c_int, [vp, sz, _NAMED_DATA_FN, vp, cp, sz]),
        "int4_cuda_check_constant": (ctypes.c_int, [cp, vp, sz, cp, sz]),
        "int4_cuda_legacy_layout_message": (None, [cp, cp, sz]),
        "int4_cuda_last_error": (cp, []),
        "int4_cuda_program_load": (vp, [cp, cp, cp, sz]),
        "int4_cuda_program_load_method": (ctypes.c_int, [vp, cp, cp, sz]),
        "int4_cuda_program_run": (ctypes.c_int, [vp, cp, ctypes.POINTER(_Tensor), sz, cp, sz]),
        "int4_cuda_program_num_outputs": (sz, [vp]),
        "int4_cuda_program_output": (ctypes.c_int, [vp, sz, ctypes.POINTER(_Tensor)]),
        "int4_cuda_program_free": (None, [vp]),
    }
    for name, (res, args) in sig.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    _LIB = lib
    return lib


def available() -> Tuple[bool, str]:
    """(True, device name) if the runtime is built and a GPU of compute capability >= 8.0 is
    present; else (False, why)."""
    try:
        lib = _load()
    except Int4CudaError as e:
        return False, str(e)
    buf = ctypes.create_string_buffer(1024)
    ok = lib.int4_cuda_available(buf, len(buf))
    return bool(ok), buf.value.decode(errors="replace")


def verify_blob(blob: bytes, named_size: Callable[[str], Optional[int]]) -> Tuple[int, str]:
    """Runs the C++ verifier on one delegate blob. named_size(key) -> byte size or None.
    Returns (ExecuTorch Error code, message); (0, "") when the blob is accepted."""
    lib = _load()

    @_NAMED_SIZE_FN
    def cb(_ctx, key):
        # An exception must not cross the C boundary: anything odd (a corrupt key that is not
        # UTF-8) counts as "not present".
        try:
            n = named_size(key.decode())
        except Exception:
            return -1
        return -1 if n is None else int(n)

    buf = ctypes.create_string_buffer(_ERR_LEN)
    code = lib.int4_cuda_verify_blob(blob, len(blob), cb, None, buf, len(buf))
    return int(code), buf.value.decode(errors="replace")


def verify_blob_data(blob: bytes, named_bytes: Callable[[str], Optional[bytes]]) -> Tuple[int, str]:
    """verify_blob, then every constant's sha256 against its content-hash key, as the C++ init()
    does before the upload. named_bytes(key) -> the constant's bytes or None.
    Returns (ExecuTorch Error code, message); (0, "") when the blob and its constants are accepted."""
    lib = _load()
    keep = []  # the bytes handed to C++ stay alive until the call returns

    @_NAMED_DATA_FN
    def cb(_ctx, key, data):
        try:
            b = named_bytes(key.decode())
        except Exception:
            return -1
        if b is None:
            return -1
        buf = ctypes.create_string_buffer(bytes(b), len(b) or 1)
        keep.append(buf)
        data[0] = ctypes.cast(buf, ctypes.c_void_p).value
        return len(b)

    buf = ctypes.create_string_buffer(_ERR_LEN)
    code = lib.int4_cuda_verify_blob_data(blob, len(blob), cb, None, buf, len(buf))
    return int(code), buf.value.decode(errors="replace")


def check_constant(key: str, data: bytes) -> Tuple[int, str]:
    """The C++ content-hash check of one constant: (0, "") if key == "i4cu." + sha256(data).hexdigest(),
    else (InvalidExternalData, the one-line message init() logs)."""
    lib = _load()
    buf = ctypes.create_string_buffer(_ERR_LEN)
    code = lib.int4_cuda_check_constant(key.encode(), data, len(data), buf, len(buf))
    return int(code), buf.value.decode(errors="replace")


def legacy_layout_message(weight: str) -> str:
    """The text the C++ runtime logs for a legacy-layout weight."""
    buf = ctypes.create_string_buffer(_ERR_LEN)
    _load().int4_cuda_legacy_layout_message(weight.encode(), buf, len(buf))
    return buf.value.decode()


def _to_c(x, i: int, keep: list) -> _Tensor:
    t = _Tensor()
    if isinstance(x, bool) or not isinstance(x, (int, torch.Tensor)):
        raise Int4CudaError(f"input {i}: expected a torch.Tensor or an int, got {type(x).__name__}")
    if isinstance(x, int):
        t.ndim, t.sizes[0] = -1, x
        return t
    if x.dtype not in _TO_ET:
        raise Int4CudaError(f"input {i}: dtype {x.dtype} is not supported")
    if x.dim() > MAX_DIMS:
        raise Int4CudaError(f"input {i}: rank {x.dim()} > {MAX_DIMS}")
    x = x.detach().to("cpu").contiguous()
    keep.append(x)
    t.data, t.dtype, t.ndim = x.data_ptr(), _TO_ET[x.dtype], x.dim()
    for d, s in enumerate(x.shape):
        t.sizes[d] = s
    return t


class CudaProgram:
    """A .pte (+ .ptd) loaded by the C++ runtime; methods run on the GPU delegate."""

    def __init__(self, pte: str, ptd: Optional[str] = None):
        self._lib = _load()
        self.pte, self.ptd = str(pte), (None if ptd is None else str(ptd))
        err = ctypes.create_string_buffer(_ERR_LEN)
        self._h = self._lib.int4_cuda_program_load(self.pte.encode(), None if self.ptd is None else self.ptd.encode(),
                                                   err, len(err))
        if not self._h:
            raise Int4CudaError(err.value.decode(errors="replace") or f"{self.pte}: cannot load")

    def load_method(self, method: str = "forward") -> None:
        """Loads a method (this runs the delegate's init(): verification, weight upload)."""
        err = ctypes.create_string_buffer(_ERR_LEN)
        if self._lib.int4_cuda_program_load_method(self._handle(), method.encode(), err, len(err)) != 0:
            raise Int4CudaError(err.value.decode(errors="replace"))

    def run(self, method: str = "forward", *inputs) -> List[object]:
        keep: list = []
        arr = (_Tensor * max(1, len(inputs)))(*[_to_c(x, i, keep) for i, x in enumerate(inputs)])
        err = ctypes.create_string_buffer(_ERR_LEN)
        rc = self._lib.int4_cuda_program_run(self._handle(), method.encode(), arr, len(inputs), err, len(err))
        if rc != 0:
            raise Int4CudaError(err.value.decode(errors="replace"))
        outs: List[object] = []
        for i in range(self._lib.int4_cuda_program_num_outputs(self._h)):
            t = _Tensor()
            if self._lib.int4_cuda_program_output(self._h, i, ctypes.byref(t)) != 0:
                raise Int4CudaError(f"{self.pte}: output {i} of '{method}' is not a tensor")
            if t.ndim == -1:
                outs.append(int(t.sizes[0]))
                continue
            dtype = _FROM_ET.get(t.dtype)
            if dtype is None:
                raise Int4CudaError(f"{self.pte}: output {i} has unsupported ScalarType {t.dtype}")
            y = torch.empty([t.sizes[d] for d in range(t.ndim)], dtype=dtype)
            if y.numel():
                ctypes.memmove(y.data_ptr(), t.data, y.numel() * y.element_size())
            outs.append(y)
        return outs

    def _handle(self):
        if not self._h:
            raise Int4CudaError(f"{self.pte}: program already closed")
        return self._h

    def close(self) -> None:
        if getattr(self, "_h", None):
            self._lib.int4_cuda_program_free(self._h)
            self._h = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


__all__ = ["CudaProgram", "available", "verify_blob", "verify_blob_data", "check_constant", "legacy_layout_message",
           "find_library"]
