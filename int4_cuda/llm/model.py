"""The decoder: Llama 2/3/3.x, SmolLM2, Mistral, Qwen2/2.5 (q/k/v bias), Qwen3 (q/k RMSNorm).

Two modes share the weights:
- export (`export_mode=True`): every step is an int4_cuda op — int4 linears, rms_norm,
  int4_cuda::rope, int4_cuda::kv_attention (the delegate owns the KV cache) — so the whole decoder
  lands in the delegate. forward(tokens [1, T] int64, input_pos [1] int64) -> logits.
- eager (default): plain PyTorch with no KV cache (whole sequence from position 0, causal SDPA,
  complex-number RoPE): the independent reference the exported program is tested against.

Numerics: the residual stream and the RMSNorms run in float32 (norm weights are float32). Every
linear's input is the model's activation dtype (`Transformer(cfg, dtype)`, export_llm --dtype),
and q/k/v, RoPE, attention (and so the KV cache) and SwiGLU run in it; every matmul accumulates in
float32:
- bfloat16 (default): the linears take and return bf16. Keeping the residual in bf16 too (as a
  plain `model.to(bfloat16)` would) costs SmolLM2 7-10 dB of logit SQNR at its worst positions;
  the bf16 linear inputs themselves cap it at 26-33 dB vs float32 (docs/notes/numerics.md).
- float32: the linears take and return float32; int4 weights are still dequantized and rounded
  once to bf16 (the same weight values as the bf16 path, backend/ops.py), and a plain bf16 weight
  (the tied embedding as lm_head) is read as bf16 by int4_cuda::linear, so the final hidden state
  is never rounded. Nothing is rounded to bf16 but the weights: ~90-110 dB vs float32 eager on
  the same bf16 weights. The cost: activations and KV cache take twice the memory.
A float32 eager reference is `Transformer(cfg, torch.float32)` with float32 weights.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchao.quantization import Int4Tensor
from torchao.utils import TorchAOBaseTensor

import int4_cuda.backend  # noqa: F401  (torch.ops.int4_cuda.*)
from int4_cuda.backend.ops import split_qkv

from .config import LlmConfig, rope_tables

# export_llm --dtype names -> the activation dtype of every linear's input.
ACTIVATION_DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def linear(x, w, bias=None):
    """x @ w^T (+ bias) in x's dtype, for every kind of weight the decoder holds: int4 weights
    (torchao tensor subclasses; int4_plain_mm takes bf16 or f32 x) and plain weights of x's dtype
    through F.linear; a plain weight of another dtype (bf16 under f32 activations) through
    int4_cuda::linear, which reads it as stored: F.linear refuses mixed dtypes, and a cast would
    store the weight a second time. A bias of another dtype promotes the result (int4 path)."""
    if isinstance(w, TorchAOBaseTensor) or w.dtype == x.dtype:
        return F.linear(x, w, bias)
    return torch.ops.int4_cuda.linear(x, w, bias)


class Linear(nn.Linear):
    """nn.Linear whose weight need not have its input's dtype (see `linear`)."""

    def forward(self, x):
        return linear(x, self.weight, self.bias)


