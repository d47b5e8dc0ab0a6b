"""The program C API (runtime/c_api.h via int4_cuda.cuda_runtime) on a machine without a GPU: programs
load, non-delegated methods run on ExecuTorch's CPU kernels, and a delegated method fails with an
error naming the missing GPU, never a crash."""
import pytest
import torch

from int4_cuda.errors import Int4CudaError

FIXTURE = "tests/fixtures/legacy_groups_n.pte"


def test_available_reports_reason(runtime):
    ok, why = runtime.available()
    assert isinstance(ok, bool) and why
    if not ok:
        assert "GPU" in why


def test_missing_file(runtime, tmp_path):
    with pytest.raises(Int4CudaError) as e:
        runtime.CudaProgram(str(tmp_path / "nope.pte"))
    assert "nope.pte" in str(e.value)


def test_non_delegated_program_runs_on_cpu(runtime, tmp_path):
    from executorch.exir import to_edge

    class M(torch.nn.Module):
        def forward(self, x, y):
            return x * 2.0 + y, x.sum(dim=-1)

    x, y = torch.randn(3, 5), torch.randn(3, 5)
    prog = to_edge(torch.export.export(M(), (x, y))).to_executorch()
    path = tmp_path / "plain.pte"
    path.write_bytes(prog.buffer)
    out = runtime.CudaProgram(str(path)).run("forward", x, y)
    torch.testing.assert_close(out[0], x * 2.0 + y)
    torch.testing.assert_close(out[1], x.sum(dim=-1))


def test_delegated_method_without_gpu_is_an_error(runtime):
    ok, _ = runtime.available()
    if ok:
        pytest.skip("a GPU is present; tests/runtime/test_runtime_gpu.py covers this machine")
    prog = runtime.CudaProgram(FIXTURE)
    with pytest.raises(Int4CudaError) as e:
        prog.run("forward", torch.randn(4, 64, dtype=torch.bfloat16))
    assert "GPU" in str(e.value)
