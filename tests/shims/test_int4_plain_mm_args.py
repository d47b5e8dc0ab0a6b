"""Argument checks of the int4_plain_mm launcher, through its C ABI. CPU only: every check runs on the
host before any CUDA call, so no GPU (or driver) is needed and no kernel is ever launched here."""
import pytest

# Status codes: shims/int4_plain_mm.h (enum int4_cuda_status). Stable ABI values.
OK = 0
ERR_NULL_X, ERR_NULL_QDATA, ERR_NULL_SCALE, ERR_NULL_ZERO, ERR_NULL_OUT = 1, 2, 3, 4, 5
ERR_BAD_M, ERR_BAD_N, ERR_BAD_K = 6, 7, 8
ERR_BAD_GROUP_SIZE, ERR_K_NOT_DIVISIBLE, ERR_TOO_LARGE = 9, 10, 11
ERR_MISALIGNED_X, ERR_MISALIGNED_QDATA, ERR_MISALIGNED_SCALE = 12, 13, 14
ERR_MISALIGNED_ZERO, ERR_MISALIGNED_OUT, ERR_LAUNCH = 15, 16, 17
ERR_MISALIGNED_WORKSPACE = 18
WS = 0x600000  # a fake, aligned workspace address

# Fake, well-aligned device addresses: never dereferenced because every case below fails a check.
GOOD = dict(x=0x100000, qdata=0x200000, scale=0x300000, zero=0x400000, out=0x500000,
            M=1, N=4096, K=4096, gs=32)

CASES = [
    (dict(x=None), ERR_NULL_X, "x"),
    (dict(qdata=None), ERR_NULL_QDATA, "qdata"),
    (dict(scale=None), ERR_NULL_SCALE, "scale"),
    (dict(zero=None), ERR_NULL_ZERO, "zero"),
    (dict(out=None), ERR_NULL_OUT, "out"),
    (dict(M=0), ERR_BAD_M, "M"),
    (dict(M=-3), ERR_BAD_M, "M"),
    (dict(N=0), ERR_BAD_N, "N"),
    (dict(N=-1), ERR_BAD_N, "N"),
    (dict(K=0), ERR_BAD_K, "K"),
    (dict(K=-64), ERR_BAD_K, "K"),
    (dict(gs=16), ERR_BAD_GROUP_SIZE, "group_size"),
    (dict(gs=0), ERR_BAD_GROUP_SIZE, "group_size"),
    (dict(gs=-32), ERR_BAD_GROUP_SIZE, "group_size"),
    (dict(gs=96), ERR_BAD_GROUP_SIZE, "group_size"),
    (dict(gs=512), ERR_BAD_GROUP_SIZE, "group_size"),
    (dict(K=576, gs=128), ERR_K_NOT_DIVISIBLE, "divisible"),
    (dict(K=4096 + 32, gs=64), ERR_K_NOT_DIVISIBLE, "divisible"),
    (dict(K=100, gs=32), ERR_K_NOT_DIVISIBLE, "divisible"),
    (dict(M=(1 << 30) + 1), ERR_TOO_LARGE, "2^30"),
    (dict(N=1 << 40), ERR_TOO_LARGE, "2^30"),
    (dict(K=1 << 31, gs=32), ERR_TOO_LARGE, "2^30"),
    (dict(x=0x100008), ERR_MISALIGNED_X, "x must be 16-byte aligned"),
    (dict(x=0x100002), ERR_MISALIGNED_X, "x must be 16-byte aligned"),
    (dict(qdata=0x200004), ERR_MISALIGNED_QDATA, "qdata must be 16-byte aligned"),
    (dict(qdata=0x200001), ERR_MISALIGNED_QDATA, "qdata must be 16-byte aligned"),
    (dict(scale=0x300001), ERR_MISALIGNED_SCALE, "scale must be 2-byte aligned"),
    (dict(zero=0x400001), ERR_MISALIGNED_ZERO, "zero must be 2-byte aligned"),
    (dict(out=0x500001), ERR_MISALIGNED_OUT, "out must be 2-byte aligned"),
]


def call(lib, **over):
    a = dict(GOOD, **over)
    return lib.int4_cuda_int4_plain_mm(a["x"], a["qdata"], a["scale"], a["zero"], a["out"],
                                       a["M"], a["N"], a["K"], a["gs"], None)


def call_ws(lib, ws=WS, ws_bytes=1 << 20, **over):
    a = dict(GOOD, **over)
    return lib.int4_cuda_int4_plain_mm_ws(a["x"], a["qdata"], a["scale"], a["zero"], a["out"],
                                          a["M"], a["N"], a["K"], a["gs"], ws, ws_bytes, None)


@pytest.mark.parametrize("over,code,words", CASES, ids=[f"{c[1]}-{'-'.join(f'{k}={v}' for k, v in c[0].items())}" for c in CASES])
def test_ws_entry_same_checks(shims_lib, over, code, words):
    assert call_ws(shims_lib, **over) == code