class Attention(nn.Module):
    def __init__(self, cfg: LlmConfig, layer: int):
        super().__init__()
        self.cfg, self.layer = cfg, layer
        hd = cfg.head_dim
        self.wq = Linear(cfg.dim, cfg.n_heads * hd, bias=cfg.qkv_bias)
        self.wk = Linear(cfg.dim, cfg.n_kv_heads * hd, bias=cfg.qkv_bias)
        self.wv = Linear(cfg.dim, cfg.n_kv_heads * hd, bias=cfg.qkv_bias)
        self.wo = Linear(cfg.n_heads * hd, cfg.dim, bias=False)
        if cfg.qk_norm:
            self.q_norm = nn.RMSNorm(hd, eps=cfg.norm_eps)
            self.k_norm = nn.RMSNorm(hd, eps=cfg.norm_eps)

    def fuse(self):
        """One q|k|v projection (exact: int4 metadata is per output row). Not for q/k-norm models,
        whose per-head norms sit between the projection and RoPE."""
        fused = None if self.cfg.qk_norm else fuse_linears([self.wq, self.wk, self.wv])
        if fused is not None:
            self.wqkv = fused
            del self.wq, self.wk, self.wv

    def forward(self, x, input_pos, cos, sin, export_mode: bool):
        b, t, _ = x.shape
        c = self.cfg
        if hasattr(self, "wqkv"):
            qkv = self.wqkv(x)
            if export_mode:  # rope(q), rope(k) and the cached attention in one op
                y = torch.ops.int4_cuda.qkv_attention(qkv, cos, sin, input_pos, c.n_heads, c.n_kv_heads,
                                                      c.rope_interleaved, self.layer, c.max_seq_len)
                return self.wo(y)
            q, k, v = split_qkv(qkv, c.n_heads, c.n_kv_heads)
        else:
            q = self.wq(x).view(b, t, c.n_heads, c.head_dim)
            k = self.wk(x).view(b, t, c.n_kv_heads, c.head_dim)
            v = self.wv(x).view(b, t, c.n_kv_heads, c.head_dim)
        if c.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        if export_mode:
            q = torch.ops.int4_cuda.rope(q, cos, sin, input_pos, c.rope_interleaved)
            k = torch.ops.int4_cuda.rope(k, cos, sin, input_pos, c.rope_interleaved)
            y = torch.ops.int4_cuda.kv_attention(q, k, v, input_pos, self.layer, c.max_seq_len)
        else:
            q, k = _rope_complex(q, cos[:t], sin[:t], c.rope_interleaved), _rope_complex(k, cos[:t], sin[:t], c.rope_interleaved)
            y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                               is_causal=True, enable_gqa=True).transpose(1, 2)
        return self.wo(y.reshape(b, t, c.n_heads * c.head_dim))


