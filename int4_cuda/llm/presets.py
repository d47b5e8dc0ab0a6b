"""Random-weight models at real shapes, for benchmarks. Linear weights are generated straight
into int4 (random codes, scales and zeros), so no bf16 copy of the model ever exists in memory."""
from __future__ import annotations

import dataclasses
from typing import Dict

import torch
from torchao.quantization import Int4Tensor

from int4_cuda.backend.coalesced_int4_tensor import check_group_size
from int4_cuda.errors import Int4CudaError

from .config import LlmConfig, RopeScaling

PRESETS: Dict[str, LlmConfig] = {
    "smollm2-135m": LlmConfig(arch="llama", dim=576, n_layers=30, n_heads=9, n_kv_heads=3, hidden_dim=1536,
                              vocab_size=49152, rope_theta=1e5, tie_embeddings=True, max_context_len=8192,
                              bos_id=1, eos_ids=[2]),
    "llama3.2-1b": LlmConfig(arch="llama", dim=2048, n_layers=16, n_heads=32, n_kv_heads=8, hidden_dim=8192,
                             vocab_size=128256, head_dim=64, rope_theta=5e5, rope_scaling=RopeScaling(32.0, 1.0, 4.0, 8192),
                             tie_embeddings=True, max_context_len=131072, bos_id=128000, eos_ids=[128001, 128008, 128009]),
    "qwen3-0.6b": LlmConfig(arch="qwen3", dim=1024, n_layers=28, n_heads=16, n_kv_heads=8, head_dim=128, hidden_dim=3072,
                            vocab_size=151936, norm_eps=1e-6, rope_theta=1e6, qk_norm=True, tie_embeddings=True,
                            max_context_len=40960, bos_id=None, eos_ids=[151645]),
    "llama3-8b": LlmConfig(arch="llama", dim=4096, n_layers=32, n_heads=32, n_kv_heads=8, hidden_dim=14336,
                           vocab_size=128256, rope_theta=5e5, tie_embeddings=False, max_context_len=8192,
                           bos_id=128000, eos_ids=[128001, 128009]),
}


def random_int4(n: int, k: int, group_size: int, gen: torch.Generator, name: str) -> Int4Tensor:
    check_group_size(name, k, group_size)
    g = k // group_size
    return Int4Tensor(
        qdata=torch.randint(-128, 128, (n, k // 2), dtype=torch.int8, generator=gen),
        scale=(torch.rand(g, n, generator=gen) * 0.003 + 0.001).to(torch.bfloat16),
        zero_point=(torch.randn(g, n, generator=gen) * 0.01).to(torch.bfloat16),
        block_size=[1, group_size],
        shape=torch.Size([n, k]),
    )


def preset_config(name: str, **overrides) -> LlmConfig:
    if name not in PRESETS:
        raise Int4CudaError(f"unknown preset '{name}'; presets: {', '.join(PRESETS)}")
    cfg = dataclasses.replace(PRESETS[name], **overrides)
    cfg.eos_ids = list(cfg.eos_ids)
    return cfg


def load_preset(name: str, group_size: int = 32, progress=None, seed: int = 0, **overrides):
    """(config, state_dict) with random weights for preset `name` (fields overridable for tests)."""
    cfg = preset_config(name, **overrides)
    gen = torch.Generator().manual_seed(seed)
    hd, d = cfg.head_dim, cfg.dim
    emb = torch.randn(cfg.vocab_size, d, generator=gen, dtype=torch.bfloat16).mul_(0.02)  # no f32 copy
    st: Dict[str, torch.Tensor] = {"tok_embeddings.weight": emb,
                                   "norm.weight": torch.ones(d, dtype=torch.bfloat16)}
    shapes = {"attention.wq": (cfg.n_heads * hd, d), "attention.wk": (cfg.n_kv_heads * hd, d),
              "attention.wv": (cfg.n_kv_heads * hd, d), "attention.wo": (d, cfg.n_heads * hd),
              "feed_forward.w1": (cfg.hidden_dim, d), "feed_forward.w3": (cfg.hidden_dim, d),
              "feed_forward.w2": (d, cfg.hidden_dim)}
    layers = range(cfg.n_layers) if progress is None else progress(range(cfg.n_layers), desc=f"generating {name}", unit="layer")
    for i in layers:
        p = f"layers.{i}."
        for w, (n, k) in shapes.items():
            st[p + w + ".weight"] = random_int4(n, k, group_size, gen, p + w)
            if cfg.qkv_bias and w in ("attention.wq", "attention.wk", "attention.wv"):
                st[p + w + ".bias"] = (torch.randn(n, generator=gen) * 0.01).to(torch.bfloat16)
        st[p + "attention_norm.weight"] = torch.ones(d, dtype=torch.bfloat16)
        st[p + "ffn_norm.weight"] = torch.ones(d, dtype=torch.bfloat16)
        if cfg.qk_norm:
            st[p + "attention.q_norm.weight"] = torch.ones(hd, dtype=torch.bfloat16)
            st[p + "attention.k_norm.weight"] = torch.ones(hd, dtype=torch.bfloat16)
    if not cfg.tie_embeddings:
        st["output.weight"] = random_int4(cfg.vocab_size, d, group_size, gen, "output")
    return cfg, st
