"""Hugging Face folders: tiny random Llama (llama3 rope scaling), Qwen2 (q/k/v bias) and Qwen3
(q/k norm) checkpoints written here with safetensors, exported, and checked against
transformers' own implementation running the same (dequantized) weights."""
import os

import pytest
import torch

import int4_cuda
from int4_cuda import CoalescedInt4Tensor
from int4_cuda.errors import Int4CudaError
from int4_cuda.llm.export_llm import export_llm
from int4_cuda.llm.hf_source import load_hf_folder

from testutil import sqnr_db

transformers = pytest.importorskip("transformers")

COMMON = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, vocab_size=512, max_position_embeddings=512, rms_norm_eps=1e-5)


def make_checkpoint(kind, folder, sharded=False):
    torch.manual_seed(0)
    if kind == "llama":
        cfg = transformers.LlamaConfig(**COMMON, rope_theta=500000.0, tie_word_embeddings=False,
                                       rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                     "high_freq_factor": 4.0, "original_max_position_embeddings": 64})
        model = transformers.LlamaForCausalLM(cfg)
    elif kind == "qwen2":
        model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**COMMON, tie_word_embeddings=True))
    else:
        model = transformers.Qwen3ForCausalLM(transformers.Qwen3Config(**COMMON, head_dim=32, tie_word_embeddings=True))
    with torch.no_grad():  # non-trivial norms and biases (defaults are ones / zeros)
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
            elif name.endswith(".bias"):
                p.normal_(0, 0.1)
    model = model.to(torch.bfloat16)
    model.save_pretrained(folder, safe_serialization=True, max_shard_size="100KB" if sharded else "10GB")
    return model


@pytest.mark.parametrize("kind,sharded,dtype", [("llama", True, "bf16"), ("qwen2", False, "bf16"), ("qwen3", False, "bf16"),
                                                ("qwen2", False, "fp32")])  # fp32: bf16 q/k/v biases promote
def test_hf_folder_export_matches_transformers(tmp_path, kind, sharded, dtype):
    ckpt = tmp_path / "ckpt"
    model = make_checkpoint(kind, str(ckpt), sharded)
    assert sharded == (len([f for f in os.listdir(ckpt) if f.endswith(".safetensors")]) > 1)
    r = export_llm(checkpoint=str(ckpt), output_dir=str(tmp_path / "out"), max_seq_length=64, full_logits=True,
                   dtype=dtype)
    # transformers' model with our int4 weights (dequantized), computing in float32
    _, state = load_hf_folder(str(ckpt), 32)
    ref = model.float().eval()
    names = {"attention.wq": "self_attn.q_proj", "attention.wk": "self_attn.k_proj", "attention.wv": "self_attn.v_proj",
             "attention.wo": "self_attn.o_proj", "feed_forward.w1": "mlp.gate_proj", "feed_forward.w3": "mlp.up_proj",
             "feed_forward.w2": "mlp.down_proj"}
    with torch.no_grad():
        for k, v in state.items():
            if not hasattr(v, "block_size"):
                continue
            w = CoalescedInt4Tensor.from_int4_tensor(v).dequantize(torch.float32)
            if dtype == "fp32":  # the weights as its kernels use them: rounded once to bf16
                w = w.to(torch.bfloat16).float()
            if k == "output.weight":
                ref.lm_head.weight.copy_(w)
                continue
            i, rest = k.split(".", 2)[1], k.split(".", 2)[2].rsplit(".", 1)[0]
            layer = ref.model.layers[int(i)]
            mod = layer
            for part in names[rest].split("."):
                mod = getattr(mod, part)
            mod.weight.copy_(w)
        tokens = torch.randint(0, 512, (1, 24))
        want = ref(tokens).logits[0]
    prog = int4_cuda.load(r["pte"])
    (got,) = prog.run("forward", tokens, torch.tensor([0]))
    got = got[0]
    assert got.shape == want.shape
    # fp32: transformers' float32 model on the same bf16 weights, only summation order differs
    # (measured 100.8 dB; bf16 exports 44-48 dB against unrounded weights)
    assert sqnr_db(want, got) >= (80 if dtype == "fp32" else 30), f"{kind} {dtype}: {sqnr_db(want, got):.1f} dB"


def test_hf_folder_errors(tmp_path):
    with pytest.raises(Int4CudaError, match="no config.json"):
        load_hf_folder(str(tmp_path))
    (tmp_path / "config.json").write_text('{"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}')
    with pytest.raises(Int4CudaError, match=r"architecture \['GPT2LMHeadModel'\] is not supported"):
        load_hf_folder(str(tmp_path))
