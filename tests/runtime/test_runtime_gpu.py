"""The CUDA runtime against the reference executor, op by op and on transformer-shaped programs,
on fresh random inputs. Each program is exported in the test, run through the C API
(int4_cuda.cuda_runtime.CudaProgram) and through int4_cuda.load(...).run step by step (programs
with KV caches keep state across steps in both)."""
import os

import pytest
import torch

import int4_cuda

from cases import build, cases, sqnr_db

pytestmark = pytest.mark.gpu

MIN_SQNR_DB = 40.0


@pytest.fixture(scope="module")
def gpu_runtime(runtime):
    ok, why = runtime.available()
    if not ok:
        pytest.skip(why)
    return runtime


def _compare(case_name, step, i, ref, out, exact):
    assert type(ref) is type(out), (case_name, step, i)
    if not isinstance(ref, torch.Tensor):
        assert ref == out
        return float("inf")
    assert out.dtype == ref.dtype and out.shape == ref.shape, (case_name, step, i, out.dtype, out.shape, ref.shape)
    if exact or not ref.is_floating_point():
        assert torch.equal(out, ref), (case_name, step, i)
        return float("inf")
    assert torch.isfinite(out.float()).all(), (case_name, step, i)
    db = sqnr_db(ref, out)
    assert db >= MIN_SQNR_DB, f"{case_name} step {step} output {i}: SQNR {db:.1f} dB < {MIN_SQNR_DB}"
    return db


@pytest.mark.parametrize("make", cases(), ids=lambda f: f.__name__)
def test_matches_reference(gpu_runtime, make, tmp_path):
    seed = int.from_bytes(os.urandom(4), "little")
    case, files = build(make, str(tmp_path), seed)
    ref = int4_cuda.load(files.pte, files.ptd)
    prog = gpu_runtime.CudaProgram(files.pte, files.ptd)
    worst = float("inf")
    for s, inputs in enumerate(case.steps):
        want = ref.run("forward", *inputs)
        got = prog.run("forward", *inputs)
        assert len(got) == len(want)
        for i, (r, o) in enumerate(zip(want, got)):
            worst = min(worst, _compare(case.name, s, i, r, o, i in case.exact))
    print(f"{case.name}: seed {seed}, {len(case.steps)} steps, worst SQNR {worst:.1f} dB")


def test_kv_position_past_cache_is_an_error(gpu_runtime, tmp_path):
    from int4_cuda.errors import Int4CudaError

    make = next(f for f in cases() if f.__name__ == "llm_ops")
    case, files = build(make, str(tmp_path))
    prog = gpu_runtime.CudaProgram(files.pte, files.ptd)
    x = torch.randn(1, 4, 128).to(torch.bfloat16)
    with pytest.raises(Int4CudaError) as e:
        prog.run("forward", x, torch.tensor([62], dtype=torch.int64))  # 62 + 4 > max_seq 64
    assert "do not fit the KV cache" in str(e.value) or "cos/sin" in str(e.value)
    prog.run("forward", x, torch.tensor([0], dtype=torch.int64))  # the program still works after


def test_legacy_fixture_refused_on_gpu(gpu_runtime, capfd):
    from int4_cuda.blob import decode_blob
    from int4_cuda.errors import Int4CudaError, LEGACY_LAYOUT_MESSAGE
    from int4_cuda.pte_file import ProgramFile
    from int4_cuda.schema import WeightLayout

    fixture = "tests/fixtures/legacy_groups_n.pte"
    (d,) = ProgramFile.open(fixture).delegates()
    name = next(w.name for w in decode_blob(d.blob, fixture).int4Weights if w.layout == WeightLayout.LEGACY_GROUPS_N)
    expected = LEGACY_LAYOUT_MESSAGE.format(weight=name)
    prog = gpu_runtime.CudaProgram(fixture)
    with pytest.raises(Int4CudaError) as e:
        prog.load_method("forward")
    assert str(e.value).endswith(expected)
    lines = [l for l in capfd.readouterr().err.splitlines() if "legacy [n_groups, N]" in l]
    assert len(lines) == 1 and lines[0].endswith("] " + expected), lines
