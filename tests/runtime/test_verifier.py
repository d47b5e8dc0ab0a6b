"""The C++ runtime's blob verifier (what init() checks), host only: run from pytest through ctypes on
real exported files and their malformed variants, plus the C++ ctest binaries. No GPU needed."""
import subprocess

import pytest
import torch

import int4_cuda
from int4_cuda.blob import decode_blob
from int4_cuda.errors import LEGACY_LAYOUT_MESSAGE
from int4_cuda.pte_file import ProgramFile

from testutil import export_mlp_pair
from int4_cuda.relayout import pack_graph, relayout, rewrite
from int4_cuda.schema import FormatVersion, WeightLayout

# ExecuTorch Error codes (runtime/core/error.h).
OK, INVALID_PROGRAM, INVALID_EXTERNAL_DATA, NOT_SUPPORTED, INCOMPATIBLE = 0x00, 0x23, 0x24, 0x10, 0x30
FIXTURE = "tests/fixtures/legacy_groups_n.pte"


@pytest.mark.parametrize("binary", ["int4_cuda_blob_verifier_test", "int4_cuda_memory_planner_test"])
def test_ctest_binaries(runtime_build_dir, binary):
    exe = runtime_build_dir / binary
    assert exe.is_file(), f"{exe} missing: rebuild"
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return export_mlp_pair(tmp_path_factory.mktemp("rt"), dynamic_batch=True)


def _sizes(pf):
    def size(key):
        b = pf.named_bytes(key)
        return None if b is None else len(b)
    return size


def verify_file(runtime, pte, ptd=None, sizes_from=None):
    """[(code, message)] for every int4_cuda delegate of the file, verified by the C++ runtime."""
    pf = ProgramFile.open(str(pte), None if ptd is None else str(ptd))
    named = _sizes(sizes_from or pf)
    return [runtime.verify_blob(d.blob, named) for d in pf.delegates()]


def _blob(files):
    pf = ProgramFile.open(files.pte)
    (d,) = pf.delegates()
    return pf, d.blob


def test_exported_file_verifies(runtime, exported):
    assert verify_file(runtime, exported["m"].pte) == [(OK, "")]


