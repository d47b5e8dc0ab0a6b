#!/usr/bin/env python3
"""Issue #7: end-to-end prefill/decode benchmark on the GPU host -- ours (int4_cuda_runner on
export_llm --backend cuda exports) against PyTorch peers with the same architecture and int4
weights (benchmarks/peers_e2e.py) -- and ONE table, printed last and written to
docs/results/e2e_decode.md.

    python3 -P benchmarks/e2e_decode.py [STAGE ...] [--models smollm2,llama3.2-1b,llama3-8b] ...

Stages (default: all, in this order; each stage saves JSON under WORK/results, so a visit can be
split over several calls while the machine stays warm):
  prompts  tokenizer.json from the SmolLM2 GGUF; prompts of exactly --prompt_len and 512 tokens
           (counted by the runner's own tokenizer, build-rt/runner/int4_cuda_tokenizer_tool; HF
           `tokenizers` if that is missing); their ids go to the peers, so all see the same prompt
  export   export_llm --backend cuda: SmolLM2 from the GGUF, the presets (random weights) with
           --preset; --max_seq_length 512 (1024 for the models that also time a 512-token prefill);
           --dtype bf16 (default) or fp32, each in its own --work folder
  ours     int4_cuda_runner --prompt_file P --max_new_tokens N --ignore_eos --warmup --num_iters I
           (greedy, CUDA-graph decode); its PyTorchObserver lines are parsed, medians taken
  copybw   device-to-device copy bandwidth (peers_e2e.py --copy_bw)
  peers    peers_e2e.py per model (int4 eager, int4 torch.compile, bf16 eager)
  table    the table (stdout, last) + the markdown file (card, date, commit)

Commit: --commit, else $E2E_COMMIT, else `git describe --always --dirty` if this is a checkout.
The preset models have no tokenizer of their own: they get SmolLM2's (ids < 49152 < their
vocabulary; the text does not matter to random weights).
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import types
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
MODELS = ("smollm2", "llama3.2-1b", "llama3-8b")
STAGES = ("prompts", "export", "ours", "copybw", "peers", "table")
PEERS = ("int4-compile", "int4-eager", "bf16-eager")
PREFILL512_DEFAULT = ("llama3-8b",)

# Plain English, no special tokens; long enough for a 512-token prompt.
TEXT = (
    "The river runs through the old town, past the market square where farmers sell apples, bread and cheese "
    "every Saturday morning. In 1889 the engineers built a bridge of iron and stone; it still carries trains to "
    "the coast, and on clear days you can see the lighthouse from its highest arch. The station master, a tall "
    "woman named Clara Hoffmann, has kept the same pocket watch for thirty-one years, and she says the 7:42 "
    "express has never once left early. Children gather on the embankment in summer to count the carriages: "
    "twelve on weekdays, fourteen on Sundays, when families travel to the beaches beyond the dunes. "
    "In winter the river freezes at the edges, and the fishermen cut small round holes in the ice, waiting "
    "for pike and perch while they share coffee from a dented thermos. The baker on Mill Street opens at five; "
    "by six the queue reaches the corner, because his rye loaves, dark and sour, sell out before the church "
    "bells ring seven. Nobody remembers who planted the chestnut trees along the promenade, but every October "
    "their nuts crack underfoot and the air smells of smoke from the roasting stands. The library, a narrow "
    "building with green shutters, holds a map drawn in 1742 that shows the river running a different course, "
    "two hundred metres to the west, before a great flood moved it overnight. Scholars still argue about the "
    "date of that flood: the parish records say March, the merchants' ledgers say April, and a sailor's diary, "
    "found in an attic in 1953, describes snow on the water in late February. Each spring the town holds a "
    "regatta; rowers from six villages race from the old mill to the bridge, and the winning crew rings the "
    "bell that hangs beneath the central arch. Tourists photograph the clock tower, whose four faces never "
    "agree, and ask why; the answer, the guides explain, is that each face was built by a different "
    "clockmaker, and each insisted that his own was right. At night the bridge is lit with yellow lamps, and "
    "the reflection on the water looks like a second bridge leading somewhere nobody has been. "
)


# --------------------------------------------------------------------------------------------
# small helpers (tested on CPU: tests/benchmarks/test_e2e_decode.py)
# --------------------------------------------------------------------------------------------

def parse_observer(text: str) -> List[dict]:
    """Every `PyTorchObserver {json}` stats object the runner printed, in order."""
    out, dec = [], json.JSONDecoder()
    for line in text.splitlines():
        i = line.find("PyTorchObserver {")
        if i >= 0:
            obj, _ = dec.raw_decode(line[i + len("PyTorchObserver "):])
            out.append(obj)
    return out


def summarize_runner(stats: List[dict]) -> dict:
    """Medians over the timed iterations of the runner's stats lines."""
    if not stats:
        return {"error": "no PyTorchObserver line"}
    med = lambda k: statistics.median(float(s[k]) for s in stats)  # noqa: E731
    last = stats[-1]
    prefill_ms = statistics.median(1e3 * s["prompt_tokens"] / s["prefill_tokens_per_s"] for s in stats
                                   if s["prefill_tokens_per_s"] > 0) if any(s["prefill_tokens_per_s"] > 0 for s in stats) else None
    used = last["gpu_free_before_load_bytes"] - min(last["gpu_free_after_load_bytes"], last["gpu_free_after_generate_bytes"])
    return {
        "iterations": len(stats),
        "prompt_tokens": last["prompt_tokens"],
        "generated_tokens": last["generated_tokens"],
        "decode_steps": last["decode_steps"],
        "prefill_tps": med("prefill_tokens_per_s"),
        "prefill_ms": prefill_ms,
        "ttft_ms": prefill_ms,
        "ttft_ms_wallclock": med("time_to_first_token_ms"),
        "decode_tps": med("decode_tokens_per_s"),
        "decode_tps_all": [s["decode_tokens_per_s"] for s in stats],
        "device_used_bytes": used,
        "load_ms": last["load_time_ms"],
        "cuda_graph": last.get("cuda_graph"),
        "cuda_graph_replays": last.get("cuda_graph_replays"),
        "stop_reason": last.get("stop_reason"),
    }


