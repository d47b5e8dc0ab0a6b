"""Regenerates the Python bindings of schema/int4_cuda.fbs with the flatc that ships in the
pinned executorch wheel (24.3.25, matching the pinned `flatbuffers` runtime).

    python schema/generate.py          # rewrite schema/int4_cuda_generated.py
    python schema/generate.py --check  # exit 1 if the committed file differs (CI)
"""
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
FBS = HERE / "int4_cuda.fbs"
OUT = HERE / "int4_cuda_generated.py"


def flatc() -> str:
    import executorch

    path = Path(executorch.__path__[0]) / "data" / "bin" / "flatc"
    if not path.is_file():
        sys.exit(f"flatc not found at {path}: install the pinned executorch wheel")
    return str(path)


def generate() -> bytes:
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([flatc(), "--python", "--gen-onefile", "--gen-object-api", "-o", d, str(FBS)], check=True)
        return (Path(d) / "int4_cuda_generated.py").read_bytes()


def main() -> int:
    new = generate()
    if "--check" in sys.argv[1:]:
        if not OUT.is_file() or OUT.read_bytes() != new:
            print(f"{OUT.relative_to(HERE.parent)} is stale: run `python schema/generate.py` and commit", file=sys.stderr)
            return 1
        print("schema bindings up to date")
        return 0
    OUT.write_bytes(new)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
