"""Fixtures for the runtime tests: where the built runtime's ctest binaries are (the `runtime`
fixture itself is in tests/conftest.py, shared with tests/reliability)."""
import pytest


@pytest.fixture(scope="session")
def runtime_build_dir(runtime):
    return runtime.find_library().parent
