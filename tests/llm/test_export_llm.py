"""export_llm --backend cuda on the embedded SmolLM2-135M, end to end on the CPU."""
import os

import pytest
import torch

import int4_cuda
from int4_cuda import CoalescedInt4Tensor
from int4_cuda.cli import main as cli
from int4_cuda.llm.export_llm import build_model, main as export_main
from int4_cuda.llm.gguf_source import default_gguf, load_gguf

from conftest import sqnr_db


@pytest.fixture(scope="module")
def smol(tmp_path_factory):
    d = tmp_path_factory.mktemp("smol")
    assert export_main(["--backend", "cuda", "--output_dir", str(d), "--max_seq_length", "256"]) == 0
    return d


def test_default_export_writes_the_three_files(smol):
    for f in ("smollm2.pte", "smollm2.ptd", "tokenizer.json"):
        assert os.path.getsize(smol / f) > 0, f
    prog = int4_cuda.load(str(smol / "smollm2.pte"))
    assert prog.run("get_max_seq_len")[0] == 256 and prog.run("get_vocab_size")[0] == 49152
    assert prog.run("get_bos_id")[0] == 1 and prog.run("get_eos_ids")[0] == 2 and prog.run("use_kv_cache")[0]


def test_generate_answers_paris(smol, capsys):
    rc = cli(["generate", "--model", str(smol / "smollm2.pte"), "--prompt", "What is the capital of France?",
              "--chat", "--max_new_tokens", "24", "--device", "cpu"])
    out = capsys.readouterr()
    assert rc == 0 and "Paris" in out.out, out.out
    assert "CPU reference executor" in out.err


def test_logits_match_eager_at_every_position(smol):
    cfg, state, _, _ = load_gguf(default_gguf())
    deq = {k: (CoalescedInt4Tensor.from_int4_tensor(v).dequantize().to(torch.bfloat16) if hasattr(v, "block_size") else v)
           for k, v in state.items()}
    cfg.max_seq_len = 256
    eager = build_model(cfg, deq)
    g = torch.Generator().manual_seed(int.from_bytes(os.urandom(4), "little"))
    tokens = torch.randint(3, cfg.vocab_size, (1, 32), generator=g)
    with torch.no_grad():
        ref = eager(tokens, torch.tensor([0]))[0]  # [32, V], causal over the whole prompt
    prog = int4_cuda.load(str(smol / "smollm2.pte"))
    worst = 99.0
    for t in range(32):  # one token per step through the exported KV cache
        (logits,) = prog.run("forward", tokens[:, t:t + 1], torch.tensor([t]))
        worst = min(worst, sqnr_db(ref[t], logits.reshape(-1)))
    assert worst >= 30, f"worst position SQNR {worst:.1f} dB"


def test_bad_arguments(tmp_path, capsys):
    assert export_main(["--backend", "cuda", "--output_dir", str(tmp_path), "--max_seq_length", "9000"]) == 2
    assert "outside 2..8192 (the model's context length)" in capsys.readouterr().err
    assert export_main(["--backend", "cuda", "--checkpoint", str(tmp_path)]) == 2
    assert "no config.json" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing half-written