def _rope_complex(x, cos, sin, interleaved):
    """Eager RoPE through complex multiplication (independent of int4_cuda::rope)."""
    d = x.shape[-1]
    xf = x.float()
    pairs = torch.stack([xf[..., 0::2], xf[..., 1::2]], -1) if interleaved else torch.stack([xf[..., : d // 2], xf[..., d // 2:]], -1)
    z = torch.view_as_complex(pairs.contiguous()) * torch.complex(cos, sin)[None, :, None, :]
    r = torch.view_as_real(z)
    out = r.flatten(-2) if interleaved else torch.cat([r[..., 0], r[..., 1]], -1)
    return out.to(x.dtype)


class FeedForward(nn.Module):
    def __init__(self, cfg: LlmConfig):
        super().__init__()
        self.w1 = Linear(cfg.dim, cfg.hidden_dim, bias=False)  # gate
        self.w3 = Linear(cfg.dim, cfg.hidden_dim, bias=False)  # up
        self.w2 = Linear(cfg.hidden_dim, cfg.dim, bias=False)  # down

    def fuse(self):
        """One gate|up projection followed by int4_cuda::swiglu (the same roundings as below)."""
        fused = fuse_linears([self.w1, self.w3])
        if fused is not None:
            self.w13 = fused
            del self.w1, self.w3

    def forward(self, x):
        if hasattr(self, "w13"):
            return self.w2(torch.ops.int4_cuda.swiglu(self.w13(x)))
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


def fuse_linears(linears) -> Optional[Linear]:
    """Linear whose output rows are those of `linears` in order: torchao Int4Tensor weights are
    concatenated code-, scale- and zero-wise (per-row metadata, so exact), plain weights as they are.
    None when they cannot share one kernel (int4 mixed with plain, or different group sizes or
    dtypes, as a GGUF with per-tensor types can have). The inputs' storage is released as the
    caller deletes them."""
    ws = [m.weight for m in linears]
    n = sum(w.shape[0] for w in ws)
    if all(isinstance(w, Int4Tensor) for w in ws):
        if len({tuple(w.block_size) for w in ws}) != 1:
            return None
        w = Int4Tensor(qdata=torch.cat([w.qdata for w in ws]), scale=torch.cat([w.scale for w in ws], dim=1),
                       zero_point=torch.cat([w.zero_point for w in ws], dim=1), block_size=list(ws[0].block_size),
                       shape=torch.Size([n, ws[0].shape[1]]))
    elif not any(isinstance(w, Int4Tensor) for w in ws) and len({w.dtype for w in ws}) == 1:
        w = torch.cat([w.detach() for w in ws])
    else:
        return None
    biases = [m.bias for m in linears]
    fused = Linear(ws[0].shape[1], n, bias=biases[0] is not None, device="meta")
    fused.weight = nn.Parameter(w, requires_grad=False)
    if biases[0] is not None:
        fused.bias = nn.Parameter(torch.cat([b.detach() for b in biases]), requires_grad=False)
    return fused


class Block(nn.Module):
    def __init__(self, cfg: LlmConfig, layer: int):
        super().__init__()
        self.attention_norm = nn.RMSNorm(cfg.dim, eps=cfg.norm_eps)
        self.attention = Attention(cfg, layer)
        self.ffn_norm = nn.RMSNorm(cfg.dim, eps=cfg.norm_eps)
        self.feed_forward = FeedForward(cfg)

    def forward(self, x, input_pos, cos, sin, export_mode, act_dtype):
        # x is the residual stream in float32 (as llama.cpp keeps it); the linears see act_dtype.
        x = x + self.attention(self.attention_norm(x).to(act_dtype), input_pos, cos, sin, export_mode).float()
        return x + self.feed_forward(self.ffn_norm(x).to(act_dtype)).float()


class Transformer(nn.Module):
    def __init__(self, cfg: LlmConfig, dtype: torch.dtype = torch.bfloat16):
        super().__init__()
        if dtype not in ACTIVATION_DTYPES.values():
            raise ValueError(f"activation dtype {dtype} is not supported; use torch.bfloat16 or torch.float32")
        self.cfg = cfg
        self.act_dtype = dtype  # every linear's input (module docstring)
        self.export_mode = False
        self.full_logits = False  # export: logits of every position instead of the last one
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.norm = nn.RMSNorm(cfg.dim, eps=cfg.norm_eps)
        self.output = None if cfg.tie_embeddings else Linear(cfg.dim, cfg.vocab_size, bias=False)
        cos, sin = rope_tables(cfg)
        self.register_buffer("freqs_cos", cos, persistent=False)
        self.register_buffer("freqs_sin", sin, persistent=False)

    def fuse_projections(self):
        """Fused q|k|v and gate|up projections for export: fewer, larger int4 matvecs and no
        slice/rope/silu chains in a decode step (exact; see Attention.fuse, FeedForward.fuse)."""
        for layer in self.layers:
            layer.attention.fuse()
            layer.feed_forward.fuse()
        return self

    def forward(self, tokens: torch.Tensor, input_pos: torch.Tensor) -> torch.Tensor:
        x = self.tok_embeddings(tokens).float()
        for layer in self.layers:
            x = layer(x, input_pos, self.freqs_cos, self.freqs_sin, self.export_mode, self.act_dtype)
        if self.export_mode and not self.full_logits:
            x = x[:, -1, :]
        w = self.tok_embeddings.weight if self.output is None else self.output.weight
        x = self.norm(x).to(self.act_dtype)  # under f32 activations: never rounded to the table's bf16
        if self.export_mode or isinstance(w, TorchAOBaseTensor) or w.dtype == x.dtype:
            return linear(x, w).float()
        return F.linear(x.float(), w.float()).to(x.dtype).float()  # eager: plain PyTorch, same math


def llm_constant_methods(cfg: LlmConfig) -> dict:
    """ExecuTorch LLM-runner metadata, exported as constant methods of the .pte."""
    return {
        "get_max_seq_len": cfg.max_seq_len,
        "get_max_context_len": cfg.max_seq_len,
        "get_vocab_size": cfg.vocab_size,
        "get_bos_id": cfg.bos_id if cfg.bos_id is not None else -1,
        "get_eos_ids": list(cfg.eos_ids),
        "use_kv_cache": True,
        "enable_dynamic_shape": True,
        "get_n_layers": cfg.n_layers,
    }
