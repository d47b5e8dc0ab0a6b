"""`int4-cuda generate`: text in, streamed text out, from an exported LLM .pte.

Runs on the CUDA runtime when it is built and a GPU (sm_80+) is present, else on the CPU
reference executor, and says which. Greedy by default; --temperature > 0 samples.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Callable, List, Optional

import torch

from int4_cuda.errors import Int4CudaError


def open_program(pte: str, ptd: Optional[str], device: str = "auto"):
    """(program with .run(method, *inputs), description of where it runs)."""
    if device in ("auto", "cuda"):
        try:
            from int4_cuda import cuda_runtime
        except ImportError:
            cuda_runtime = None
        ok, why = cuda_runtime.available() if cuda_runtime else (False, "CUDA runtime not built")
        if ok:
            return cuda_runtime.CudaProgram(pte, ptd), "CUDA runtime"
        if device == "cuda":
            raise Int4CudaError(f"--device cuda: {why}")
        where = f"CPU reference executor ({why})"
    else:
        where = "CPU reference executor"
    import int4_cuda

    return int4_cuda.load(pte, ptd), where


class Generator:
    def __init__(self, program, tokenizer_path: str):
        from tokenizers import Tokenizer

        if not os.path.isfile(tokenizer_path):
            raise Int4CudaError(f"{tokenizer_path}: tokenizer not found (export_llm writes tokenizer.json beside the .pte)")
        self.prog = program
        self.tok = Tokenizer.from_file(tokenizer_path)
        const = lambda m: program.run(m)[0]  # noqa: E731
        self.max_seq_len = int(const("get_max_seq_len"))
        eos = const("get_eos_ids")
        self.eos = set(eos if isinstance(eos, list) else [eos])

    def generate(self, prompt_ids: List[int], max_new_tokens: int, temperature: float = 0.0,
                 seed: Optional[int] = None, on_text: Callable[[str], None] = lambda s: None):
        if len(prompt_ids) + 1 > self.max_seq_len:
            raise Int4CudaError(
                f"the prompt has {len(prompt_ids)} tokens; this export's KV cache holds {self.max_seq_len} "
                f"(re-export with a larger --max_seq_length, or shorten the prompt)"
            )
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        t0 = time.time()
        (logits,) = self.prog.run("forward", torch.tensor([prompt_ids], dtype=torch.long), torch.tensor([0]))
        t_first = time.time() - t0
        out: List[int] = []
        printed = ""
        pos = len(prompt_ids)
        stop = "max_new_tokens"
        while True:
            nxt = self._pick(logits.reshape(-1, logits.shape[-1])[-1], temperature, gen)
            if nxt in self.eos:
                stop = "eos"
                break
            out.append(nxt)
            text = self.tok.decode(out, skip_special_tokens=True)
            if not text.endswith("\ufffd"):  # a token may end inside a UTF-8 character
                on_text(text[len(printed):])
                printed = text
            if len(out) >= max_new_tokens:
                break
            if pos + 1 > self.max_seq_len:
                stop = "kv_cache_full"
                break
            (logits,) = self.prog.run("forward", torch.tensor([[nxt]], dtype=torch.long), torch.tensor([pos]))
            pos += 1
        dt = time.time() - t0
        return out, {"stop": stop, "prompt_tokens": len(prompt_ids), "generated_tokens": len(out),
                     "time_to_first_token_s": t_first, "decode_tokens_per_s": (len(out) - 1) / max(dt - t_first, 1e-9)}

    @staticmethod
    def _pick(logits: torch.Tensor, temperature: float, gen) -> int:
        if temperature <= 0:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        return int(torch.multinomial(probs, 1, generator=gen))


def run_generate(args) -> int:
    from .tokenizer import chatml, default_system_prompt

    prog, where = open_program(args.model, args.data, args.device)
    tok_path = args.tokenizer or os.path.join(os.path.dirname(os.path.abspath(args.model)), "tokenizer.json")
    g = Generator(prog, tok_path)
    text = chatml(args.prompt, default_system_prompt(os.path.dirname(tok_path))) if args.chat else args.prompt
    ids = g.tok.encode(text, add_special_tokens=False).ids
    print(f"[int4-cuda generate: running on the {where}]", file=sys.stderr)
    _, stats = g.generate(ids, args.max_new_tokens, args.temperature, args.seed,
                          on_text=lambda s: (sys.stdout.write(s), sys.stdout.flush()))
    print()
    msg = {"eos": "", "max_new_tokens": "", "kv_cache_full": " (stopped: the KV cache is full)"}[stats["stop"]]
    print(f"[{stats['generated_tokens']} tokens, first token after {stats['time_to_first_token_s']:.2f} s, "
          f"{stats['decode_tokens_per_s']:.1f} tokens/s{msg}]", file=sys.stderr)
    return 0


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="the .pte written by export_llm")
    p.add_argument("--data", help="its .ptd (default: the one the .pte names, next to it)")
    p.add_argument("--tokenizer", help="tokenizer.json (default: next to the .pte)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--chat", action="store_true", help="wrap the prompt in the model's ChatML chat template")
    p.add_argument("--max_new_tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