@pytest.mark.parametrize("ws", [0x600008, 0x600001, 0x600004])
def test_misaligned_workspace(shims_lib, ws):
    assert call_ws(shims_lib, ws=ws) == ERR_MISALIGNED_WORKSPACE
    text = shims_lib.int4_cuda_status_string(ERR_MISALIGNED_WORKSPACE).decode()
    assert "workspace must be 16-byte aligned" in text, text
    # The workspace is checked after every other argument.
    assert call_ws(shims_lib, ws=ws, out=0x500001) == ERR_MISALIGNED_OUT
    rc = shims_lib.int4_cuda_int4_plain_mm_variant(GOOD["x"], GOOD["qdata"], GOOD["scale"], GOOD["zero"], GOOD["out"],
                                                   1, 4096, 4096, 32, ws, 1 << 20, None, 31)
    assert rc == ERR_MISALIGNED_WORKSPACE


def test_no_workspace_is_not_an_error(shims_lib):
    # NULL (with or without a size) means "none": the checks stop at the misaligned out, not at the workspace.
    assert call_ws(shims_lib, ws=None, ws_bytes=0, out=0x500001) == ERR_MISALIGNED_OUT
    assert call_ws(shims_lib, ws=None, ws_bytes=1 << 20, out=0x500001) == ERR_MISALIGNED_OUT


@pytest.mark.parametrize("over,code,words", CASES, ids=[f"{c[1]}-{'-'.join(f'{k}={v}' for k, v in c[0].items())}" for c in CASES])
def test_bad_argument_code(shims_lib, over, code, words):
    assert call(shims_lib, **over) == code
    text = shims_lib.int4_cuda_status_string(code).decode()
    assert words in text, text


def test_first_failing_check_wins(shims_lib):
    # null x is reported before a bad group size and a misaligned out
    assert call(shims_lib, x=None, gs=7, out=0x500001) == ERR_NULL_X
    assert call(shims_lib, M=0, N=0) == ERR_BAD_M
    assert call(shims_lib, gs=48, K=100) == ERR_BAD_GROUP_SIZE


def test_status_strings_name_the_argument(shims_lib):
    s = lambda c: shims_lib.int4_cuda_status_string(c).decode()
    assert s(OK) == "ok"
    assert "x" in s(ERR_NULL_X) and "null" in s(ERR_NULL_X)
    for code, name in [(ERR_NULL_QDATA, "qdata"), (ERR_NULL_SCALE, "scale"), (ERR_NULL_ZERO, "zero"),
                       (ERR_NULL_OUT, "out"), (ERR_MISALIGNED_QDATA, "qdata"), (ERR_MISALIGNED_OUT, "out")]:
        assert name in s(code)
    assert "CUDA" in s(ERR_LAUNCH)
    assert "unknown" in s(999) and "unknown" in s(-1)


def test_valid_group_sizes_pass_the_checks(shims_lib):
    # Valid shapes with one bad pointer at the end of the check order: the code proves every earlier
    # check (M, N, K, group size, divisibility, size) accepted the arguments.
    for K, gs in [(4096, 32), (4096, 64), (4096, 128), (4096, 256), (576, 32), (576, 64), (1536, 256)]:
        assert call(shims_lib, K=K, gs=gs, out=0x500001) == ERR_MISALIGNED_OUT


def test_variant_entry_checks_arguments(shims_lib):
    a = dict(GOOD, x=None)
    rc = shims_lib.int4_cuda_int4_plain_mm_variant(a["x"], a["qdata"], a["scale"], a["zero"], a["out"],
                                                   a["M"], a["N"], a["K"], a["gs"], None, 0, None, 1)
    assert rc == ERR_NULL_X


def call_f32(lib, **over):
    a = dict(GOOD, **over)
    return lib.int4_cuda_int4_plain_mm_f32(a["x"], a["qdata"], a["scale"], a["zero"], a["out"],
                                           a["M"], a["N"], a["K"], a["gs"], None)


@pytest.mark.parametrize("over,code,words", CASES, ids=[f"{c[1]}-{'-'.join(f'{k}={v}' for k, v in c[0].items())}" for c in CASES])
def test_f32_entry_same_checks(shims_lib, over, code, words):
    assert call_f32(shims_lib, **over) == code


def test_f32_out_needs_4_byte_alignment(shims_lib):
    # 2-byte aligned is enough for a bf16 out (a case above), not for an f32 one.
    assert call_f32(shims_lib, out=0x500002) == ERR_MISALIGNED_OUT
    assert "4-byte aligned (f32)" in shims_lib.int4_cuda_status_string(ERR_MISALIGNED_OUT).decode()
    rc = shims_lib.int4_cuda_int4_plain_mm_f32_variant(GOOD["x"], GOOD["qdata"], GOOD["scale"], GOOD["zero"], 0x500002,
                                                       1, 4096, 4096, 32, None, 9)
    assert rc == ERR_MISALIGNED_OUT
