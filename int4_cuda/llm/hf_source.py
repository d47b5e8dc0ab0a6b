"""Hugging Face checkpoint folder -> (LlmConfig, weights): config.json + single or sharded
*.safetensors, read one tensor at a time (linears are quantized to int4 as they are read, so the
bf16 model is never whole in memory). Tokenizer files are copied next to the export."""
from __future__ import annotations

import json
import os
import shutil
from typing import Dict, Optional

import torch

from int4_cuda.backend import quantize_int4
from int4_cuda.errors import Int4CudaError

from .config import LlmConfig, RopeScaling

ARCHITECTURES = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral",
                 "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3"}
_LINEAR = {"self_attn.q_proj": "attention.wq", "self_attn.k_proj": "attention.wk", "self_attn.v_proj": "attention.wv",
           "self_attn.o_proj": "attention.wo", "mlp.gate_proj": "feed_forward.w1", "mlp.up_proj": "feed_forward.w3",
           "mlp.down_proj": "feed_forward.w2"}
_OTHER = {"input_layernorm": "attention_norm", "post_attention_layernorm": "ffn_norm",
          "self_attn.q_norm": "attention.q_norm", "self_attn.k_norm": "attention.k_norm"}


def _ids(x):
    return [] if x is None else ([int(x)] if isinstance(x, int) else [int(i) for i in x])


def read_config(folder: str) -> LlmConfig:
    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        raise Int4CudaError(f"{folder}: no config.json; a Hugging Face checkpoint folder holds config.json and *.safetensors")
    c = json.load(open(path))
    archs = c.get("architectures") or []
    arch = next((ARCHITECTURES[a] for a in archs if a in ARCHITECTURES), None)
    if arch is None:
        raise Int4CudaError(f"{path}: architecture {archs or c.get('model_type')} is not supported; "
                            f"supported: {', '.join(ARCHITECTURES)}")
    rs = c.get("rope_scaling") or c.get("rope_parameters")
    scaling = None
    if rs and rs.get("rope_type", rs.get("type")) == "llama3":
        scaling = RopeScaling(float(rs["factor"]), float(rs.get("low_freq_factor", 1.0)), float(rs.get("high_freq_factor", 4.0)),
                              int(rs.get("original_max_position_embeddings", 8192)))
    elif rs and rs.get("rope_type", rs.get("type")) not in (None, "default"):
        raise Int4CudaError(f"{path}: rope_scaling type '{rs.get('rope_type', rs.get('type'))}' is not supported (llama3 or none)")
    theta = c.get("rope_theta") or (rs or {}).get("rope_theta") or 10000.0
    n_heads = c["num_attention_heads"]
    return LlmConfig(
        arch=arch, dim=c["hidden_size"], n_layers=c["num_hidden_layers"], n_heads=n_heads,
        n_kv_heads=c.get("num_key_value_heads") or n_heads, hidden_dim=c["intermediate_size"],
        vocab_size=c["vocab_size"], head_dim=c.get("head_dim") or c["hidden_size"] // n_heads,
        norm_eps=float(c.get("rms_norm_eps", 1e-6)), rope_theta=float(theta), rope_interleaved=False,
        rope_scaling=scaling, tie_embeddings=bool(c.get("tie_word_embeddings", False)),
        qkv_bias=arch == "qwen2" or bool(c.get("attention_bias", False)), qk_norm=arch == "qwen3",
        max_context_len=int(c.get("max_position_embeddings", 2048)),
        max_seq_len=int(c.get("max_position_embeddings", 2048)),
        bos_id=c.get("bos_token_id"), eos_ids=_ids(c.get("eos_token_id")),
    )


def module_name(hf: str) -> Optional[tuple]:
    """(our name, is_linear_weight) for a checkpoint tensor name; None for tensors we skip."""
    if hf in ("model.embed_tokens.weight",):
        return "tok_embeddings.weight", False
    if hf == "model.norm.weight":
        return "norm.weight", False
    if hf == "lm_head.weight":
        return "output.weight", True
    if hf.startswith("model.layers."):
        rest = hf[len("model.layers."):]
        i, _, tail = rest.partition(".")
        base, _, kind = tail.rpartition(".")
        if base in _LINEAR:
            return f"layers.{i}.{_LINEAR[base]}.{kind}", kind == "weight"
        if base in _OTHER:
            return f"layers.{i}.{_OTHER[base]}.{kind}", False
    if hf.endswith("rotary_emb.inv_freq"):
        return None
    raise Int4CudaError(f"checkpoint tensor '{hf}' has no place in the Llama-family decoder")


def load_hf_folder(folder: str, group_size: int = 32, progress=None):
    from safetensors import safe_open

    cfg = read_config(folder)
    files = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
    if not files:
        raise Int4CudaError(f"{folder}: no *.safetensors weights (only safetensors checkpoints are read)")
    state: Dict[str, torch.Tensor] = {}
    names = []
    for f in files:
        with safe_open(os.path.join(folder, f), framework="pt") as st:
            names += [(f, k) for k in st.keys()]
    it = names if progress is None else progress(names, desc="reading checkpoint", unit="tensor")
    opened = {}
    for f, key in it:
        m = module_name(key)
        if m is None:
            continue
        name, is_linear = m
        if f not in opened:
            opened.clear()
            opened[f] = safe_open(os.path.join(folder, f), framework="pt")
        t = opened[f].get_tensor(key).to(torch.bfloat16)
        state[name] = quantize_int4(t, group_size, name=f"{key}") if is_linear else t
    if cfg.tie_embeddings:
        state.pop("output.weight", None)
    elif "output.weight" not in state:
        raise Int4CudaError(f"{folder}: config says tie_word_embeddings=false but there is no lm_head.weight")
    return cfg, state


def copy_tokenizer(folder: str, out_dir: str) -> Optional[str]:
    src = os.path.join(folder, "tokenizer.json")
    if not os.path.isfile(src):
        print(f"note: {folder} has no tokenizer.json; none written (int4-cuda generate will need --tokenizer)")
        return None
    os.makedirs(out_dir, exist_ok=True)
    dst = os.path.join(out_dir, "tokenizer.json")
    if os.path.abspath(src) != os.path.abspath(dst):
        shutil.copyfile(src, dst)
        cfgf = os.path.join(folder, "tokenizer_config.json")
        if os.path.isfile(cfgf):
            shutil.copyfile(cfgf, os.path.join(out_dir, "tokenizer_config.json"))
    return dst
