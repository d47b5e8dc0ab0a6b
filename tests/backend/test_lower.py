"""End to end on the CPU: int4 MLP and transformer block -> .pte/.ptd -> reference executor."""
import copy
import os

import pytest
import torch

import int4_cuda
from int4_cuda.blob import decode_blob, static_dims
from int4_cuda.pte_file import ProgramFile
from int4_cuda.schema import OpCode, WeightLayout

from testutil import Block, MLP4, dequantized_copy, sqnr_db


def build(kind, gs):
    m = (MLP4() if kind == "mlp" else Block()).to(torch.bfloat16)
    int4_cuda.quantize_(m, gs)
    return m


def example(kind, t=8):
    return torch.randn(1, t, 256, dtype=torch.bfloat16)


@pytest.mark.parametrize("gs", [32, 128])
@pytest.mark.parametrize("kind", ["mlp", "block"])
def test_reference_executor_matches_eager_dequantized(tmp_path, seed, kind, gs):
    m = build(kind, gs)
    ref = dequantized_copy(m)
    T = torch.export.Dim("T", min=1, max=64)
    files = int4_cuda.export_to_files(m, (example(kind),), str(tmp_path), name=f"{kind}{gs}",
                                      dynamic_shapes=({1: T},))
    assert files.ptd == str(tmp_path / f"{kind}{gs}.ptd") and os.path.getsize(files.ptd) > 0
    prog = int4_cuda.load(files.pte)
    for t in (1, 7, 64):
        x = example(kind, t)
        (y,) = prog.run("forward", x)
        with torch.no_grad():
            e = ref(x)
        assert y.shape == e.shape and y.dtype == torch.bfloat16
        assert sqnr_db(e, y) >= 40, f"T={t}: {sqnr_db(e, y):.1f} dB"


def test_every_linear_is_coalesced_int4_plain_mm_in_graph_and_blob(tmp_path, seed):
    m = build("block", 32)
    names = [n for n, mod in m.named_modules() if isinstance(mod, torch.nn.Linear)]
    shapes = {n: tuple(mod.weight.shape) for n, mod in m.named_modules() if isinstance(mod, torch.nn.Linear)}
    prog = int4_cuda.lower(m, (example("block"),), name="blk")
    # The lowered program: one delegate call, nothing left on the CPU, no transposed constant.
    gm = prog.exported_program().graph_module
    calls = [n for n in gm.graph.nodes if n.op == "call_function"]
    assert [str(n.target) for n in calls].count("executorch_call_delegate") == 1
    assert all(str(n.target) in ("executorch_call_delegate", "<built-in function getitem>") for n in calls)
    files = int4_cuda.save(prog, str(tmp_path), "blk")
    pf = ProgramFile.open(files.pte)
    (d,) = pf.delegates()
    g = decode_blob(d.blob, "blk")
    assert sorted(w.name for w in g.int4Weights) == sorted(names)
    mm_ops = [op for op in g.ops if op.code == OpCode.INT4_PLAIN_MM]
    assert len(mm_ops) == len(names)
    for w in g.int4Weights:
        n, k = shapes[w.name]
        assert (w.layout, w.n, w.k, w.groupSize) == (WeightLayout.COALESCED_N_GROUPS, n, k, 32)
        assert static_dims(g.values[w.scale], "") == [n, k // 32] == static_dims(g.values[w.zero], "")
        assert static_dims(g.values[w.qdata], "") == [n, k // 2]
    constants = {i for i, t in enumerate(g.values) if t.constantKey}
    for op in g.ops:  # nothing reshapes or transposes a constant at run time
        if op.code in (OpCode.PERMUTE, OpCode.VIEW, OpCode.EXPAND, OpCode.COPY, OpCode.SLICE):
            assert not constants & set(op.inputs), op.name


def test_embed_weights_and_two_models_in_one_folder(tmp_path, seed):
    a, b = build("mlp", 32), build("mlp", 32)
    x = example("mlp")
    fa = int4_cuda.export_to_files(copy.deepcopy(a), (x,), str(tmp_path), name="a")
    fb = int4_cuda.export_to_files(copy.deepcopy(b), (x,), str(tmp_path), name="b")
    fe = int4_cuda.export_to_files(copy.deepcopy(a), (x,), str(tmp_path), name="a_embedded", embed_weights=True)
    assert fe.ptd is None and not (tmp_path / "a_embedded.ptd").exists()
    assert os.path.getsize(fe.pte) > os.path.getsize(fa.pte) + os.path.getsize(fa.ptd) // 2
    ya = int4_cuda.load(fa.pte).run("forward", x)[0]
    assert torch.equal(int4_cuda.load(fe.pte).run("forward", x)[0], ya)
    assert not torch.equal(int4_cuda.load(fb.pte).run("forward", x)[0], ya)


def test_identical_weights_are_stored_once(tmp_path, seed):
    m = torch.nn.Sequential(torch.nn.Linear(256, 256, bias=False), torch.nn.Linear(256, 256, bias=False)).to(torch.bfloat16)
    m[1].weight = torch.nn.Parameter(m[0].weight.detach().clone())
    int4_cuda.quantize_(m, 32)
    f = int4_cuda.export_to_files(m, (torch.randn(2, 256, dtype=torch.bfloat16),), str(tmp_path), name="tied")
    pf = ProgramFile.open(f.pte)
    assert len(pf._ptd.named_data) == 3  # qdata, scale, zero shared by both layers


class WithCumsum(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.l = torch.nn.Linear(64, 32, bias=False)

    def forward(self, x):
        return torch.cumsum(self.l(x), dim=-1)


def test_unsupported_ops_run_on_cpu_kernels(tmp_path, seed):
    m = WithCumsum().to(torch.bfloat16)
    int4_cuda.quantize_(m, 32)
    ref = dequantized_copy(m)
    x = torch.randn(3, 64, dtype=torch.bfloat16)
    f = int4_cuda.export_to_files(m, (x,), str(tmp_path), name="cs")
    (y,) = int4_cuda.load(f.pte).run("forward", x)
    assert sqnr_db(ref(x), y) >= 40


def test_export_errors_name_the_layer():
    m = torch.nn.Sequential(torch.nn.Linear(96, 8)).to(torch.bfloat16)
    with pytest.raises(ValueError, match=r"^0: in_features K=96 is not divisible"):
        int4_cuda.quantize_(m, 64)
    m = torch.nn.Sequential(torch.nn.Linear(64, 8))  # float32 model
    int4_cuda.quantize_(m, 32)
    with pytest.raises(ValueError, match=r"^0: scale/zero are torch.float32.*model.to\(torch.bfloat16\)"):
        int4_cuda.lower(m, (torch.randn(1, 64),))


def test_unbounded_dynamic_dim_is_a_clear_error(seed):
    from int4_cuda.errors import Int4CudaError

    m = build("mlp", 32)
    with pytest.raises(Int4CudaError, match=r"dynamic without an upper bound.*Dim\(\.\.\., max=\.\.\.\)"):
        int4_cuda.lower(m, (example("mlp"),), dynamic_shapes=({1: torch.export.Dim("T")},))
