"""GGUF import: Q4 codes copied exactly, config read, bad files refused by name."""
import gguf
import numpy as np
import pytest
import torch

from int4_cuda import CoalescedInt4Tensor
from int4_cuda.llm.gguf_source import GgufError, default_gguf, load_gguf, q4_to_int4

SMOL = default_gguf()


def test_default_gguf_is_smollm2_config():
    cfg, state, reader, notes = load_gguf(SMOL)
    assert (cfg.arch, cfg.dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.hidden_dim, cfg.vocab_size) == \
        ("llama", 576, 30, 9, 3, 64, 1536, 49152)
    assert cfg.rope_theta == 1e5 and cfg.rope_interleaved and cfg.tie_embeddings and cfg.bos_id == 1 and cfg.eos_ids == [2]
    assert notes == [] and "output.weight" not in state
    assert state["layers.0.attention.wq.weight"].block_size == [1, 32]


def _bound_ok(ref, ours, scale, zero):
    """|ours - ref| within bf16 rounding of scale and zero: |q| ulp(d)/2 + ulp(z)/2, q <= 15."""
    bound = 16 * np.abs(scale) * 2.0**-8 + np.abs(zero) * 2.0**-8 + 1e-6
    return np.all(np.abs(ours - ref) <= bound)


def test_smollm2_q4_1_codes_reproduce_ggufs_own_dequantization():
    reader = gguf.GGUFReader(SMOL)
    _, state, _, _ = load_gguf(SMOL)
    from int4_cuda.llm.gguf_source import module_name
    checked = 0
    for t in reader.tensors:
        if t.tensor_type.name != "Q4_1" or checked >= 14:
            continue
        ref = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64)
        w = state[module_name(t.name)[0]]
        c = CoalescedInt4Tensor.from_int4_tensor(w)
        ours = c.dequantize(torch.float64).numpy()
        s = np.repeat(c.scale.double().numpy(), 32, 1)
        z = np.repeat(c.zero.double().numpy(), 32, 1)
        assert _bound_ok(ref, ours, s, z), t.name
        checked += 1
    assert checked == 14


@pytest.mark.parametrize("qtype", ["Q4_0", "Q4_1"])
def test_synthetic_q4_blocks(seed, qtype):
    n, k = 24, 256
    w = (np.random.randn(n, k) * np.random.rand(n, 1)).astype(np.float32)
    qt = gguf.GGMLQuantizationType[qtype]
    data = gguf.quants.quantize(w, qt)
    ref = gguf.quants.dequantize(data, qt).astype(np.float64)
    c = CoalescedInt4Tensor.from_int4_tensor(q4_to_int4(data, qtype, n, k))
    ours = c.dequantize(torch.float64).numpy()
    s = np.repeat(c.scale.double().numpy(), 32, 1)
    z = np.repeat(c.zero.double().numpy(), 32, 1)
    assert _bound_ok(ref, ours, s, z)
    if qtype == "Q4_0":
        assert torch.all(c.zero == 0)


def _write_gguf(path, arch="llama", tensors=()):
    wr = gguf.GGUFWriter(str(path), arch)
    wr.add_block_count(1)
    wr.add_embedding_length(64)
    wr.add_feed_forward_length(128)
    wr.add_head_count(4)
    wr.add_context_length(256)
    for name, arr, qtype in tensors:
        wr.add_tensor(name, arr, raw_dtype=qtype)
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()


def test_other_architecture_and_bad_files_are_refused(tmp_path):
    _write_gguf(tmp_path / "g.gguf", arch="gpt2")
    with pytest.raises(GgufError, match=r"architecture 'gpt2' is not supported"):
        load_gguf(str(tmp_path / "g.gguf"))
    (tmp_path / "junk.gguf").write_bytes(b"GGUF" + b"\xff" * 64)
    with pytest.raises(GgufError, match="not a readable GGUF file"):
        load_gguf(str(tmp_path / "junk.gguf"))
    with pytest.raises(GgufError, match="GGUF file not found"):
        load_gguf(str(tmp_path / "missing.gguf"))


def test_unknown_tensor_is_refused_by_name(tmp_path):
    _write_gguf(tmp_path / "t.gguf", tensors=[("blk.0.attn_mystery.weight", np.zeros((4, 4), np.float32), None)])
    with pytest.raises(GgufError, match=r"tensor 'blk.0.attn_mystery.weight' has no place"):
        load_gguf(str(tmp_path / "t.gguf"))
