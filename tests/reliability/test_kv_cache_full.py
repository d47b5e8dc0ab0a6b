"""KV cache full (issue #8), CPU side: `int4-cuda generate`'s loop stops cleanly when the cache is
full (reported as kv_cache_full), a prompt longer than the cache is a clear error before anything
runs, and a forward past the cache is an Int4CudaError, never a write past the cache. Runs a
1-layer Llama from the preset code (max_seq_len 16) on the reference executor."""
import os
import sys

import pytest
import torch

import int4_cuda
from int4_cuda.errors import Int4CudaError
from int4_cuda.llm.generate import Generator

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "fixtures"))
from make_fuzz_corpus import tiny_llm  # noqa: E402

MAX_SEQ = 16
VOCAB = 96


@pytest.fixture(scope="module")
def llm(tmp_path_factory):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    d = tmp_path_factory.mktemp("llm")
    pte = tiny_llm(str(d))
    tok = Tokenizer(WordLevel({f"t{i}": i for i in range(VOCAB)}, unk_token="t0"))
    tok.pre_tokenizer = Whitespace()
    tok.save(str(d / "tokenizer.json"))
    return pte, str(d / "tokenizer.json")


def _generator(llm):
    pte, tok = llm
    g = Generator(int4_cuda.load(pte), tok)
    g.eos = set()  # random weights: never stop on EOS, so the cache fills
    return g


def test_generation_stops_cleanly_when_cache_is_full(llm):
    g = _generator(llm)
    assert g.max_seq_len == MAX_SEQ
    out, stats = g.generate(list(range(3, 13)), max_new_tokens=100)
    assert stats["stop"] == "kv_cache_full", stats
    assert len(out) == MAX_SEQ - 10 + 1  # the last token needs no cache slot: it is never fed back


def test_prompt_longer_than_cache_is_an_error(llm):
    g = _generator(llm)
    with pytest.raises(Int4CudaError, match="KV cache holds 16"):
        g.generate(list(range(MAX_SEQ)), max_new_tokens=4)


def test_forward_past_the_cache_is_an_error(llm):
    prog = int4_cuda.load(llm[0])
    prog.run("forward", torch.tensor([[1, 2]]), torch.tensor([0]))
    with pytest.raises(Int4CudaError):
        prog.run("forward", torch.tensor([[3, 4]]), torch.tensor([MAX_SEQ - 1]))
