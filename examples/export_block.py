"""Quantize a small transformer block to int4, export it to int4_cuda, run the .pte on the CPU.

    .venv/bin/python examples/export_block.py [--output_dir out] [--group_size 32]

The Python API end to end: quantize_ (torchao Int4Tensor) -> lower (pack, export, passes,
partition) -> save (.pte + .ptd) -> load (reference executor), checked against eager PyTorch.
"""
import argparse
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

import int4_cuda


class Block(nn.Module):
    def __init__(self, dim=576, heads=9, kv_heads=3, hidden=1536):  # SmolLM2-135M's block shape
        super().__init__()
        self.h, self.kvh, self.hd = heads, kv_heads, dim // heads
        self.wq = nn.Linear(dim, dim, bias=False)
        self.wk = nn.Linear(dim, kv_heads * self.hd, bias=False)
        self.wv = nn.Linear(dim, kv_heads * self.hd, bias=False)
        self.wo = nn.Linear(dim, dim, bias=False)
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.n1, self.n2 = nn.RMSNorm(dim, eps=1e-5), nn.RMSNorm(dim, eps=1e-5)

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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--output_dir", default="out")
    ap.add_argument("--group_size", type=int, default=32)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = Block().to(torch.bfloat16).eval()
    int4_cuda.quantize_(model, args.group_size)
    int4_cuda.pack_(model)
    x = torch.randn(1, 16, 576, dtype=torch.bfloat16)
    with torch.no_grad():
        eager = model(x)
    seq = torch.export.Dim("seq", min=1, max=256)
    files = int4_cuda.export_to_files(model, (x,), args.output_dir, name="block", dynamic_shapes=({1: seq},))
    (y,) = int4_cuda.load(files.pte).run("forward", x)
    err = float((y.float() - eager.float()).norm() / eager.float().norm())
    print(f"reference executor vs eager: relative error {err:.2e}")
    return 0 if err < 1e-2 else 1


if __name__ == "__main__":
    sys.exit(main())
