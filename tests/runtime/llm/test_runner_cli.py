"""int4_cuda_runner's command line and error paths, without a GPU: each failure names the file or
flag and the fix, and exits non-zero (2: bad command line, 1: everything else)."""
import json
import os
import subprocess

import pytest



def run(binary, *args, timeout=120):
    return subprocess.run([str(binary), *map(str, args)], check=False, capture_output=True, text=True, timeout=timeout)


def have_gpu():
    from int4_cuda import cuda_runtime

    try:
        return cuda_runtime.available()[0]
    except Exception:  # noqa: BLE001 (no runtime library: no GPU either)
        return False


@pytest.mark.parametrize("args,needle", [
    ([], "--model_path is required"),
    (["--model_path", "m.pte"], "--tokenizer_path is required"),
    (["--model_path", "m.pte", "--tokenizer_path", "t.json"], "exactly one of --prompt and --prompt_file"),
    (["--model_path", "m.pte", "--tokenizer_path", "t.json", "--prompt", "a", "--prompt_file", "f"], "exactly one"),
    (["--model_path", "m.pte", "--tokenizer_path", "t.json", "--prompt", "a", "--bogus", "1"], "unknown flag --bogus"),
    (["--model_path", "m.pte", "--tokenizer_path", "t.json", "--prompt", "a", "--temperature", "hot"],
     "bad value 'hot' for --temperature"),
    (["--model_path", "m.pte", "--tokenizer_path", "t.json", "--prompt", "a", "--max_new_tokens=0"], "--max_new_tokens"),
    (["--model_path", "m.pte", "--tokenizer_path", "t.json", "--prompt", "a", "--top_p", "0"], "--top_p"),
    (["--model_path", "m.pte", "--tokenizer_path", "t.json", "--prompt", "a", "--cuda_graph", "maybe"], "--cuda_graph"),
    (["--model_path", "m.pte", "--tokenizer_path", "t.json", "--prompt"], "--prompt needs a value"),
    (["stray"], "unexpected argument 'stray'"),
])
def test_bad_command_line(runner_bin, args, needle):
    r = run(runner_bin, *args)
    assert r.returncode == 2 and needle in r.stderr and "usage:" in r.stderr, r.stderr


def test_help(runner_bin):
    r = run(runner_bin, "--help")
    assert r.returncode == 0 and "--model_path" in r.stdout and "--cuda_graph" in r.stdout


def test_missing_files_are_named(runner_bin, tiny_export, tmp_path):
    pte, tok = tiny_export / "tiny.pte", tiny_export / "tokenizer.json"
    r = run(runner_bin, "--model_path", tmp_path / "nope.pte", "--tokenizer_path", tok, "--prompt", "hi")
    assert r.returncode == 1 and "nope.pte: model file not found" in r.stderr and "export_llm" in r.stderr
    r = run(runner_bin, "--model_path", pte, "--data_path", tmp_path / "gone.ptd", "--tokenizer_path", tok, "--prompt", "hi")
    assert r.returncode == 1 and "gone.ptd: .ptd file not found" in r.stderr
    r = run(runner_bin, "--model_path", pte, "--tokenizer_path", tmp_path / "tok.json", "--prompt", "hi")
    assert r.returncode == 1 and "tok.json: tokenizer file not found" in r.stderr and "--tokenizer_path" in r.stderr
    r = run(runner_bin, "--model_path", pte, "--tokenizer_path", tok, "--prompt_file", tmp_path / "p.txt")
    assert r.returncode == 1 and "p.txt: prompt file not found" in r.stderr


def test_bad_tokenizer_is_named(runner_bin, tiny_export, tmp_path):
    bad = tmp_path / "tokenizer.json"
    j = json.load(open(tiny_export / "tokenizer.json"))
    j["pre_tokenizer"] = {"type": "Whitespace"}
    bad.write_text(json.dumps(j))
    r = run(runner_bin, "--model_path", tiny_export / "tiny.pte", "--tokenizer_path", bad, "--prompt", "hi")
    assert r.returncode == 1 and f"{bad}: unsupported tokenizer: pre-tokenizer 'Whitespace'" in r.stderr, r.stderr
    bad.write_text("{not json")
    r = run(runner_bin, "--model_path", tiny_export / "tiny.pte", "--tokenizer_path", bad, "--prompt", "hi")
    assert r.returncode == 1 and "not a valid tokenizer.json" in r.stderr


def test_not_an_llm_program(runner_bin, tiny_export):
    legacy = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "legacy_groups_n.pte")
    r = run(runner_bin, "--model_path", legacy, "--tokenizer_path", tiny_export / "tokenizer.json", "--prompt", "hi")
    assert r.returncode == 1 and "not an LLM program" in r.stderr, r.stderr


def test_prompt_too_long_before_any_work(runner_bin, tiny_export):
    # The KV cache holds 16; ChatML with SmolLM2's system prompt is far longer. Checked before the GPU.
    r = run(runner_bin, "--model_path", tiny_export / "tiny.pte", "--tokenizer_path", tiny_export / "tokenizer.json",
            "--prompt", "What is the capital of France?", "--chat")
    assert r.returncode == 1 and "KV cache holds 16" in r.stderr and "--max_seq_length" in r.stderr, r.stderr
    r = run(runner_bin, "--model_path", tiny_export / "tiny.pte", "--tokenizer_path", tiny_export / "tokenizer.json",
            "--prompt", " ".join(["word"] * 16))
    assert r.returncode == 1 and "the prompt has 16 tokens" in r.stderr, r.stderr


@pytest.mark.skipif(have_gpu(), reason="this machine has a usable GPU")
def test_no_gpu_is_a_clear_error(runner_bin, tiny_export):
    r = run(runner_bin, "--model_path", tiny_export / "tiny.pte", "--tokenizer_path", tiny_export / "tokenizer.json",
            "--prompt", "Hi")
    assert r.returncode == 1 and "Int4CudaBackend needs an NVIDIA GPU with compute capability >= 8.0" in r.stderr
    assert "--device cpu" in r.stderr and "PyTorchObserver" not in r.stdout
