"""backend/serialize.py: casts folded into their neighbours, and a residual add fused with the norm
of its result, give the same numbers with fewer ops."""
import torch
import torch.nn as nn

import int4_cuda
from int4_cuda.blob import decode_blob
from int4_cuda.pte_file import ProgramFile
from int4_cuda.schema import DType, OpCode

from testutil import dequantized_copy


class ResidualBlock(nn.Module):
    """The LLM decoder's dtype pattern: an f32 residual stream, f32 RMSNorm cast to bf16 for an int4
    linear, whose bf16 output is widened back for the residual add; f32 logits from a bf16 linear."""

    def __init__(self, dim=128, vocab=96):
        super().__init__()
        self.norm = nn.RMSNorm(dim, eps=1e-5)
        self.proj = nn.Linear(dim, dim, bias=False).to(torch.bfloat16)
        self.head = nn.Linear(dim, vocab, bias=False).to(torch.bfloat16)

    def forward(self, x):
        x = x + self.proj(self.norm(x).to(torch.bfloat16)).float()
        x = x * self.proj(self.norm(x).to(torch.bfloat16)).float()
        return x, self.head(x.to(torch.bfloat16)).float()


def _blob(files):
    (d,) = ProgramFile.open(files.pte).delegates()
    return decode_blob(d.blob, "res")


def test_casts_fold_and_residual_add_fuses_with_its_norm(tmp_path, seed):
    m = ResidualBlock()
    with torch.no_grad():
        m.norm.weight.uniform_(0.5, 1.5)
    int4_cuda.quantize_(m.proj, 32)  # head stays a bf16 LINEAR (f32 logits)
    ref = dequantized_copy(m)
    x = torch.randn(1, 5, 128)
    files = int4_cuda.export_to_files(m, (x,), str(tmp_path), name="res")
    g = _blob(files)
    codes = [op.code for op in g.ops]
    # Three narrowing casts (2 norms + the head input) stay only where no producer can absorb them:
    # the head's input comes from an ADD/MUL (f32), so exactly that one COPY remains.
    assert codes.count(OpCode.COPY) == 1, codes
    (norm,) = [op for op in g.ops if op.code == OpCode.RMS_NORM]  # the first norm reads x itself
    assert g.values[norm.outputs[0]].dtype == DType.BFLOAT16
    # The residual add and the norm of its result: one ADD_RMS_NORM with both values as outputs.
    (add_norm,) = [op for op in g.ops if op.code == OpCode.ADD_RMS_NORM]
    assert [g.values[o].dtype for o in add_norm.outputs] == [DType.FLOAT32, DType.BFLOAT16]
    assert OpCode.ADD not in codes
    for op in (add_norm, *[op for op in g.ops if op.code == OpCode.MUL]):
        # the residual ops read the int4 linear's bf16 output directly
        assert sorted(g.values[i].dtype for i in op.inputs[:2]) == sorted([DType.FLOAT32, DType.BFLOAT16])
        assert g.values[op.outputs[0]].dtype == DType.FLOAT32
    (lin,) = [op for op in g.ops if op.code == OpCode.LINEAR]
    assert g.values[lin.outputs[0]].dtype == DType.FLOAT32

    prog = int4_cuda.load(files.pte)
    x = torch.randn(1, 5, 128)
    y, logits = prog.run("forward", x)
    with torch.no_grad():
        ey, elogits = ref(x)
        # export packed m's weights in place: run eagerly, it computes every op as the executor does
        py, _ = m(x)
    # Folding changes no rounding: the residual is bit-identical to the same arithmetic run eagerly.
    # Against the independent reference (plain bf16 nn.Linear, another summation order, so a bf16
    # output may round one ulp apart) and for the logits (f32 straight from the accumulator vs
    # eager's bf16 round + widen) the numbers agree to bf16 precision.
    assert torch.equal(y, py)
    assert torch.allclose(y, ey, rtol=2e-2, atol=2e-2)
    assert torch.allclose(logits, elogits, rtol=1e-2, atol=1e-2)
