"""CPU checks of the issue #7 benchmark scripts (benchmarks/peers_e2e.py, benchmarks/e2e_decode.py):
the peers' decoder against int4_cuda.llm.model's reference, byte counts against published
parameter counts, and the runner-stats parser. Nothing here is timed."""
import importlib.util
import json
import os
import sys

import pytest
import torch

BENCH = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks")


def _load(name):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, os.path.join(BENCH, name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


pe = _load("peers_e2e")
ed = _load("e2e_decode")


@pytest.mark.parametrize("name", list(pe.selftest_configs()))
def test_peer_decoder_matches_reference(name):
    """Prefill + KV-cache decode of the peers' decoder == the eager reference (no cache, complex
    RoPE) in float32; the other RoPE convention is far off, so the check sees the convention."""
    cfg = pe.selftest_configs()[name]
    assert pe.selftest_case(cfg) < 1e-4
    assert pe.selftest_case(cfg, wrong_rope=True) > 0.1
    assert pe.selftest_case(cfg, dtype=torch.bfloat16) < 0.1  # bf16 residual, as benchmarked


def test_weight_bytes_against_parameter_counts():
    from int4_cuda.llm.presets import preset_config

    # Meta-Llama-3-8B has 8,030,261,248 parameters; SmolLM2-135M 134,515,008 (tied embeddings).
    # bf16: every weight once at 2 B, the embedding table replaced by one row (+ the tied head
    # reads the whole table once).
    l8, s = preset_config("llama3-8b"), preset_config("smollm2-135m")
    assert pe.weight_bytes_per_token(l8, 32, "bf16") == 2 * (8_030_261_248 - 128256 * 4096) + 2 * 4096
    assert pe.weight_bytes_per_token(s, 32, "bf16") == 2 * 134_515_008 + 2 * 576
    # int4 g32 Llama-3-8B: 4.69 GB read per token (DESIGN.md, the gpt-fast peer's count)
    assert abs(pe.weight_bytes_per_token(l8, 32, "int4") / 4.69e9 - 1) < 0.002


def _observer(prefill_tps, decode_tps, free_after_load, free_after_gen, prompt=128):
    return {"prompt_tokens": prompt, "generated_tokens": 256, "prefill_tokens_per_s": prefill_tps,
            "decode_tokens_per_s": decode_tps, "time_to_first_token_ms": 11, "gpu_total_bytes": 85_000_000_000,
            "gpu_free_before_load_bytes": 80_000_000_000, "gpu_free_after_load_bytes": free_after_load,
            "gpu_free_after_generate_bytes": free_after_gen, "load_time_ms": 900, "decode_steps": 255,
            "cuda_graph": True, "cuda_graph_replays": 254, "stop_reason": "max_new_tokens"}


def test_runner_stats_parser():
    """Text the runner streams, then one stats line per timed iteration (any text before it)."""
    lines = [_observer(12800.0, 100.0, 75_000_000_000, 74_000_000_000),
             _observer(25600.0, 300.0, 75_000_000_000, 74_000_000_000),
             _observer(6400.0, 200.0, 75_000_000_000, 74_500_000_000)]
    text = ("The bridge, {\"not\": stats}\nPyTorchObserver " + json.dumps(lines[0]) + "\n"
            + "more words PyTorchObserver " + json.dumps(lines[1]) + "\n\nPyTorchObserver " + json.dumps(lines[2]) + "\n")
    got = ed.parse_observer(text)
    assert got == lines
    s = ed.summarize_runner(got)
    assert s["iterations"] == 3
    assert s["decode_tps"] == 200.0 and s["prefill_tps"] == 12800.0
    assert s["prefill_ms"] == pytest.approx(10.0)  # 128 tokens at 12,800 tok/s (median of 10, 5, 20 ms)
    assert s["device_used_bytes"] == 80_000_000_000 - 74_500_000_000  # the last iteration's stats
    assert ed.summarize_runner([]) == {"error": "no PyTorchObserver line"}