def fmt(v, spec="{:,.0f}", missing="—"):
    return missing if v is None else spec.format(v)


def load_peers_module():
    """benchmarks/peers_e2e.py as a module (python -P does not put benchmarks/ on sys.path)."""
    if "peers_e2e" in sys.modules:
        return sys.modules["peers_e2e"]
    spec = importlib.util.spec_from_file_location("peers_e2e", os.path.join(HERE, "peers_e2e.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules["peers_e2e"] = mod  # before exec: its dataclass looks itself up there
    spec.loader.exec_module(mod)
    return mod


def model_config(model: str, results: dict, gguf: Optional[str]):
    """Architecture numbers for the byte counts: from the peers' JSON, else the preset / GGUF."""
    cfg = (results.get("peers") or {}).get("config")
    if cfg:
        return types.SimpleNamespace(**cfg)
    if model == "smollm2":
        if not gguf:
            return None
        import gguf as gg

        from int4_cuda.llm.gguf_source import read_config

        return read_config(gg.GGUFReader(gguf), gguf)
    from int4_cuda.llm.presets import preset_config

    return preset_config(model)


def build_rows(model: str, res: dict, cfg, group_size: int, copy_gbps: Optional[float]):
    """Table rows (dicts) for one model: ours first, then the peers."""
    pe = load_peers_module()
    rows = []
    ours = res.get("ours") or {}
    peers = {r["impl"]: r for r in (res.get("peers") or {}).get("runs", [])}
    comp = peers.get("int4-compile", {}).get("decode_tps")
    ours_bytes = pe.weight_bytes_per_token(cfg, group_size, "int4") if cfg is not None else None
    rows.append(dict(model=model, impl="ours (int4_cuda_runner)", prefill_tps=ours.get("prefill_tps"),
                     ttft_ms=ours.get("ttft_ms"), decode_tps=ours.get("decode_tps"),
                     mem_gib=None if ours.get("device_used_bytes") is None else ours["device_used_bytes"] / 2**30,
                     mem_kind="device", weight_bytes=ours_bytes, prompt_tokens=ours.get("prompt_tokens"),
                     prefill512_tps=(res.get("ours512") or {}).get("prefill_tps"),
                     prefill512_ms=(res.get("ours512") or {}).get("prefill_ms"),
                     error=ours.get("error")))
    for impl in PEERS:
        r = peers.get(impl)
        if r is None:
            rows.append(dict(model=model, impl=impl, error="not run"))
            continue
        rows.append(dict(model=model, impl=impl + (f" [{r['compile_mode']}]" if r.get("compile_mode") else ""),
                         prefill_tps=r.get("prefill_tps"), ttft_ms=r.get("ttft_ms"), decode_tps=r.get("decode_tps"),
                         mem_gib=None if r.get("peak_alloc_bytes") is None else r["peak_alloc_bytes"] / 2**30,
                         mem_kind="alloc", weight_bytes=r.get("weight_bytes_per_token"),
                         prompt_tokens=r.get("prompt_len"), prefill512_tps=r.get("prefill512_tps"),
                         prefill512_ms=r.get("prefill512_ms"), error=r.get("error")))
    for row in rows:
        d, b = row.get("decode_tps"), row.get("weight_bytes")
        row["eff_gbps"] = d * b / 1e9 if d and b else None
        row["pct_copy"] = 100 * row["eff_gbps"] / copy_gbps if row["eff_gbps"] and copy_gbps else None
        row["x_compile"] = d / comp if d and comp else None
    return rows


COLUMNS = ["model", "impl", "prefill tok/s", "TTFT ms", "decode tok/s", "GPU mem GiB", "weights MB/token",
           "eff. BW GB/s", "% of copy BW", "× torch.compile peer"]


def row_cells(r: dict) -> List[str]:
    if r.get("error") and r.get("decode_tps") is None:
        return [r["model"], r["impl"], f"failed: {str(r['error'])[:80]}"] + [""] * (len(COLUMNS) - 3)
    mem = fmt(r.get("mem_gib"), "{:.2f}") + ("" if r.get("mem_gib") is None else
                                             (" (dev.)" if r["mem_kind"] == "device" else " (alloc)"))
    return [r["model"], r["impl"], fmt(r.get("prefill_tps")), fmt(r.get("ttft_ms"), "{:.1f}"),
            fmt(r.get("decode_tps"), "{:,.1f}"), mem, fmt(None if r.get("weight_bytes") is None else r["weight_bytes"] / 1e6, "{:,.1f}"),
            fmt(r.get("eff_gbps"), "{:,.0f}"), fmt(r.get("pct_copy"), "{:.0f} %"), fmt(r.get("x_compile"), "{:.2f}×")]


def markdown_table(header: List[str], rows: List[List[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(out)


def targets(all_rows: Dict[str, List[dict]]) -> List[List[str]]:
    """Issue #7's targets against the measured rows."""
    def get(model, impl_prefix, key):
        for r in all_rows.get(model, []):
            if r["impl"].startswith(impl_prefix):
                return r.get(key)
        return None

    out = []
    d8 = get("llama3-8b", "ours", "decode_tps")
    c8 = get("llama3-8b", "int4-compile", "decode_tps")
    out.append(["llama3-8b g32 decode ≥ 450 tok/s", fmt(d8, "{:,.1f} tok/s"), _verdict(d8, d8 is not None and d8 >= 450)])
    ratio = d8 / c8 if d8 and c8 else None
    out.append(["llama3-8b decode ≥ 1.5× torch.compile + tinygemm", fmt(ratio, "{:.2f}×"),
                _verdict(ratio, ratio is not None and ratio >= 1.5)])
    ds = get("smollm2", "ours", "decode_tps")
    out.append(["SmolLM2-135M decode ≥ 2000 tok/s", fmt(ds, "{:,.1f} tok/s"), _verdict(ds, ds is not None and ds >= 2000)])
    po, pb = get("llama3-8b", "ours", "prefill512_ms"), get("llama3-8b", "bf16-eager", "prefill512_ms")
    pr = po / pb if po and pb else None
    out.append(["llama3-8b 512-token prefill within 1.5× of bf16 eager (time ratio ≤ 1.5)",
                f"{fmt(po, '{:.1f}')} ms vs {fmt(pb, '{:.1f}')} ms → {fmt(pr, '{:.2f}×')}",
                _verdict(pr, pr is not None and pr <= 1.5)])
    return out


def _verdict(v, ok):
    return "not measured" if v is None else ("**met**" if ok else "**not met**")


# --------------------------------------------------------------------------------------------
# stages
# --------------------------------------------------------------------------------------------

class Ctx:
    def __init__(self, a):
        self.a = a
        self.work = os.path.abspath(a.work)
        self.res_dir = os.path.join(self.work, "results")
        self.log_dir = os.path.join(self.work, "logs")
        for d in (self.res_dir, self.log_dir):
            os.makedirs(d, exist_ok=True)
        self.py = [sys.executable, "-P"]

    def save(self, name, obj):
        with open(os.path.join(self.res_dir, name), "w") as f:
            json.dump(obj, f, indent=1)

    def load(self, name):
        p = os.path.join(self.res_dir, name)
        if not os.path.isfile(p):
            return None
        with open(p) as f:
            return json.load(f)

    def model_dir(self, m):
        return os.path.join(self.work, "models", m)

    def pte(self, m):
        return os.path.join(self.model_dir(m), m.replace(".", "_") + ".pte")

    def max_seq(self, m):
        return 1024 if m in self.a.prefill512 else 512

    def tokenizer(self, m=None):
        if m == "smollm2":
            p = os.path.join(self.model_dir("smollm2"), "tokenizer.json")
            if os.path.isfile(p):
                return p
        return os.path.join(self.work, "tokenizer", "tokenizer.json")


def run_logged(cmd, log, timeout, env=None, echo=False):
    """Runs cmd, output to `log` (and echoed when asked); returns (rc, seconds, output)."""
    t0 = time.time()
    print("$ " + " ".join(cmd), flush=True)
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, env=env,
                           cwd=REPO, text=True, errors="replace")
        rc, text = p.returncode, p.stdout
    except subprocess.TimeoutExpired as e:
        rc, text = 124, (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        text += f"\n[timeout after {timeout} s]\n"
    with open(log, "w") as f:
        f.write(text)
    if echo:
        sys.stdout.write(text)
    elif rc:
        sys.stdout.write(text[-3000:])
    return rc, time.time() - t0, text


class Encoder:
    """The runner's tokenizer (C++ tool) or HF tokenizers on the same tokenizer.json."""

    def __init__(self, tool, tok_json):
        self.proc = self.hf = None
        if tool and os.path.isfile(tool):
            self.proc = subprocess.Popen([tool, tok_json], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            self.kind = "int4_cuda_tokenizer_tool (the runner's tokenizer)"
        else:
            from tokenizers import Tokenizer

            self.hf = Tokenizer.from_file(tok_json)
            self.kind = "HF tokenizers"

    def _ask(self, req):
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def encode(self, text):
        if self.proc:
            ans = self._ask({"encode": text})
            if "ids" not in ans:
                raise RuntimeError(f"tokenizer tool: {ans}")
            return ans["ids"]
        return self.hf.encode(text, add_special_tokens=False).ids

    def decode(self, ids):
        if self.proc:
            return self._ask({"decode": ids, "skip_special": False})["text"]
        return self.hf.decode(ids, skip_special_tokens=False)

    def close(self):
        if self.proc:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)


def exact_prompt(enc, n: int):
    """(text, ids) with exactly n tokens: a prefix of TEXT, cut at a token boundary that re-encodes to n."""
    text = TEXT
    while len(enc.encode(text)) < n + 16:
        text += TEXT
    ids = enc.encode(text)
    for m in [n + d for k in range(12) for d in ((k, -k) if k else (0,))]:
        t = enc.decode(ids[:m])
        again = enc.encode(t)
        if len(again) == n:
            return t, again
    raise RuntimeError(f"no prefix of the text encodes to exactly {n} tokens")


def stage_prompts(c: Ctx):
    a = c.a
    tok = c.tokenizer()
    if not os.path.isfile(tok):
        import gguf

        from int4_cuda.llm.tokenizer import write_tokenizer_from_gguf

        write_tokenizer_from_gguf(gguf.GGUFReader(a.gguf), os.path.dirname(tok))
    enc = Encoder(a.tokenizer_tool, tok)
    info = {"tokenizer": tok, "encoder": enc.kind, "prompts": {}}
    ids = {}
    for n in sorted({a.prompt_len, 512}):
        text, got = exact_prompt(enc, n)
        path = os.path.join(c.work, f"prompt_{n}.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)  # no trailing newline: the runner reads the file as it is
        ids[str(n)] = got
        info["prompts"][n] = {"file": path, "tokens": len(got), "chars": len(text)}
    enc.close()
    with open(os.path.join(c.work, "prompt_ids.json"), "w") as f:
        json.dump(ids, f)
    c.save("prompts.json", info)
    counts = ", ".join(f"{k}: {v['tokens']} tokens" for k, v in info["prompts"].items())
    print(f"prompts: {counts} ({enc.kind})", flush=True)


def stage_export(c: Ctx):
    a = c.a
    for m in a.models:
        d = c.model_dir(m)
        name = m.replace(".", "_")
        stamp = {"model": m, "group_size": a.group_size, "max_seq_length": c.max_seq(m), "dtype": a.dtype}
        old = c.load(f"export_{m}.json") or {}
        if old.get("rc") == 0 and all(old.get(k) == v for k, v in stamp.items()) and os.path.isfile(c.pte(m)):
            print(f"export {m}: reusing {c.pte(m)}", flush=True)
            continue
        src = ["--gguf", a.gguf] if m == "smollm2" else ["--preset", m]
        cmd = c.py + ["-m", "int4_cuda.llm.export_llm", "--backend", "cuda", *src, "--group_size", str(a.group_size),
                      "--max_seq_length", str(c.max_seq(m)), "--dtype", a.dtype, "--output_dir", d, "--output_name", name]
        rc, s, text = run_logged(cmd, os.path.join(c.log_dir, f"export_{m}.log"), a.export_timeout)
        sizes = {os.path.basename(p): os.path.getsize(p) for p in (c.pte(m), c.pte(m)[:-4] + ".ptd") if os.path.isfile(p)}
        c.save(f"export_{m}.json", dict(stamp, rc=rc, seconds=round(s, 1), files=sizes, cmd=" ".join(cmd),
                                        tail=text[-600:]))
        print(f"export {m}: rc={rc}, {s:.0f} s, {sum(sizes.values()) / 2**30:.2f} GiB", flush=True)


def run_runner(c: Ctx, m: str, prompt_file: str, new_tokens: int, tag: str) -> dict:
    a = c.a
    cmd = [a.runner, "--model_path", c.pte(m), "--tokenizer_path", c.tokenizer(m), "--prompt_file", prompt_file,
           "--max_new_tokens", str(new_tokens), "--ignore_eos", "--warmup", "--num_iters", str(a.iters),
           "--cuda_graph", "1"]
    rc, s, text = run_logged(cmd, os.path.join(c.log_dir, f"runner_{tag}.log"), a.runner_timeout)
    stats = parse_observer(text)
    summ = summarize_runner(stats)
    summ.update(rc=rc, seconds=round(s, 1), cmd=" ".join(cmd), stats=stats)
    if rc:  # the runner's own message (e.g. an exporter newer than the runtime) beats "no stats line"
        msg = [ln for ln in text.splitlines() if "error" in ln.lower()]
        summ["error"] = f"rc={rc}: " + (msg[-1].strip()[:300] if msg else summ.get("error", ""))
    if rc:
        summ["tail"] = text[-800:]
    return summ


def stage_ours(c: Ctx):
    a = c.a
    if not os.path.isfile(a.runner):
        raise SystemExit(f"e2e_decode: runner not found: {a.runner}")
    pr = c.load("prompts.json")
    if not pr:
        raise SystemExit("e2e_decode: run the prompts stage first")
    pfile = pr["prompts"][str(a.prompt_len)]["file"]
    for m in a.models:
        if not os.path.isfile(c.pte(m)):
            c.save(f"ours_{m}.json", {"error": f"no export at {c.pte(m)}"})
            continue
        r = run_runner(c, m, pfile, a.gen, m)
        if r.get("prompt_tokens") not in (None, a.prompt_len):
            r["warning"] = f"the runner counted {r['prompt_tokens']} prompt tokens, not {a.prompt_len}"
        c.save(f"ours_{m}.json", r)
        print(f"ours {m}: prefill {fmt(r.get('prefill_tps'))} tok/s, decode {fmt(r.get('decode_tps'), '{:.1f}')} tok/s "
              f"({r.get('prompt_tokens')} prompt tokens, {r.get('decode_steps')} decode steps) rc={r['rc']}", flush=True)
        if m in a.prefill512:
            r5 = run_runner(c, m, pr["prompts"]["512"]["file"], 2, m + "_prefill512")
            c.save(f"ours512_{m}.json", r5)
            print(f"ours {m} 512-token prefill: {fmt(r5.get('prefill_tps'))} tok/s ({fmt(r5.get('prefill_ms'), '{:.1f}')} ms) "
                  f"rc={r5['rc']}", flush=True)


def stage_copybw(c: Ctx):
    out = os.path.join(c.res_dir, "copy_bw.json")
    rc, _, _ = run_logged(c.py + [os.path.join(HERE, "peers_e2e.py"), "--copy_bw", "--json", out],
                          os.path.join(c.log_dir, "copy_bw.log"), 120, echo=True)
    if rc:
        print(f"copy bandwidth: rc={rc}", flush=True)


def stage_peers(c: Ctx):
    a = c.a
    ids = os.path.join(c.work, "prompt_ids.json")
    for m in a.models:
        out = os.path.join(c.res_dir, f"peers_{m}.json")
        cmd = c.py + [os.path.join(HERE, "peers_e2e.py"), "--model", m, "--group_size", str(a.group_size),
                      "--prompt_len", str(a.prompt_len), "--gen", str(a.gen), "--json", out]
        if os.path.isfile(ids):
            cmd += ["--prompt_ids", ids]
        if m == "smollm2":
            cmd += ["--gguf", a.gguf]
        if m in a.prefill512:
            cmd += ["--prefill512"]
        cmd += a.peers_args
        rc, _, text = run_logged(cmd, os.path.join(c.log_dir, f"peers_{m}.log"), a.peers_timeout, echo=True)
        if rc and not os.path.isfile(out):
            c.save(f"peers_{m}.json", {"error": f"rc={rc}", "tail": text[-800:]})


def gpu_name():
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]
    except Exception as e:  # noqa: BLE001
        return f"unknown ({type(e).__name__})"


def commit_id(a) -> str:
    if a.commit:
        return a.commit
    if os.environ.get("E2E_COMMIT"):
        return os.environ["E2E_COMMIT"]
    if os.path.isdir(os.path.join(REPO, ".git")):
        try:
            return subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"], capture_output=True,
                                  text=True, timeout=30).stdout.strip() or "unknown"
        except Exception:  # noqa: BLE001
            pass
    return "unknown (no .git on this host and no E2E_COMMIT)"


def stage_table(c: Ctx):
    a = c.a
    bw = (c.load("copy_bw.json") or {}).get("copy_bw") or {}
    copy_gbps = bw.get("GBps")
    all_rows, problems = {}, []
    for m in a.models:
        res = {"ours": c.load(f"ours_{m}.json"), "ours512": c.load(f"ours512_{m}.json"), "peers": c.load(f"peers_{m}.json")}
        cfg = model_config(m, res, a.gguf)
        all_rows[m] = build_rows(m, res, cfg, a.group_size, copy_gbps)
        for k, v in res.items():
            if v and v.get("error"):
                problems.append(f"{m} {k}: {v['error']}")
            if v and v.get("warning"):
                problems.append(f"{m} {k}: {v['warning']}")
        for r in (res.get("peers") or {}).get("runs", []):
            if r.get("compile_errors"):
                problems.append(f"{m} {r['impl']}: torch.compile fell back: {r['compile_errors']}")
    rows = [r for m in a.models for r in all_rows[m]]
    main = markdown_table(COLUMNS, [row_cells(r) for r in rows])
    p5 = [r for r in rows if r["model"] in a.prefill512]
    ours5 = {r["model"]: r.get("prefill512_ms") for r in p5 if r["impl"].startswith("ours")}
    t512 = markdown_table(["model", "impl", "512-token prefill tok/s", "ms", "ours' time / this time"],
                          [[r["model"], r["impl"], fmt(r.get("prefill512_tps")), fmt(r.get("prefill512_ms"), "{:.1f}"),
                            fmt(ours5.get(r["model"]) / r["prefill512_ms"] if ours5.get(r["model"]) and r.get("prefill512_ms") else None,
                                "{:.2f}")] for r in p5])
    tg = markdown_table(["target (issue #7)", "measured", "verdict"], targets(all_rows))
    peers_any = next((c.load(f"peers_{m}.json") for m in a.models if c.load(f"peers_{m}.json")), {}) or {}
    tinyg = peers_any.get("tinygemm_check") or {}
    prompts = c.load("prompts.json") or {}
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    card = gpu_name()
    head = [
        "# End-to-end decode (issue #7): int4_cuda_runner against PyTorch peers",
        "",
        f"- **Card:** {card}",
        f"- **Date:** {date}",
        f"- **Commit:** `{commit_id(a)}`",
        f"- **Host software:** torch {peers_any.get('torch', '?')} (peers), runner from `{os.path.relpath(a.runner, REPO)}`",
        f"- **Workload:** a {a.prompt_len}-token prompt (plain English, counted by "
        f"{prompts.get('encoder', '?')}; the same token ids for the peers), then {a.gen} generated tokens, greedy, "
        f"EOS ignored; int4 group size {a.group_size}; ours: `--warmup --num_iters {a.iters}`, peers: warm-up then "
        f"{peers_any.get('runs', [{}])[0].get('repeats', '?')} timed repeats; medians.",
        f"- **Copy bandwidth (D2D, read + write):** {fmt(copy_gbps, '{:,.0f} GB/s')} "
        f"({fmt(bw.get('bytes') and bw['bytes'] / 2**30, '{:.0f}')} GiB copy, median of 20)",
        "- **How:** `bash benchmarks/e2e_gpu_visit.sh` (see its header), which runs `benchmarks/e2e_decode.py` "
        "(exports, runner, peers, this table) and `benchmarks/peers_e2e.py` (the peers).",
        "",
    ]
    notes = [
        "",
        "Columns. *prefill tok/s*: prompt tokens over the prefill time. *TTFT*: the prefill (forward of "
        "the whole prompt + the first token's logits; ours: the runner's prefill_s, peers: CUDA events around "
        "forward + argmax). *decode tok/s*: decode steps (gen − 1; the first token comes from the prefill) over "
        "their time, host loop included. *GPU mem*: ours (dev.) = cudaMemGetInfo free before load − free after "
        "load/generate (weights, KV cache, scratch); peers (alloc) = torch.cuda.max_memory_allocated (reset after "
        "the weights were built; they stay counted). *weights MB/token*: constant bytes one decode step must read "
        "(int4: codes + bf16 scale + bf16 zero per group; the tied heads of SmolLM2 and Llama-3.2-1B are the bf16 "
        "embedding matrix in our export and in every peer; one embedding row; norms) — KV-cache reads come on top. "
        "*eff. BW* = weights/token × decode tok/s; *% of copy BW* against the copy above. "
        "*× torch.compile peer*: decode tok/s over the int4 torch.compile peer's.",
        "",
        "Peers (`benchmarks/peers_e2e.py`, gpt-fast recipe): the same architecture (RoPE convention, Llama-3 "
        "scaling, GQA, SwiGLU, tied/untied head) and the very same int4 numbers (SmolLM2: the GGUF's Q4_1 codes; "
        "presets: `load_preset`'s seed) through the layout owner `CoalescedInt4Tensor`, then "
        "`aten._convert_weight_to_int4pack` (nibbles swapped: tinygemm wants the even k in the high nibble) and "
        "`aten._weight_int4pack_mm`. Checked before timing against a float64 dequantization of our layout: "
        f"worst relative error {fmt(tinyg.get('worst_rel_err'), '{:.1e}')} (the other nibble order: "
        f"{fmt(tinyg.get('best_rel_err_other_nibble_order'), '{:.2f}')}), and layer 0's real fused q/k/v per peer. "
        "q/k/v and gate/up are fused into one weight each, logits are computed for the last position only, the KV "
        "cache holds prompt + generated positions (gpt-fast sizes it so), attention is SDPA with enable_gqa. "
        "int4-compile: decode step under `torch.compile(mode=...)` as named in the row (reduce-overhead = CUDA "
        "graphs), prefill eager (gpt-fast's default). bf16-eager: the same weights dequantized to bf16.",
        "",
        f"Ours: exports with `--max_seq_length 512` (1024 for {', '.join(a.prefill512) or 'none'}, whose 512-token "
        "prefill needs a longer cache); the preset exports use SmolLM2's tokenizer.json (random weights).",
    ]
    if problems:
        notes += ["", "Problems seen in this run:", ""] + [f"- {p}" for p in problems]
    body = [main, ""] + (["512-token prefill:", "", t512, ""] if p5 else []) + ["Targets:", "", tg]
    md = "\n".join(head + body + notes) + "\n"
    os.makedirs(os.path.dirname(os.path.abspath(a.md)), exist_ok=True)
    with open(a.md, "w") as f:
        f.write(md)
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        shutil.copy(a.md, os.path.join(a.out, os.path.basename(a.md)))
    print("\n" + "\n".join(head[2:5]) + f"\n- copy BW {fmt(copy_gbps, '{:,.0f} GB/s')}\n")
    for p in problems:
        print("problem: " + p)
    print((t512 + "\n\n" if p5 else "") + tg + "\n\n" + main, flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stages", nargs="*", help=f"{STAGES} or all (default)")
    p.add_argument("--models", default=",".join(MODELS), help="comma or space separated")
    p.add_argument("--work", default="/tmp/e2e")
    p.add_argument("--runner", default=os.path.join(REPO, "build-rt", "runner", "int4_cuda_runner"))
    p.add_argument("--tokenizer_tool", default=os.path.join(REPO, "build-rt", "runner", "int4_cuda_tokenizer_tool"))
    p.add_argument("--gguf", default=os.environ.get("INT4_CUDA_SMOLLM2_GGUF"), help="SmolLM2 GGUF")
    p.add_argument("--group_size", type=int, default=32)
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"],
                   help="export_llm --dtype of our exports (use another --work per dtype)")
    p.add_argument("--prompt_len", type=int, default=128)
    p.add_argument("--gen", type=int, default=256)
    p.add_argument("--iters", type=int, default=3, help="runner --num_iters (after --warmup)")
    p.add_argument("--prefill512", default=",".join(PREFILL512_DEFAULT), help="models that also time a 512-token prefill")
    p.add_argument("--peers_args", default="", help="extra arguments for peers_e2e.py (one string)")
    p.add_argument("--export_timeout", type=int, default=420)
    p.add_argument("--runner_timeout", type=int, default=300)
    p.add_argument("--peers_timeout", type=int, default=580)
    p.add_argument("--md", default=os.path.join(REPO, "docs", "results", "e2e_decode.md"))
    p.add_argument("--out", default=os.environ.get("OUT"), help="also copy the markdown here")
    p.add_argument("--commit")
    a = p.parse_args(argv)
    split = lambda s: [x for x in s.replace(",", " ").split() if x]  # noqa: E731
    a.models = split(a.models)
    a.prefill512 = split(a.prefill512)
    a.peers_args = a.peers_args.split()
    for m in a.models:
        if m not in MODELS:
            p.error(f"unknown model {m}; models: {MODELS}")
    stages = list(STAGES) if not a.stages or a.stages == ["all"] else a.stages
    for s in stages:
        if s not in STAGES:
            p.error(f"unknown stage {s}; stages: {STAGES}")
    c = Ctx(a)
    needs = ("prompts" in stages and not os.path.isfile(c.tokenizer())) or \
        ("smollm2" in a.models and bool(set(stages) & {"export", "peers", "table"}))
    if needs and not (a.gguf and os.path.isfile(a.gguf)):
        from int4_cuda.llm.gguf_source import default_gguf

        a.gguf = default_gguf()
        if a.gguf is None:
            p.error("no SmolLM2 GGUF (needed for its export/peers and for the tokenizer): pass --gguf or set "
                    "INT4_CUDA_SMOLLM2_GGUF")
    fns = {"prompts": stage_prompts, "export": stage_export, "ours": stage_ours, "copybw": stage_copybw,
           "peers": stage_peers, "table": stage_table}
    for s in STAGES:
        if s in stages:
            print(f"==== {s}", flush=True)
            fns[s](c)
    return 0


if __name__ == "__main__":
    sys.exit(main())
