import subprocess
import sys
import os

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def test_committed_python_bindings_match_the_schema():
    r = subprocess.run([sys.executable, os.path.join(ROOT, "schema", "generate.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_decode_threshold_is_one_constant():
    """Python (schema Limits) and the CUDA launcher pick the matvec for the same M."""
    import re

    from int4_cuda.schema import Limits

    header = open(os.path.join(ROOT, "shims", "int4_plain_mm.h")).read()
    m = re.search(r"#define INT4_CUDA_PLAIN_MM_DECODE_MAX_M (\d+)", header)
    assert m and int(m.group(1)) == Limits.DECODE_MAX_M
