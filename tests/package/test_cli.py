import os
import subprocess
import sys

import torch

import int4_cuda
from int4_cuda.cli import main

FIX = os.path.join(os.path.dirname(__file__), "..", "fixtures")


def test_inspect(tmp_path, capsys):
    m = torch.nn.Sequential(torch.nn.Linear(576, 192, bias=False)).to(torch.bfloat16)
    int4_cuda.quantize_(m, 64)
    f = int4_cuda.export_to_files(m, (torch.randn(1, 576, dtype=torch.bfloat16),), str(tmp_path), name="one")
    capsys.readouterr()
    assert main(["inspect", f.pte]) == 0
    out = capsys.readouterr().out
    assert f"weights file: {f.ptd}" in out
    assert "INT4_PLAIN_MM×1" in out and "verified: the runtime's load checks pass" in out
    line = next(l for l in out.splitlines() if l.strip().startswith("0 "))
    assert line.split()[1:5] == ["192", "576", "64", "COALESCED_N_GROUPS"]
    assert line.split()[5] == f"{192 * 288 + 2 * 192 * 9 * 2:,}"


def test_upgrade_and_errors_without_traceback(tmp_path):
    new = str(tmp_path / "new.pte")
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    r = subprocess.run([sys.executable, "-m", "int4_cuda.cli", "upgrade", os.path.join(FIX, "legacy_groups_n.pte"), new],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "2 weight(s) moved to the coalesced" in r.stdout
    bad = tmp_path / "bad.pte"
    bad.write_bytes(b"\x00" * 100)
    r = subprocess.run([sys.executable, "-m", "int4_cuda.cli", "inspect", str(bad)], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "not an ExecuTorch program" in r.stderr and "Traceback" not in r.stderr


def test_generate_path_imports_no_exporter():
    """`int4-cuda generate` on the CUDA runtime must not pay for torchao / executorch.exir at start-up
    (~3 s): the package API is imported on first use. The exporter's API still resolves on demand."""
    code = ("import sys, int4_cuda, int4_cuda.cli, int4_cuda.cuda_runtime, int4_cuda.llm.generate\n"
            "heavy = sorted(m for m in sys.modules if m.startswith(('torchao', 'executorch.exir')))\n"
            "assert not heavy, heavy\n"
            "assert int4_cuda.lower.__module__ == 'int4_cuda.backend.lower'\n"
            "assert 'executorch.exir' in sys.modules\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
