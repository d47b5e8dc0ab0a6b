"""The C++ runtime's content-hash check of constants (runtime/constant_hash.cpp, run by init() before
the upload), host only, against Python's hashlib as the independent reference: an intact constant
passes, one flipped bit is refused with one line naming the key. Plus the ctest binary (known
answers, the multi-threaded path) and a real export through the same entry init() runs."""
import hashlib
import os
import random
import subprocess

import pytest

from int4_cuda.pte_file import ProgramFile

from testutil import export_mlp_pair

OK, INVALID_EXTERNAL_DATA = 0x00, 0x24
SIZES = [0, 1, 55, 56, 63, 64, 65, 4096, 100_003, 1 << 20]


def _key(data: bytes) -> str:
    return "i4cu." + hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("size", SIZES)
def test_intact_constant_passes(runtime, size):
    data = os.urandom(size)
    assert runtime.check_constant(_key(data), data) == (OK, "")


@pytest.mark.parametrize("size", [s for s in SIZES if s])
def test_flipped_byte_refused_naming_the_key(runtime, size):
    data = os.urandom(size)
    key = _key(data)
    bad = bytearray(data)
    bad[random.randrange(size)] ^= 1 << random.randrange(8)
    code, msg = runtime.check_constant(key, bytes(bad))
    assert code == INVALID_EXTERNAL_DATA, (hex(code), msg)
    assert key[:17] in msg and "does not match its content hash" in msg, msg
    assert "damaged or belongs to another model" in msg and "re-export" in msg and "\n" not in msg, msg
    assert hashlib.sha256(bad).hexdigest()[:12] in msg, msg  # the digest C++ computed is hashlib's


@pytest.mark.parametrize("edit", ["upper", "short", "long", "prefix", "nonhex", "empty"])
def test_malformed_key_refused(runtime, edit):
    data = os.urandom(100)
    key = _key(data)
    key = {"upper": key.upper(), "short": key[:-1], "long": key + "0", "prefix": "i4cv" + key[4:],
           "nonhex": key[:-1] + "g", "empty": ""}[edit]
    code, msg = runtime.check_constant(key, data)
    assert code == INVALID_EXTERNAL_DATA and "is not an int4_cuda content hash" in msg and "\n" not in msg, msg


def test_ctest_binary(runtime, runtime_build_dir):
    exe = runtime_build_dir / "int4_cuda_constant_hash_test"
    assert exe.is_file(), f"{exe} missing: rebuild (or carry it with the .so files)"
    # It links the wheel's libexecutorch.so (for ET_LOG): found by its build RPATH here, by
    # LD_LIBRARY_PATH where the build folder was carried to another machine.
    env = dict(os.environ)
    et = runtime._executorch_lib_dir()
    if et is not None:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(et), env.get("LD_LIBRARY_PATH")) if p)
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return export_mlp_pair(tmp_path_factory.mktemp("hash"))


def test_export_passes_and_each_flipped_constant_is_named(runtime, exported):
    """Every constant of a real export through verify_blob_data (the verifier + the hash check, as
    init() runs them): intact, accepted; one bit flipped in any one constant, refused naming it."""
    pf = ProgramFile.open(exported["m"].pte, exported["m"].ptd)
    (d,) = pf.delegates()
    assert runtime.verify_blob_data(d.blob, pf.named_bytes) == (OK, "")
    keys = list(pf._ptd.named_data)
    assert keys and all(k == _key(pf.named_bytes(k)) for k in keys)  # hashlib agrees with the writer
    for key in keys:
        def named(k, key=key):
            b = pf.named_bytes(k)
            if k != key or b is None or not b:
                return b
            b = bytearray(b)
            b[random.randrange(len(b))] ^= 0x80
            return bytes(b)

        code, msg = runtime.verify_blob_data(d.blob, named)
        assert code == INVALID_EXTERNAL_DATA and key[:17] in msg and "content hash" in msg, (key, hex(code), msg)
