"""Property-based fuzzing (hypothesis) of the Python readers on damaged real files (issue #8):
int4_cuda.blob.decode_blob/verify_graph on mutated delegate blobs, and ProgramFile.open +
int4_cuda.load (the reference executor's loader, which `inspect` and `generate --device cpu` use)
on mutated .pte/.ptd files. Every input either loads or raises Int4CudaError; a flatbuffers,
ExecuTorch, torch or Python error escaping is a bug. Derandomized and bounded (a few hundred
examples per property, well under a minute in all) so CI runs the same inputs every time."""
import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import int4_cuda
from int4_cuda.blob import decode_blob, verify_graph
from int4_cuda.errors import Int4CudaError
from int4_cuda.reference import BlobExecutor

from corpus import SEEDS, read_seed

FUZZ = settings(max_examples=int(os.environ.get("INT4_CUDA_FUZZ_EXAMPLES", "300")), deadline=None,
                derandomize=True, database=None, suppress_health_check=list(HealthCheck))


@st.composite
def mutated(draw, base: bytes, header: int = 0):
    """base damaged the ways files get damaged: bit flips, truncation, overwritten/inserted/removed
    runs, random bytes; `header` leading bytes are kept where the mutation is not a truncation (so
    deep parsing is reached, not only the magic check)."""
    kind = draw(st.sampled_from(["flip", "truncate", "overwrite", "insert", "delete", "random", "int"]))
    b = bytearray(base)
    lo = min(header, len(b))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(lo, len(b) - 1))
            b[i] ^= 1 << draw(st.integers(0, 7))
    elif kind == "truncate":
        del b[draw(st.integers(0, len(b) - 1)):]
    elif kind == "overwrite":
        i = draw(st.integers(lo, len(b) - 1))
        run = draw(st.binary(min_size=1, max_size=16))
        b[i:i + len(run)] = run
    elif kind == "insert":
        i = draw(st.integers(lo, len(b)))
        b[i:i] = draw(st.binary(min_size=1, max_size=16))
    elif kind == "delete":
        i = draw(st.integers(lo, len(b) - 1))
        del b[i:i + draw(st.integers(1, 16))]
    elif kind == "int":  # a 32-bit field set to an edge value (offsets, lengths, indices, enums)
        i = draw(st.integers(lo, max(lo, len(b) - 4)))
        v = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFF0]))
        b[i:i + 4] = v.to_bytes(4, "little")
    else:
        return draw(st.binary(min_size=0, max_size=256))
    return bytes(b)


# --- delegate blobs: decode_blob + verify_graph (+ the executor's constant setup) ---------------
_SEEDS = {name: read_seed(name) for name in SEEDS}


def _check_blob(blob: bytes, sizes):
    def named_bytes(key):
        n = sizes.get(key)
        return None if n is None else bytes(n)
    try:
        g = decode_blob(blob, "fuzz")
        consts = verify_graph(g, "fuzz", "fuzz.pte", named_bytes, check_hashes=False)  # zero-filled constants
        BlobExecutor(g, consts, "fuzz")
    except Int4CudaError as e:
        assert str(e).startswith("fuzz"), str(e)


@pytest.mark.parametrize("seed", SEEDS)
def test_seed_blobs_load(seed):
    blob, sizes = _SEEDS[seed]
    g = decode_blob(blob, seed)
    if seed == "legacy":
        with pytest.raises(Int4CudaError, match="LEGACY_GROUPS_N"):
            verify_graph(g, seed, "x.pte", lambda k: bytes(sizes[k]) if k in sizes else None)
    else:  # zero-filled constants of the right sizes: content hashes cannot match, so not checked
        verify_graph(g, seed, "x.pte", lambda k: bytes(sizes[k]) if k in sizes else None, check_hashes=False)


@pytest.mark.parametrize("seed", ["mlp", "llm"])
def test_mutated_blobs_only_raise_int4cuda_errors(seed):
    blob, sizes = _SEEDS[seed]

    @FUZZ
    @given(mutated(blob, header=8))
    def prop(b):
        _check_blob(b, sizes)

    prop()


# --- whole files: ProgramFile.open + int4_cuda.load on damaged .pte / .ptd ----------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzzfiles")
    torch.manual_seed(8)
    m = torch.nn.Sequential(torch.nn.Linear(64, 64, bias=False), torch.nn.SiLU(),
                            torch.nn.Linear(64, 32, bias=False)).to(torch.bfloat16)
    int4_cuda.quantize_(m, 32)
    x = (torch.randn(2, 64, dtype=torch.bfloat16),)
    ext = int4_cuda.export_to_files(m, x, str(d / "ext"), name="m")
    emb = int4_cuda.export_to_files(m, x, str(d / "emb"), name="e", embed_weights=True)
    return {"pte": open(ext.pte, "rb").read(), "ptd": open(ext.ptd, "rb").read(),
            "embedded": open(emb.pte, "rb").read(), "dir": d}


def _load(tmp, pte: bytes, ptd: bytes = None):
    p = os.path.join(tmp, "f.pte")
    with open(p, "wb") as f:
        f.write(pte)
    q = None
    if ptd is not None:
        q = os.path.join(tmp, "f.ptd")
        with open(q, "wb") as f:
            f.write(ptd)
    try:
        int4_cuda.load(p, q)
    except Int4CudaError as e:
        assert "f.pt" in str(e), str(e)  # names the file it is about


def test_mutated_pte_only_raises_int4cuda_errors(files, tmp_path):
    @FUZZ
    @given(mutated(files["pte"], header=8))
    def prop(b):
        _load(str(tmp_path), b, files["ptd"])

    prop()


def test_inspect_on_mutated_pte_exits_cleanly(files, tmp_path, capsys):
    """`int4-cuda inspect` on a damaged file: exit code 0 (still readable) or 2 (an error line)."""
    from int4_cuda.cli import main

    p, q = str(tmp_path / "f.pte"), str(tmp_path / "f.ptd")
    with open(q, "wb") as f:
        f.write(files["ptd"])

    @FUZZ
    @given(mutated(files["pte"], header=8))
    def prop(b):
        with open(p, "wb") as f:
            f.write(b)
        rc = main(["inspect", p, "--data", q])
        err = capsys.readouterr().err
        assert rc == 0 or (rc == 2 and err.startswith("int4-cuda inspect: error: ")), (rc, err)

    prop()


def test_mutated_embedded_pte_only_raises_int4cuda_errors(files, tmp_path):
    @FUZZ
    @given(mutated(files["embedded"], header=8))
    def prop(b):
        _load(str(tmp_path), b)

    prop()


def test_mutated_ptd_only_raises_int4cuda_errors(files, tmp_path):
    @FUZZ
    @given(mutated(files["ptd"], header=0))
    def prop(b):
        _load(str(tmp_path), files["pte"], b)

    prop()
