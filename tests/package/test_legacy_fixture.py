"""The committed legacy-layout fixture: refused with the actionable message, upgradable."""
import os

import pytest
import torch

import int4_cuda
from int4_cuda.blob import decode_blob
from int4_cuda.errors import Int4CudaFileError, LEGACY_LAYOUT_MESSAGE
from int4_cuda.pte_file import ProgramFile
from int4_cuda.relayout import upgrade
from int4_cuda.schema import WeightLayout

from testutil import sqnr_db

FIX = os.path.join(os.path.dirname(__file__), "..", "fixtures")
LEGACY = os.path.join(FIX, "legacy_groups_n.pte")


def test_fixture_is_legacy_with_a_square_weight():
    (d,) = ProgramFile.open(LEGACY).delegates()
    g = decode_blob(d.blob, LEGACY)
    assert {w.layout for w in g.int4Weights} == {WeightLayout.LEGACY_GROUPS_N}
    assert any(w.n == w.k // w.groupSize for w in g.int4Weights)


def test_reference_executor_refuses_legacy_with_the_fix():
    with pytest.raises(Int4CudaFileError) as e:
        int4_cuda.load(LEGACY)
    assert str(e.value) == f"{LEGACY}: " + LEGACY_LAYOUT_MESSAGE.format(weight="0")
    assert "int4-cuda upgrade" in str(e.value) and "LEGACY_GROUPS_N" in str(e.value)


def test_upgrade_runs_and_matches_golden(tmp_path):
    io = torch.load(os.path.join(FIX, "legacy_groups_n_io.pt"))
    new = str(tmp_path / "upgraded.pte")
    assert upgrade(LEGACY, new) == ["0", "2"]
    (y,) = int4_cuda.load(new).run("forward", io["x"])
    assert sqnr_db(io["y"], y) >= 40
    # the square weight (N == n_groups) came through: refusing a legacy copy of it still works
    g = decode_blob(ProgramFile.open(new).delegates()[0].blob, new)
    assert {w.layout for w in g.int4Weights} == {WeightLayout.COALESCED_N_GROUPS}
    assert upgrade(new, str(tmp_path / "again.pte")) == []  # nothing left to move
