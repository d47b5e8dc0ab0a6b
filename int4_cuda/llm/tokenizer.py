"""tokenizer.json (Hugging Face format) from GGUF metadata, and ChatML prompt formatting.

Built with the `tokenizers` library (the reader every user has), from the GGUF fields:
vocab (tokenizer.ggml.tokens), merges, token types (CONTROL/USER_DEFINED -> special added
tokens), the pre-tokenizer named by tokenizer.ggml.pre, bos/eos and the chat template (written
to tokenizer_config.json beside it, as Hugging Face does).
"""
from __future__ import annotations

import json
import os
from typing import List, Optional

from int4_cuda.errors import Int4CudaError

# GGUF token types (llama.cpp llama_token_type)
_CONTROL, _USER_DEFINED = 3, 4

# Pre-tokenizer regexes, as llama.cpp applies them per tokenizer.ggml.pre.
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def _pre_tokenizer(pre: str):
    from tokenizers import Regex, pre_tokenizers as P

    if pre == "smollm":
        return P.Sequence([P.Digits(individual_digits=True), P.ByteLevel(add_prefix_space=False, use_regex=True)])
    if pre in ("gpt2", "default", None):
        return P.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in ("llama-bpe", "llama3", "smaug-bpe"):
        return P.Sequence([P.Split(Regex(_LLAMA3_SPLIT), behavior="isolated"), P.ByteLevel(add_prefix_space=False, use_regex=False)])
    if pre == "qwen2":
        return P.Sequence([P.Split(Regex(_QWEN2_SPLIT), behavior="isolated"), P.ByteLevel(add_prefix_space=False, use_regex=False)])
    raise Int4CudaError(f"GGUF pre-tokenizer '{pre}' is not supported; supported: smollm, gpt2, llama-bpe, qwen2")


def _field(reader, key):
    f = reader.fields.get(key)
    return None if f is None else f.contents()


def write_tokenizer_from_gguf(reader, out_dir: str) -> str:
    """Writes tokenizer.json + tokenizer_config.json into out_dir; returns the tokenizer.json path."""
    from tokenizers import AddedToken, Tokenizer, decoders, models

    model = _field(reader, "tokenizer.ggml.model")
    if model != "gpt2":
        raise Int4CudaError(f"GGUF tokenizer model '{model}' is not supported; int4_cuda builds byte-level BPE ('gpt2')")
    tokens: List[str] = _field(reader, "tokenizer.ggml.tokens")
    merges: List[str] = _field(reader, "tokenizer.ggml.merges") or []
    types: List[int] = _field(reader, "tokenizer.ggml.token_type") or [1] * len(tokens)
    vocab = {t: i for i, t in enumerate(tokens)}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[tuple(m.split(" ", 1)) for m in merges], fuse_unk=False))
    tk.pre_tokenizer = _pre_tokenizer(_field(reader, "tokenizer.ggml.pre"))
    tk.decoder = decoders.ByteLevel()
    special = [AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty in (_CONTROL, _USER_DEFINED)]
    tk.add_special_tokens(special)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "tokenizer.json")
    tk.save(path + ".partial")
    os.replace(path + ".partial", path)

    def tok(key):
        i = _field(reader, key)
        return tokens[int(i)] if i is not None and 0 <= int(i) < len(tokens) else None

    config = {
        "bos_token": tok("tokenizer.ggml.bos_token_id"),
        "eos_token": tok("tokenizer.ggml.eos_token_id"),
        "add_bos_token": bool(_field(reader, "tokenizer.ggml.add_bos_token")),
        "chat_template": _field(reader, "tokenizer.chat_template"),
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2, ensure_ascii=False)
    return path


def chatml(prompt: str, system: Optional[str] = None) -> str:
    """ChatML, as SmolLM2/Qwen chat templates render one user turn with a generation prompt."""
    s = f"<|im_start|>system\n{system}<|im_end|>\n" if system else ""
    return s + f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"


def default_system_prompt(tokenizer_dir: str) -> Optional[str]:
    """The system prompt the model's chat template inserts when none is given (SmolLM2 has one)."""
    path = os.path.join(tokenizer_dir, "tokenizer_config.json")
    if not os.path.isfile(path):
        return None
    tmpl = json.load(open(path)).get("chat_template") or ""
    marker = "<|im_start|>system\n"
    i = tmpl.find(marker)
    if i < 0:
        return None
    j = tmpl.find("<|im_end|>", i)
    return tmpl[i + len(marker):j] if j > i and "{" not in tmpl[i + len(marker):j] else None
