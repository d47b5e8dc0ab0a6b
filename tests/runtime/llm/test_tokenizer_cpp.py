"""The C++ tokenizer (runtime/llm/tokenizer.cpp) encodes and decodes exactly as Hugging Face
`tokenizers` does, on SmolLM2's tokenizer.json (Digits + ByteLevel) and on the same vocab with the
llama3 / qwen2 Split pre-tokenizers that int4_cuda/llm/tokenizer.py writes. No GPU needed."""
import json
import random
import subprocess

import pytest
from tokenizers import Tokenizer

CORPUS = [
    "",
    "What is the capital of France?",
    "Digits: 0 1 12 123 1234567890 3.14159 -42 1e10 ١٢٣ ٤٥ ² ½ Ⅻ",
    "whitespace    runs\t\ttabs\n\nnewlines   \n  trailing   ",
    "  leading spaces and a single trailing space ",
    "\r\n\r\nCRLF lines\r\n   \n\n\n     ",
    " " * 40 + "x" + "\t" * 9,
    "Ünïcödé: café, naïve, façade, Straße, Ελληνικά, русский, 中文字符, 日本語のテキスト, 한국어",
    "combining: e\u0301 a\u0308 \u0928\u093f Z\u0351\u0355",
    "emoji 😀🎉👍🏽 and 🇫🇷 flags, zero-width\u200bjoiner 👨‍👩‍👧",
    "punctuation!!! ... ??? --- ((brackets)) [x] {y} <z> \"quotes\" 'single' `code` @#$%^&*_+=|\\/~",
    "it's we're they've I'm you'll he'd SHOUTING'S IT'LL",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>after special<|im_end|><|im_start|>",
    "partial <|im_start and <|im_end| and |> <| |>",
    "mixed123abc456 x1y2z3 ABC123def",
    "def f(x):\n    return x ** 2  # comment\n\tif x:\n\t\tpass\n",
    "The year 2026: 100,000.50 $ 3% -7°C",
]

SPLIT_PRE = {"llama3": "llama-bpe", "qwen2": "qwen2"}


def _ask(tool, tok_path, requests):
    inp = "".join(json.dumps(r) + "\n" for r in requests)
    r = subprocess.run([str(tool), str(tok_path)], input=inp, check=False, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


@pytest.fixture(scope="module")
def variants(smol_tokenizer_dir, tmp_path_factory):
    """{name: tokenizer.json path}: SmolLM2's own, plus its vocab under the llama3/qwen2 splits."""
    from int4_cuda.llm.tokenizer import _pre_tokenizer

    out = {"smollm2": smol_tokenizer_dir / "tokenizer.json"}
    for name, pre in SPLIT_PRE.items():
        tk = Tokenizer.from_file(str(out["smollm2"]))
        tk.pre_tokenizer = _pre_tokenizer(pre)
        p = tmp_path_factory.mktemp(name) / "tokenizer.json"
        tk.save(str(p))
        out[name] = p
    return out


@pytest.mark.parametrize("variant", ["smollm2", "llama3", "qwen2"])
def test_encode_matches_hf(tokenizer_tool, variants, variant):
    path = variants[variant]
    hf = Tokenizer.from_file(str(path))
    got = _ask(tokenizer_tool, path, [{"encode": t} for t in CORPUS])
    for text, g in zip(CORPUS, got):
        assert g.get("ids") == hf.encode(text, add_special_tokens=False).ids, repr(text)


def test_decode_matches_hf(tokenizer_tool, variants):
    path = variants["smollm2"]
    hf = Tokenizer.from_file(str(path))
    seqs = [hf.encode(t, add_special_tokens=False).ids for t in CORPUS]
    rng = random.Random(5)
    # Random ids split UTF-8 characters anywhere: the lossy decoding must match too.
    seqs += [[rng.randrange(hf.get_vocab_size()) for _ in range(rng.randrange(1, 12))] for _ in range(300)]
    emoji = hf.encode("😀🎉 é", add_special_tokens=False).ids
    seqs += [emoji[:k] for k in range(1, len(emoji))]
    reqs = [{"decode": s, "skip_special": skip} for s in seqs for skip in (False, True)]
    got = _ask(tokenizer_tool, path, reqs)
    for r, g in zip(reqs, got):
        assert g["text"] == hf.decode(r["decode"], skip_special_tokens=r["skip_special"]), r


def test_streaming_equals_full_decode(tokenizer_tool, variants):
    path = variants["smollm2"]
    hf = Tokenizer.from_file(str(path))
    seqs = [hf.encode(t, add_special_tokens=False).ids for t in CORPUS]
    got = _ask(tokenizer_tool, path, [{"stream": s} for s in seqs])
    for s, g in zip(seqs, got):
        assert g["text"] == hf.decode(s, skip_special_tokens=True)


def test_chatml_matches_python(tokenizer_tool, smol_tokenizer_dir):
    from int4_cuda.llm.tokenizer import chatml, default_system_prompt

    (g,) = _ask(tokenizer_tool, smol_tokenizer_dir / "tokenizer.json",
                [{"chatml": "What is the capital of France?", "dir": str(smol_tokenizer_dir)}])
    assert g["text"] == chatml("What is the capital of France?", default_system_prompt(str(smol_tokenizer_dir)))
    assert "You are a helpful AI assistant named SmolLM" in g["text"]


@pytest.mark.parametrize("mutate,needle", [
    (lambda j: j.update(pre_tokenizer={"type": "Metaspace", "replacement": "▁"}), "pre-tokenizer 'Metaspace'"),
    (lambda j: j["model"].update(type="WordPiece"), "model type 'WordPiece'"),
    (lambda j: j.update(normalizer={"type": "NFC"}), "normalizer 'NFC'"),
    (lambda j: j.update(decoder={"type": "Metaspace"}), "decoder 'Metaspace'"),
])
def test_unsupported_tokenizer_is_refused(tokenizer_tool, smol_tokenizer_dir, tmp_path, mutate, needle):
    j = json.load(open(smol_tokenizer_dir / "tokenizer.json"))
    mutate(j)
    p = tmp_path / "tokenizer.json"
    p.write_text(json.dumps(j))
    r = subprocess.run([str(tokenizer_tool), str(p)], input="", check=False, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and needle in r.stderr and str(p) in r.stderr, r.stderr


def test_cpp_unit_tests(llm_unit_test):
    r = subprocess.run([str(llm_unit_test)], check=False, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
