"""Bad files give one clear Int4CudaFileError (which file, what, the fix), never a deep traceback."""
import shutil

import pytest
import torch

import int4_cuda
from int4_cuda.errors import Int4CudaFileError
from int4_cuda.relayout import pack_graph, rewrite
from int4_cuda.schema import FormatVersion


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("exp")
    files = {}
    for name, seed in (("m", 1), ("other", 2)):
        torch.manual_seed(seed)
        m = torch.nn.Sequential(torch.nn.Linear(64, 128, bias=False), torch.nn.Linear(128, 64, bias=False)).to(torch.bfloat16)
        int4_cuda.quantize_(m, 32)
        files[name] = int4_cuda.export_to_files(m, (torch.randn(2, 64, dtype=torch.bfloat16),), str(d), name=name)
    return files


def err(pte, ptd=None):
    with pytest.raises(Int4CudaFileError) as e:
        int4_cuda.load(str(pte), None if ptd is None else str(ptd))
    return str(e.value)


def test_missing_files(tmp_path, exported):
    assert "program file (.pte) not found" in err(tmp_path / "nope.pte")
    pte = tmp_path / "m.pte"
    shutil.copy(exported["m"].pte, pte)
    assert "needs its weights file" in err(pte) and "m.ptd (not found)" in err(pte)


@pytest.mark.parametrize("cut", [10, 200, -40])
def test_truncated_pte(tmp_path, exported, cut):
    data = open(exported["m"].pte, "rb").read()
    bad = tmp_path / "m.pte"
    bad.write_bytes(data[:cut])
    shutil.copy(exported["m"].ptd, tmp_path / "m.ptd")
    msg = err(bad)
    assert str(bad) in msg and ("corrupt or truncated" in msg or "not an ExecuTorch program" in msg)


def test_not_a_pte_and_truncated_ptd(tmp_path, exported):
    bad = tmp_path / "x.pte"
    bad.write_bytes(b"hello world, not a program" * 10)
    assert "not an ExecuTorch program" in err(bad)
    ptd = tmp_path / "m.ptd"
    ptd.write_bytes(open(exported["m"].ptd, "rb").read()[:100])
    msg = err(exported["m"].pte, ptd)
    assert str(ptd) in msg and "corrupt or truncated .ptd" in msg


def test_ptd_from_another_model(exported):
    msg = err(exported["m"].pte, exported["other"].ptd)
    assert "belongs to another model" in msg


def _edited(tmp_path, exported, edit):
    dst = str(tmp_path / "edited.pte")
    rewrite(exported["m"].pte, dst, edit)
    return dst


def test_unknown_format_version(tmp_path, exported):
    def edit(g, pf, new, where):
        g.version = FormatVersion.CURRENT + 1
        return pack_graph(g)
    assert "format version 2, but this build reads version 1" in err(_edited(tmp_path, exported, edit))


def test_wrong_identifier_and_garbage_blob(tmp_path, exported):
    assert "not an int4_cuda delegate blob" in err(_edited(tmp_path, exported, lambda g, *a: b"\0" * 64))
    def flip(g, *a):
        b = bytearray(pack_graph(g))
        for i in range(8, len(b), 7):
            b[i] ^= 0xFF
        return bytes(b)
    msg = err(_edited(tmp_path, exported, flip))
    assert "edited.pte" in msg


def test_constant_size_disagrees_with_shape(tmp_path, exported):
    def edit(g, pf, new, where):
        w = g.int4Weights[0]
        g.values[w.scale].dims[0].offset += 1
        return pack_graph(g)
    assert "bytes, but its shape" in err(_edited(tmp_path, exported, edit))


def test_shape_mismatch_of_weight(tmp_path, exported):
    def edit(g, pf, new, where):
        g.int4Weights[0].n += 1
        return pack_graph(g)
    assert "qdata must be a constant" in err(_edited(tmp_path, exported, edit))


def test_flipped_weight_byte_in_ptd(tmp_path, exported):
    """Constant keys are content hashes, so a damaged weight is caught even at the right size."""
    from int4_cuda.pte_file import ProgramFile

    pf = ProgramFile.open(exported["m"].pte)
    key = next(iter(pf._ptd.named_data))
    blob = pf.named_bytes(key)
    data = bytearray(open(exported["m"].ptd, "rb").read())
    at = data.find(blob) + len(blob) // 2
    data[at] ^= 0x10
    pte, ptd = tmp_path / "m.pte", tmp_path / "m.ptd"
    shutil.copy(exported["m"].pte, pte)
    ptd.write_bytes(bytes(data))
    assert "does not match its content hash: the weights file is damaged" in err(pte)
