"""Shared test helpers: small int4 models (an MLP and a transformer block), the eager
dequantized reference, SQNR, and the exported MLP pair the bad-file tests damage. A module rather
than conftest.py: nested conftest.py files shadow one another under `from conftest import`."""
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F


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


def export_mlp_pair(out_dir, dynamic_batch: bool = False) -> dict:
    """Two small int4 MLPs ("m", "other": different weights) exported to out_dir/<name>.pte/.ptd,
    the raw material the bad-file tests damage. dynamic_batch: batch dim 1..32."""
    import int4_cuda

    files = {}
    for name, seed in (("m", 1), ("other", 2)):
        torch.manual_seed(seed)
        m = nn.Sequential(nn.Linear(64, 128, bias=False), nn.SiLU(), nn.Linear(128, 64, bias=False)).to(torch.bfloat16)
        int4_cuda.quantize_(m, 32)
        dyn = ({0: torch.export.Dim("seq", min=1, max=32)},) if dynamic_batch else None
        files[name] = int4_cuda.export_to_files(m, (torch.randn(4, 64, dtype=torch.bfloat16),), str(out_dir / name),
                                                name=name, dynamic_shapes=dyn)
    return files
