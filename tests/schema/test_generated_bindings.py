import subprocess
import sys
import os

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def test_committed_python_bindings_match_the_schema():
    r = subprocess.run([sys.executable, os.path.join(ROOT, "schema", "generate.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
