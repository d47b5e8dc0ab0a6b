"""Peak host memory (RSS) of `export_llm --backend cuda` for a preset, measured on this machine.

    .venv/bin/python benchmarks/export_memory.py llama3-8b [--max_seq_length 2048] [--record docs/results/export_memory.md]

Runs the export in a child process and reads the child's peak RSS from the kernel
(getrusage(RUSAGE_CHILDREN)); prints one table row; --record appends it to the results file.
"""
import argparse
import datetime
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("preset")
    ap.add_argument("--max_seq_length", type=int, default=2048)
    ap.add_argument("--group_size", type=int, default=32)
    ap.add_argument("--record", help="markdown file to append the row to")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as out:
        t0 = time.time()
        r = subprocess.run([sys.executable, "-m", "int4_cuda.llm.export_llm", "--backend", "cuda", "--preset", a.preset,
                            "--group_size", str(a.group_size), "--max_seq_length", str(a.max_seq_length),
                            "--output_dir", out], capture_output=True, text=True)
        wall = time.time() - t0
        if r.returncode:
            sys.exit(f"export failed:\n{r.stderr[-2000:]}")
        sizes = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    row = (f"| {a.preset} | g{a.group_size} | {a.max_seq_length} | {sizes / 2**30:.2f} GiB | {peak / 2**30:.2f} GiB | "
           f"{wall:.0f} s | {datetime.date.today()} | {commit} | {platform.node()} ({os.cpu_count()} cores, {mem / 2**30:.0f} GiB) |")
    print("| preset | group | max_seq_len | files written | peak RSS | wall | date | commit | machine |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(row)
    if a.record:
        with open(a.record, "a") as f:
            f.write(row + "\n")


if __name__ == "__main__":
    main()
