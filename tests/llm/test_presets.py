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


@pytest.mark.parametrize("base", ["qwen3-0.6b", "llama3.2-1b"])
def test_small_preset_exports_and_matches_eager(tmp_path, monkeypatch, base):
    monkeypatch.setitem(presets.PRESETS, "tiny", presets.preset_config(base, n_layers=2, vocab_size=1024, max_context_len=128))
    r = export_llm(preset="tiny", output_dir=str(tmp_path), max_seq_length=64, full_logits=True, group_size=64)
    cfg, st = presets.load_preset("tiny", 64)  # same seed: same weights
    cfg.max_seq_len = 64
    deq = {k: (CoalescedInt4Tensor.from_int4_tensor(v).dequantize() if isinstance(v, Int4Tensor) else v.float())
           for k, v in st.items()}
    tokens = torch.randint(0, 1024, (1, 12))
    with torch.no_grad():  # float32 eager on the same dequantized weights
        want = build_model(cfg, deq).float()(tokens, torch.tensor([0]))[0]
    (got,) = int4_cuda.load(r["pte"]).run("forward", tokens, torch.tensor([0]))
    assert sqnr_db(want, got[0]) >= 30