def test_legacy_fixture_refused_with_shared_text(runtime):
    pf = ProgramFile.open(FIXTURE)
    (d,) = pf.delegates()
    g = decode_blob(d.blob, FIXTURE)
    legacy = [w.name for w in g.int4Weights if w.layout == WeightLayout.LEGACY_GROUPS_N]
    square = [w.name for w in g.int4Weights if w.n == w.k // w.groupSize]
    assert legacy and square, "fixture must hold a legacy weight with N == n_groups"
    code, msg = runtime.verify_blob(d.blob, _sizes(pf))
    assert code == INCOMPATIBLE
    assert msg == LEGACY_LAYOUT_MESSAGE.format(weight=legacy[0])
    assert runtime.legacy_layout_message("x.y") == LEGACY_LAYOUT_MESSAGE.format(weight="x.y")


def test_square_legacy_made_from_export(runtime, exported, tmp_path):
    # N == n_groups: Linear(64 -> 2) with group size 32 -> scale [2, 2] in either layout.
    torch.manual_seed(3)
    m = torch.nn.Sequential(torch.nn.Linear(64, 2, bias=False)).to(torch.bfloat16)
    int4_cuda.quantize_(m, 32)
    files = int4_cuda.export_to_files(m, (torch.randn(3, 64, dtype=torch.bfloat16),), str(tmp_path), name="sq")
    assert verify_file(runtime, files.pte) == [(OK, "")]
    dst = str(tmp_path / "sq_legacy.pte")
    relayout(files.pte, dst, WeightLayout.LEGACY_GROUPS_N)
    ((code, msg),) = verify_file(runtime, dst)
    assert code == INCOMPATIBLE and msg == LEGACY_LAYOUT_MESSAGE.format(weight=decode_blob(_blob_of(dst), dst).int4Weights[0].name)


def _blob_of(pte):
    (d,) = ProgramFile.open(pte).delegates()
    return d.blob


def _edited(exported, edit):
    pf, blob = _blob(exported["m"])
    g = decode_blob(blob, "t")
    out = edit(g)
    return pf, (out if isinstance(out, bytes) else pack_graph(g))


def _check_bad(runtime, pf, blob, code=None, part=None, sizes=None):
    got, msg = runtime.verify_blob(blob, sizes or _sizes(pf))
    assert got != OK, "malformed blob accepted"
    assert msg and "\n" not in msg, repr(msg)
    if code is not None:
        assert got == code, (hex(got), msg)
    if part is not None:
        assert part in msg, msg
    return msg


@pytest.mark.parametrize("cut", [0, 4, 8, 20, 100, -40, -1])
def test_truncated(runtime, exported, cut):
    pf, blob = _blob(exported["m"])
    _check_bad(runtime, pf, blob[:cut])


def test_wrong_identifier(runtime, exported):
    pf, blob = _blob(exported["m"])
    _check_bad(runtime, pf, blob[:4] + b"XXXX" + blob[8:], INVALID_PROGRAM, "not an int4_cuda delegate blob")
    _check_bad(runtime, pf, b"\0" * 64, INVALID_PROGRAM)


def test_wrong_version_through_rewrite(runtime, exported, tmp_path):
    def edit(g, pf, new, where):
        g.version = FormatVersion.CURRENT + 1
        return pack_graph(g)
    dst = str(tmp_path / "v2.pte")
    rewrite(exported["m"].pte, dst, edit)
    ((code, msg),) = verify_file(runtime, dst)
    assert code == INCOMPATIBLE and "format version 2, but this build reads version 1" in msg


def test_constant_size_disagrees_with_shape(runtime, exported):
    def edit(g):
        g.values[g.int4Weights[0].scale].dims[0].offset += 1
    pf, blob = _edited(exported, edit)
    _check_bad(runtime, pf, blob, INVALID_EXTERNAL_DATA, "bytes, but its shape")


def test_weight_shape_mismatch(runtime, exported):
    def edit(g):
        g.int4Weights[0].n += 1
    pf, blob = _edited(exported, edit)
    _check_bad(runtime, pf, blob)


def test_unsupported_group_size(runtime, exported):
    def edit(g):
        g.int4Weights[0].groupSize = 16
    pf, blob = _edited(exported, edit)
    _check_bad(runtime, pf, blob, NOT_SUPPORTED, "group size 16")


def test_missing_named_data(runtime, exported):
    pf, blob = _blob(exported["m"])
    other = ProgramFile.open(exported["other"].pte)
    _check_bad(runtime, pf, blob, INVALID_EXTERNAL_DATA, "is in neither the .pte nor its .ptd", sizes=_sizes(other))
    _check_bad(runtime, pf, blob, INVALID_EXTERNAL_DATA, sizes=lambda k: None)


@pytest.mark.parametrize("what", ["op_input", "op_output", "graph_output", "graph_input", "weight_index",
                                  "weight_value", "symbol", "symbol_value"])
def test_out_of_range_indices(runtime, exported, what):
    def edit(g):
        if what == "op_input":
            g.ops[0].inputs[0] = 999
        elif what == "op_output":
            g.ops[-1].outputs[0] = 999
        elif what == "graph_output":
            g.outputs[0] = len(g.values)
        elif what == "graph_input":
            g.inputs[0] = 12345
        elif what == "weight_index":
            next(op for op in g.ops if op.argType).arg.weight = 99
        elif what == "weight_value":
            g.int4Weights[0].qdata = 4000
        elif what == "symbol":
            g.values[-1].dims[0].symbol = 7
        elif what == "symbol_value":
            g.symbols[0].value = 500
    pf, blob = _edited(exported, edit)
    _check_bad(runtime, pf, blob)


def test_random_byte_flips_never_crash(runtime, exported):
    pf, blob = _blob(exported["m"])
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        b = bytearray(blob)
        for i in torch.randint(8, len(b), (3,), generator=gen).tolist():
            b[i] ^= 0xFF
        code, msg = runtime.verify_blob(bytes(b), _sizes(pf))
        assert code == OK or (msg and "\n" not in msg)
