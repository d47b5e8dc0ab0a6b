"""Shared test helpers: small int4 models (an MLP and a transformer block) and metrics."""
import copy
import os
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))


def sqnr_db(ref: torch.Tensor, out: torch.Tensor) -> float:
    ref, out = ref.double(), out.double()
    err = (ref - out).pow(2).sum()
    return float("inf") if err == 0 else float(10 * torch.log10(ref.pow(2).sum() / err))


class MLP4(nn.Module):
    """4 linear layers with SiLU between (and one bias, to cover linear's bias path)."""

    def __init__(self, dims=(256, 512, 384, 256, 128)):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=(i == 1)) for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])))

    def forward(self, x):
        for i, l in enumerate(self.layers):
            x = l(x)
            if i < len(self.layers) - 1:
                x = F.silu(x)
        return x


class Block(nn.Module):
    """A pre-norm transformer block: RMSNorm, grouped-query causal attention, SwiGLU."""

    def __init__(self, dim=256, heads=4, kv_heads=2, hidden=512):
        super().__init__()
        self.h, self.kvh, self.hd = heads, kv_heads, dim // heads
        self.wq = nn.Linear(dim, heads * self.hd, bias=False)
        self.wk = nn.Linear(dim, kv_heads * self.hd, bias=False)
        self.wv = nn.Linear(dim, kv_heads * self.hd, bias=False)
        self.wo = nn.Linear(heads * self.hd, dim, bias=False)
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.n1, self.n2 = nn.RMSNorm(dim, eps=1e-5), nn.RMSNorm(dim, eps=1e-5)
        with torch.no_grad():
            self.n1.weight.uniform_(0.5, 1.5)
            self.n2.weight.uniform_(0.5, 1.5)

    def forward(self, x):
        b, t, d = x.shape
        h = self.n1(x)
        q = self.wq(h).view(b, t, self.h, self.hd).transpose(1, 2)
        k = self.wk(h).view(b, t, self.kvh, self.hd).transpose(1, 2)
        v = self.wv(h).view(b, t, self.kvh, self.hd).transpose(1, 2)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        x = x + self.wo(a.transpose(1, 2).reshape(b, t, d))
        h = self.n2(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


def dequantized_copy(model: nn.Module) -> nn.Module:
    """The eager reference: the same model with each int4 weight replaced by its float dequant."""
    from int4_cuda import CoalescedInt4Tensor
    from torchao.quantization import Int4Tensor

    ref = copy.deepcopy(model)
    for mod in ref.modules():
        w = getattr(mod, "weight", None)
        if isinstance(w, Int4Tensor):
            w = CoalescedInt4Tensor.from_int4_tensor(w)
        if isinstance(w, CoalescedInt4Tensor):
            mod.weight = nn.Parameter(w.dequantize(torch.float32).to(torch.bfloat16), requires_grad=False)
    return ref


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
