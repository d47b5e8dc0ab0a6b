"""LlmConfig: every hyper-parameter the decoder needs, whatever the source."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import List, Optional

import torch


@dataclass
class RopeScaling:
    """Llama 3.x frequency scaling (rope_type "llama3")."""

    factor: float = 8.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


@dataclass
class LlmConfig:
    arch: str                 # "llama", "qwen2", "qwen3", "mistral"
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    hidden_dim: int
    vocab_size: int
    head_dim: Optional[int] = None
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_interleaved: bool = False   # True: GGUF/Meta (pairs 2i, 2i+1); False: Hugging Face half-split
    rope_scaling: Optional[RopeScaling] = None
    tie_embeddings: bool = False
    qkv_bias: bool = False           # Qwen2/2.5
    qk_norm: bool = False            # Qwen3
    max_context_len: int = 2048      # what the model was trained for (upper bound for the cache)
    max_seq_len: int = 2048          # KV-cache length of the export
    bos_id: Optional[int] = None
    eos_ids: List[int] = field(default_factory=list)

    def __post_init__(self):
        if self.head_dim is None:
            self.head_dim = self.dim // self.n_heads
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}")

    def to_dict(self) -> dict:
        return asdict(self)


def rope_tables(cfg: LlmConfig):
    """cos, sin [max_seq_len, head_dim/2] float32 for positions 0..max_seq_len-1."""
    d = cfg.head_dim
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    s = cfg.rope_scaling
    if s is not None:
        low_wl = s.original_max_position_embeddings / s.low_freq_factor
        high_wl = s.original_max_position_embeddings / s.high_freq_factor
        wl = 2 * math.pi / inv
        smooth = (s.original_max_position_embeddings / wl - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor)
        scaled = torch.where(wl > low_wl, inv / s.factor, inv)
        mid = (wl <= low_wl) & (wl >= high_wl)
        inv = torch.where(mid, (1 - smooth) * inv / s.factor + smooth * inv, scaled)
    ang = torch.outer(torch.arange(cfg.max_seq_len, dtype=torch.float64), inv)
    return ang.cos().float(), ang.sin().float()
