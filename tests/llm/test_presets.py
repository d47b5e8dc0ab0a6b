"""Random-weight presets: real configs, int4 straight away, exported programs that run."""
import pytest
import torch
from torchao.quantization import Int4Tensor

import int4_cuda
from int4_cuda import CoalescedInt4Tensor
from int4_cuda.llm import presets
from int4_cuda.llm.export_llm import build_model, export_llm

from testutil import sqnr_db


def test_preset_shapes():
    cfg, st = presets.load_preset("llama3-8b", n_layers=1, vocab_size=256)
    assert (cfg.dim, cfg.n_heads, cfg.n_kv_heads, cfg.hidden_dim, cfg.tie_embeddings) == (4096, 32, 8, 14336, False)
    w = st["layers.0.feed_forward.w1.weight"]
    assert isinstance(w, Int4Tensor) and tuple(w.shape) == (14336, 4096) and w.block_size == [1, 32]
    assert isinstance(st["output.weight"], Int4Tensor)
    with pytest.raises(Exception, match="unknown preset 'gpt5'"):
        presets.load_preset("gpt5")


@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
@pytest.mark.parametrize("base", ["qwen3-0.6b", "llama3.2-1b"])
def test_small_preset_exports_and_matches_eager(tmp_path, monkeypatch, base, dtype):
    """float32 eager on the same dequantized weights. fp32 exports are compared on the weights
    rounded once to bf16, as their kernels use them: only summation order differs (measured
    126-131 dB), so 80 dB catches any activation rounded to bf16 (q/k norms of qwen3 included)."""
    monkeypatch.setitem(presets.PRESETS, "tiny", presets.preset_config(base, n_layers=2, vocab_size=1024, max_context_len=128))
    r = export_llm(preset="tiny", output_dir=str(tmp_path), max_seq_length=64, full_logits=True, group_size=64,
                   dtype=dtype)
    cfg, st = presets.load_preset("tiny", 64)  # same seed: same weights
    cfg.max_seq_len = 64
    as_used = (lambda w: w.to(torch.bfloat16).float()) if dtype == "fp32" else (lambda w: w)
    deq = {k: (as_used(CoalescedInt4Tensor.from_int4_tensor(v).dequantize()) if isinstance(v, Int4Tensor) else v.float())
           for k, v in st.items()}
    tokens = torch.randint(0, 1024, (1, 12))
    with torch.no_grad():
        want = build_model(cfg, deq, torch.float32)(tokens, torch.tensor([0]))[0]
    (got,) = int4_cuda.load(r["pte"]).run("forward", tokens, torch.tensor([0]))
    assert sqnr_db(want, got[0]) >= (80 if dtype == "fp32" else 30)


def test_fp32_plain_bf16_linear_reads_its_weight_as_stored(tmp_path):
    """A non-quantized bf16 linear under float32 activations (here the down projection) becomes a
    LINEAR with an f32 input and its bf16 weight, like the tied lm_head; logits match float32 eager
    on the same weights up to summation order."""
    from int4_cuda.blob import decode_blob
    from int4_cuda.llm.model import llm_constant_methods
    from int4_cuda.pte_file import ProgramFile
    from int4_cuda.schema import DType, OpCode

    cfg, st = presets.load_preset("smollm2-135m", 32, n_layers=1, dim=64, n_heads=2, n_kv_heads=1, hidden_dim=128,
                                  vocab_size=96, max_context_len=16, max_seq_len=16)
    plain = "layers.0.feed_forward.w2.weight"
    st[plain] = CoalescedInt4Tensor.from_int4_tensor(st[plain]).dequantize().to(torch.bfloat16)
    deq = {k: (CoalescedInt4Tensor.from_int4_tensor(v).dequantize().to(torch.bfloat16).float()
               if isinstance(v, Int4Tensor) else v.float()) for k, v in st.items()}
    model = build_model(cfg, st, torch.float32).fuse_projections()
    model.export_mode, model.full_logits = True, True
    seq = torch.export.Dim("seq", min=1, max=16)
    prog = int4_cuda.lower(model, (torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, dtype=torch.long)), name="m",
                           dynamic_shapes=({1: seq}, None), constant_methods=llm_constant_methods(cfg))
    files = int4_cuda.save(prog, str(tmp_path), "m", verbose=False)
    (d,) = ProgramFile.open(files.pte).delegates()
    g = decode_blob(d.blob, "m")
    linears = [op for op in g.ops if op.code == OpCode.LINEAR]  # the down projection and the lm_head
    assert [[g.values[i].dtype for i in op.inputs[:2]] for op in linears] == [[DType.FLOAT32, DType.BFLOAT16]] * 2
    tokens = torch.randint(0, 96, (1, 10))
    with torch.no_grad():
        want = build_model(cfg, deq, torch.float32)(tokens, torch.tensor([0]))[0]
    (got,) = int4_cuda.load(files.pte).run("forward", tokens, torch.tensor([0]))
    assert sqnr_db(want, got[0]) >= 80
