"""tokenizer.json built from SmolLM2's GGUF encodes exactly as an independent BPE does."""
import gguf
import pytest
from tokenizers import Tokenizer

from int4_cuda.llm.gguf_source import default_gguf
from int4_cuda.llm.tokenizer import chatml, default_system_prompt, write_tokenizer_from_gguf

from bpe_reference import ReferenceBPE

CORPUS = [
    "What is the capital of France?",
    "Digits: 0 1 12 123 1234567890 3.14159 -42 1e10",
    "whitespace    runs\t\ttabs\n\nnewlines   \n  trailing   ",
    "  leading spaces and a single trailing space ",
    "Ünïcödé: café, naïve, façade, Straße, Ελληνικά, русский, 中文字符, 日本語のテキスト, 한국어",
    "emoji 😀🎉👍🏽 and 🇫🇷 flags, zero-width\u200bjoiner",
    "punctuation!!! ... ??? --- ((brackets)) [x] {y} <z> \"quotes\" 'single' `code`",
    "it's we're they've I'm you'll he'd SHOUTING'S",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>after special<|im_end|><|im_start|>",
    "mixed123abc456 x1y2z3",
]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    reader = gguf.GGUFReader(default_gguf())
    d = tmp_path_factory.mktemp("tok")
    path = write_tokenizer_from_gguf(reader, str(d))
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    merges = reader.fields["tokenizer.ggml.merges"].contents()
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    specials = [t for t, ty in zip(tokens, types) if ty == 3]
    return Tokenizer.from_file(path), ReferenceBPE(tokens, merges, specials), d


@pytest.mark.parametrize("text", CORPUS)
def test_encode_matches_independent_bpe(built, text):
    tk, ref, _ = built
    assert tk.encode(text, add_special_tokens=False).ids == ref.encode(text)


def test_specials_and_roundtrip(built):
    tk, _, d = built
    assert tk.token_to_id("<|endoftext|>") == 0 and tk.token_to_id("<|im_start|>") == 1 and tk.token_to_id("<|im_end|>") == 2
    for text in CORPUS:
        assert tk.decode(tk.encode(text, add_special_tokens=False).ids, skip_special_tokens=False) == text
    sys_prompt = default_system_prompt(str(d))
    assert sys_prompt.startswith("You are a helpful AI assistant named SmolLM")
    ids = tk.encode(chatml("Hi", sys_prompt), add_special_tokens=False).ids
    assert ids[0] == 1 and ids.count(2) == 2
