"""int4_plain_mm on the GPU, through its C ABI (ctypes on torch tensors' data_ptr()), against a float64
dequant reference computed here from the packed bytes. Needs an NVIDIA GPU: marked `gpu`."""

import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.gpu

M_PATHS = [1, 2, 3, 4, 5, 8, 9, 16, 17, 32, 33, 63, 64, 65, 128, 512]
DECODE_VARIANTS = [1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 14, 15, 26, 27, 28, 29, 30, 31, 32, 33]  # see int4_cuda_int4_plain_mm_variant in shims/int4_plain_mm.h
PREFILL_VARIANT = 9
PREFILL_BM64_VARIANT = 17  # the prefill kernel with 64-token tiles


@pytest.fixture(scope="module")
def dev():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return torch.device("cuda")


def make_inputs(M, N, K, gs, dev, seed):
    g = torch.Generator(device=dev).manual_seed(seed)
    x = torch.randn(M, K, device=dev, generator=g).to(torch.bfloat16)
    qdata = torch.randint(0, 256, (N, K // 2), device=dev, generator=g, dtype=torch.int32).to(torch.uint8)
    # torchao-like: scale > 0 (range/15), zero = min + 8*scale (float domain)
    scale = (torch.rand(N, K // gs, device=dev, generator=g) * 0.02 + 0.002).to(torch.bfloat16)
    zero = (torch.randn(N, K // gs, device=dev, generator=g) * 0.02).to(torch.bfloat16)
    return x, qdata, scale, zero


def reference(x, qdata, scale, zero, gs):
    """float64: W[n,k] = (u[n,k] - 8) * scale[n,k//gs] + zero[n,k//gs]; byte j = u(2j) | u(2j+1) << 4."""
    q = qdata.to(torch.int64)
    u = torch.stack([q & 0xF, q >> 4], dim=-1).reshape(q.shape[0], -1)  # [N, K], k = 2j, 2j+1
    s = scale.double().repeat_interleave(gs, dim=1)
    z = zero.double().repeat_interleave(gs, dim=1)
    w = (u.double() - 8.0) * s + z
    return x.double() @ w.t()


WORKSPACE_BYTES = 1 << 20  # INT4_CUDA_PLAIN_MM_WORKSPACE_BYTES
SK_COUNT_BYTES = 4096 * 4  # the workspace's arrival counters come first (launch_decode_tma)
_WS = []


def workspace(dev):
    """One workspace for the whole module (one GPU), zero-filled once, as the runtime keeps one per
    executor: every call must leave it usable for the next, whatever the shape."""
    if not _WS:
        _WS.append(torch.zeros(WORKSPACE_BYTES, dtype=torch.uint8, device=dev))
    return _WS[0]


def run(lib, x, qdata, scale, zero, out, M, N, K, gs, variant=None, ws=True):
    """variant None: the runtime's entry (int4_cuda_int4_plain_mm_ws) with the module's workspace, or with
    ws=False the entry without one; else that variant, with the workspace unless ws=False."""
    stream = torch.cuda.current_stream().cuda_stream
    args = (x.data_ptr(), qdata.data_ptr(), scale.data_ptr(), zero.data_ptr(), out.data_ptr(), M, N, K, gs)
    w = workspace(x.device)
    wargs = (w.data_ptr(), w.numel()) if ws else (None, 0)
    if variant is None:
        rc = lib.int4_cuda_int4_plain_mm_ws(*args, *wargs, stream) if ws else lib.int4_cuda_int4_plain_mm(*args, stream)
    else:
        rc = lib.int4_cuda_int4_plain_mm_variant(*args, *wargs, stream, variant)
    assert rc == 0, (rc, lib.int4_cuda_status_string(rc).decode(), lib.int4_cuda_last_cuda_error().decode())
    torch.cuda.synchronize()


def check(lib, M, N, K, gs, dev, variant=None, seed=0, out_offset=0, ws=True):
    x, qdata, scale, zero = make_inputs(M, N, K, gs, dev, seed=seed * 7919 + M * 131 + N * 17 + K + gs)
    buf = torch.full((M * N + out_offset,), float("nan"), device=dev, dtype=torch.bfloat16)
    out = buf[out_offset:].view(M, N)
    run(lib, x, qdata, scale, zero, out, M, N, K, gs, variant, ws=ws)
    ref = reference(x, qdata, scale, zero, gs)
    o = out.double()
    assert not torch.isnan(o).any(), f"{int(torch.isnan(o).sum())} output elements not written"
    rel = (torch.linalg.norm(o - ref) / torch.linalg.norm(ref)).item()
    assert rel <= 1e-2, f"relative error {rel:.3e} (M={M} N={N} K={K} gs={gs} variant={variant})"
    return rel


# Every M path x every group size on one shape with N not a multiple of any tile size.
@pytest.mark.parametrize("gs", [32, 64, 128, 256])
@pytest.mark.parametrize("M", M_PATHS)
def test_all_m_all_gs(shims_lib, dev, M, gs):
    check(shims_lib, M, 1000, 1536, gs, dev)


# SmolLM2 K values (576 is not a multiple of 128) and awkward N.
@pytest.mark.parametrize("gs", [32, 64])
@pytest.mark.parametrize("N,K", [(192, 576), (576, 576), (1536, 576), (576, 1536), (3072, 1536)])
@pytest.mark.parametrize("M", M_PATHS)
def test_smollm2_shapes(shims_lib, dev, M, N, K, gs):
    check(shims_lib, M, N, K, gs, dev)


# Tiny K, and K % 64 == 32 (the prefill kernel's 64-k tile is half-filled at the end).
@pytest.mark.parametrize("N,K", [(130, 32), (320, 96), (64, 160), (1000, 2080)])
@pytest.mark.parametrize("M", M_PATHS)
def test_k_tail(shims_lib, dev, M, N, K):
    check(shims_lib, M, N, K, 32, dev)


@pytest.mark.parametrize("M", [1, 2, 8, 16, 65, 512])
def test_vocab_projection(shims_lib, dev, M):
    check(shims_lib, M, 49152, 576, 32, dev)


@pytest.mark.parametrize("gs", [32, 128])
@pytest.mark.parametrize("M", [1, 4, 8, 64, 128])
def test_llama_shape(shims_lib, dev, M, gs):
    check(shims_lib, M, 4096, 4096, gs, dev)


# Many row tiles at M = 1: the default takes the persistent kernel that stages x in shared memory
# (XS), with and without K % 128 == 0.
@pytest.mark.parametrize("N,K,gs", [(8000, 4096, 32), (8000, 4096, 128), (7001, 4096, 128), (6500, 2080, 32), (7001, 5376, 64)])
def test_many_tiles_m1(shims_lib, dev, N, K, gs):
    check(shims_lib, 1, N, K, gs, dev)


# Odd N and an output that is only 2-byte aligned (exercises the scalar-store epilogue paths).
@pytest.mark.parametrize("M", [1, 3, 8, 9, 64, 130])
@pytest.mark.parametrize("N,out_offset", [(1001, 0), (1000, 1), (7, 0)])
def test_odd_n_and_unaligned_out(shims_lib, dev, M, N, out_offset):
    check(shims_lib, M, N, 576, 64, dev, out_offset=out_offset)


# Every kernel variant the benchmark may time computes the same function.
@pytest.mark.parametrize("variant", DECODE_VARIANTS + [8, PREFILL_VARIANT, PREFILL_BM64_VARIANT])
@pytest.mark.parametrize("M", [1, 2, 3, 4, 5, 8, 9, 16, 17, 32])
@pytest.mark.parametrize("N,K,gs", [(1000, 1536, 32), (333, 5376, 128), (64, 21504, 256), (20000, 576, 64), (20000, 576, 32)])
def test_variants(shims_lib, dev, variant, M, N, K, gs):
    check(shims_lib, M, N, K, gs, dev, variant=variant)


# The whole-line kernel (variant 30) rounds each warp's 128-k iterations up to an even count: odd counts,
# a short last warp and warps with nothing to do (K = 4224: 33 iterations as 6, 6, 6, 6, 6, 3, 0, 0;
# K = 640: 5 warps, 2, 2, 1, 0, 0), at every group size.
@pytest.mark.parametrize("N,K,gs", [(700, 4224, 128), (300, 1152, 128), (129, 640, 32), (1000, 5120, 256),
                                    (4096, 4608, 64)])
def test_whole_line_kernel_odd_iterations(shims_lib, dev, N, K, gs):
    check(shims_lib, 1, N, K, gs, dev, variant=30)


@pytest.mark.parametrize("M,variant", [(1, None), (8, None), (32, None), (1, 26), (1, 28), (1, 29), (8, 29), (1, 31),
                                       (200, None), (200, 19), (200, 24)])
def test_scale_zero_only_2byte_aligned(shims_lib, dev, M, variant):
    """The contract asks scale/zero for 2-byte alignment only: no kernel may assume wider loads of them."""
    N, K, gs = 1000, 1536, 32
    x, qdata, scale, zero = make_inputs(M, N, K, gs, dev, seed=11)
    s_buf = torch.empty(N * (K // gs) + 1, device=dev, dtype=torch.bfloat16)
    z_buf = torch.empty_like(s_buf)
    s_odd, z_odd = s_buf[1:].view(N, K // gs), z_buf[1:].view(N, K // gs)
    s_odd.copy_(scale)
    z_odd.copy_(zero)
    assert s_odd.data_ptr() % 4 == 2 and z_odd.data_ptr() % 4 == 2
    out = torch.full((M, N), float("nan"), device=dev, dtype=torch.bfloat16)
    run(shims_lib, x, qdata, s_odd, z_odd, out, M, N, K, gs, variant)
    ref = reference(x, qdata, scale, zero, gs)
    rel = (torch.linalg.norm(out.double() - ref) / torch.linalg.norm(ref)).item()
    assert rel <= 1e-2, rel


def test_repeatable(shims_lib, dev):
    """Same inputs, same bits (no races, no reads of unwritten memory)."""
    M, N, K, gs = 8, 3000, 4096, 64
    x, qdata, scale, zero = make_inputs(M, N, K, gs, dev, seed=5)
    outs = []
    for _ in range(3):
        out = torch.full((M, N), float("nan"), device=dev, dtype=torch.bfloat16)
        run(shims_lib, x, qdata, scale, zero, out, M, N, K, gs)
        outs.append(out)
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])


# Token chunks (variant 16; the default for 32 < M <= 128 when the prefill grid is small) against the
# prefill kernel's shapes: chunk edges (33, 65, 100), K not a multiple of 128, every gs, many tiles.
@pytest.mark.parametrize("variant", [None, 16, PREFILL_VARIANT, PREFILL_BM64_VARIANT])
@pytest.mark.parametrize("M", [33, 40, 64, 65, 100, 128])
@pytest.mark.parametrize("N,K,gs", [(1000, 1536, 32), (333, 5376, 128), (700, 2080, 32), (3000, 576, 64), (64, 21504, 256)])
def test_token_chunks(shims_lib, dev, variant, M, N, K, gs):
    check(shims_lib, M, N, K, gs, dev, variant=variant)


# The prefill kernel with 64-token tiles at larger M: partial last tiles, K tails, every gs.
@pytest.mark.parametrize("M", [129, 200, 512])
@pytest.mark.parametrize("N,K,gs", [(1000, 1536, 32), (333, 5376, 128), (700, 2080, 32), (130, 576, 64), (64, 21504, 256)])
def test_prefill_bm64(shims_lib, dev, M, N, K, gs):
    check(shims_lib, M, N, K, gs, dev, variant=PREFILL_BM64_VARIANT)


# The Hopper wgmma prefill (variants 19-25; on other GPUs, or K % 64 != 0, they take the default
# dispatch): token tails, weight-row tails, K = 576 (9 k-tiles: uneven k shares when split over 2
# or 4 blocks), every gs, one k-tile (K = 64: the split variants run unsplit).
SM90_VARIANTS = [19, 20, 21, 22, 23, 24, 25]


@pytest.mark.parametrize("variant", SM90_VARIANTS)
@pytest.mark.parametrize("M", [1, 7, 33, 64, 65, 129, 200, 512])
@pytest.mark.parametrize("N,K,gs", [(1000, 1536, 32), (333, 5376, 128), (130, 576, 64), (64, 21504, 256), (3000, 4096, 32),
                                    (200, 64, 32)])
def test_prefill_sm90(shims_lib, dev, variant, M, N, K, gs):
    check(shims_lib, M, N, K, gs, dev, variant=variant)


# The Hopper prefill's wide scale path (more than 32 groups per row, a multiple of 8, 16-byte aligned:
# chunks of 8 groups through shared memory): a chunk serves gs / 8 k-tiles (4 at gs 32 ... 32 at gs 256),
# and a split block's k range may start in a chunk's last tiles (K = 1536 gs 32 split 4: k-tile 6 of
# tiles 4-7; 2560 gs 64 split 2 / 4; 5120 gs 128 split 4: tile 20 of 16-31; 10240 gs 256 split 4: tile 40
# of 32-63), with row tails; 4096 gs 128 (32 groups) and 448 gs 32 (14) take the 2-byte loads.
@pytest.mark.parametrize("variant", [None, 19, 21, 22, 24, 25])
@pytest.mark.parametrize("M,N,K,gs", [(300, 1000, 1536, 32), (129, 333, 2560, 64), (512, 700, 5120, 128),
                                      (200, 300, 10240, 256), (65, 129, 8192, 32), (100, 256, 448, 32),
                                      (130, 200, 4096, 128)])
def test_prefill_sm90_wide_scales(shims_lib, dev, variant, M, N, K, gs):
    check(shims_lib, M, N, K, gs, dev, variant=variant)


@pytest.mark.parametrize("N,out_offset", [(1001, 0), (1000, 1), (7, 0)])
def test_prefill_sm90_odd_n_and_unaligned_out(shims_lib, dev, N, out_offset):
    check(shims_lib, 300, N, 576, 64, dev, variant=19, out_offset=out_offset)


def test_prefill_sm90_two_launches(shims_lib, dev):
    """On an H100's 132 SMs, M = 300 over 140 weight-row tiles runs the whole waves in 256-token tiles
    and the last 8 row tiles in a second launch of 128-token tiles (launch_prefill_hopper): the
    second launch's tile offset must land on exactly the rows the first one left."""
    check(shims_lib, 300, 140 * 128, 128, 32, dev, variant=19)
    check(shims_lib, 300, 140 * 128 - 5, 128, 32, dev)


def launched_kernels(fn):
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]


@pytest.mark.parametrize("N,K,gs,w2", [(7000, 4096, 32, True), (5376, 21248, 64, True), (8000, 4608, 64, True),
                                        (4096, 4096, 32, False), (8000, 2080, 32, False), (4096, 14336, 32, False),
                                        (8000, 4096, 128, False)])
def test_w2_decode_is_what_runs_where_it_pays(shims_lib, dev, N, K, gs, w2):
    """M = 1: many row tiles, or long K without U = 2, with K % 256 == 0 take the 256-k iteration (W2)
    kernel (decode_policy's w2), at gs >= 64 only with >= 3 W2 iterations per warp; the few-iteration shapes,
    K % 256 != 0 and U = 2 keep the 128-k one, and at gs >= 128 the whole-line kernel takes the W2 shapes
    (next test: 8000x5376 gs 128). (On Hopper the TMA-ring kernel cannot take K = 21248 at gs 64, scale
    rows of 664 bytes, and 8000x4608 at gs 64 has too few stages per tile for it.)"""
    import re
    names = launched_kernels(lambda: check(shims_lib, 1, N, K, gs, dev))
    ran = any(re.search(r"int4_mm_decode_kernel<1, 1, 3, false, true, true, false, true, false>", n) for n in names)
    assert ran == w2, names


@pytest.mark.parametrize("N,K,gs,l2p", [(8000, 4096, 128, True), (7001, 4096, 128, True), (8000, 4096, 64, False),
                                        (8000, 4096, 32, False), (4096, 4096, 128, True), (6144, 4096, 256, True),
                                        (4096, 14336, 128, True), (2048, 8192, 128, True), (8000, 5376, 128, True),
                                        (5120, 5120, 128, True), (4096, 11008, 128, True), (4096, 3072, 128, False),
                                        (2048, 2048, 128, False), (1024, 4096, 128, False), (4096, 4096, 64, False),
                                        (8192, 8192, 128, False)])
def test_whole_line_l2_fetches_where_they_paid(shims_lib, dev, N, K, gs, l2p):
    """M = 1 at gs >= 128: the staged-x kernel whose weight loads fetch whole 128-byte lines into L2 (L2P)
    runs on many row tiles without W2 or U = 2 (8000x4096, 7001x4096), and, its warps taking whole lines
    of each row, wherever K % 256 == 0 with >= 4 iterations of 128 k per warp and >= 128 row tiles
    (decode_policy's lines: 4096x4096, 4096x14336, 2048x8192, W2's 8000x5376, and odd iteration counts
    rounded up to even, 5120x5120, 4096x11008). Not at gs 64, with 3 iterations (4096x3072) or fewer,
    few tiles (1024x4096), or many tiles with U = 2 (8192x8192). Every case checked against float64."""
    import re
    names = launched_kernels(lambda: check(shims_lib, 1, N, K, gs, dev))
    ran = any(re.search(r"int4_mm_decode_kernel<1, 1, 3, false, true, true, false, false, true>", n) for n in names)
    assert ran == l2p, names


@pytest.mark.parametrize("N,K,gs,M,u2", [(2048, 4096, 32, 1, True), (2048, 4096, 128, 1, True), (1024, 4096, 64, 4, True),
                                          (1920, 3584, 32, 2, True), (2064, 4096, 32, 1, False), (2048, 5120, 32, 1, False),
                                          (2048, 3072, 64, 1, False), (512, 4096, 32, 1, False), (2048, 4096, 32, 8, False)])
def test_u2_where_few_tiles_have_four_iterations_per_warp(shims_lib, dev, N, K, gs, M, u2):
    """M <= 4 with exactly 4 iterations of 128 k per warp (3072 < K <= 4096) and 64..128 row tiles (at most one
    block per SM) runs U = 2, one block per row tile (decode_policy's few), also ahead of the whole-line kernel
    at gs 128; not from 129 tiles up, with 3 or 5 iterations, 32 tiles, or M = 8. Checked against float64."""
    import re
    names = launched_kernels(lambda: check(shims_lib, M, N, K, gs, dev))
    ran = any(re.search(r"int4_mm_decode_kernel<2, 1, 2, false", n) for n in names)
    assert ran == u2, names


def tma_ring_available(dev):
    return torch.cuda.get_device_capability(dev) == (9, 0)


# The TMA-ring decode kernel (variant 31) on every case its index arithmetic has: N past the last full
# row tile, a last stage with fewer than 8 boxes (K = 5376: 21 of 24), many row tiles per block, long K,
# a scale box of 128 / 64 / 32 / 16 bytes per row (gs 32 / 64 / 128 / 256: each its own swizzle),
# one 256-k iteration, and the one-block-per-SM fallback for long K.
@pytest.mark.parametrize("N,K,gs", [(1000, 2048, 32), (333, 5376, 32), (9000, 4096, 32), (9000, 4096, 64),
                                    (4097, 4096, 128), (4096, 4096, 256), (17, 256, 32), (5000, 14336, 32),
                                    (64, 21504, 128), (300, 49152, 64)])
def test_tma_ring_decode(shims_lib, dev, N, K, gs):
    if not tma_ring_available(dev):
        pytest.skip("needs a compute-capability 9.0 GPU (sm_90a)")
    names = launched_kernels(lambda: check(shims_lib, 1, N, K, gs, dev, variant=31))
    assert any("int4_mm_decode_tma_kernel" in n for n in names), names


# Stream-K (variant 33: wherever tiles are left past the last whole round, with a workspace;
# shims/int4_plain_mm_tma_decode.cuh): the tiles past the last whole round of G = 2 x SMs blocks
# (1 x SMs for long K) are shared by stages of 2048 k (K > 2048, else there is nothing to share).
# Cases: fewer tiles than blocks (dp = 0; with 21 tiles x 3 stages most blocks get no unit at all),
# one or more whole rounds plus a remainder whose pieces are 1 stage (K = 4096) or many (K = 21504:
# 11 stages, the last of 4 boxes), N past the last full tile (rows >= N in a shared tile), every
# scale-box width, and the one-block-per-SM grid. Against float64, deterministic, counters left at
# zero, and the pieces really went through the workspace (its partials area, poisoned before, was
# written).
@pytest.mark.parametrize("N,K,gs", [(333, 5376, 32), (4000, 4096, 32), (5376, 21504, 32), (9000, 4096, 64),
                                    (21504, 5376, 32), (4100, 4096, 128), (1000, 4096, 256), (300, 49152, 64),
                                    (4096, 14336, 32)])
def test_stream_k(shims_lib, dev, N, K, gs):
    if not tma_ring_available(dev):
        pytest.skip("needs a compute-capability 9.0 GPU (sm_90a)")
    w = workspace(dev)
    w[SK_COUNT_BYTES:].fill_(0xFF)  # NaN bit patterns in the partials area (the kernel never reads them unwritten)
    torch.cuda.synchronize()
    x, qdata, scale, zero = make_inputs(1, N, K, gs, dev, seed=N + K + gs)
    ref = reference(x, qdata, scale, zero, gs)
    outs = []
    for variant in (33, 33, 33, 32):
        out = torch.full((1, N), float("nan"), device=dev, dtype=torch.bfloat16)
        run(shims_lib, x, qdata, scale, zero, out, 1, N, K, gs, variant=variant)
        o = out.double()
        assert not torch.isnan(o).any(), f"variant {variant}: {int(torch.isnan(o).sum())} outputs not written"
        rel = (torch.linalg.norm(o - ref) / torch.linalg.norm(ref)).item()
        assert rel <= 1e-2, f"variant {variant}: relative error {rel:.3e}"
        outs.append(out)
        if variant == 33:
            assert int(torch.count_nonzero(w[:SK_COUNT_BYTES])) == 0, "arrival counters not reset"
    assert not torch.equal(w[SK_COUNT_BYTES:], torch.full_like(w[SK_COUNT_BYTES:], 0xFF)), "stream-K did not run"
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2]), "stream-K results differ between runs"
    # Whole tiles vs pieces: the same fp32 products summed in another order, so within a bf16 ulp or two.
    d = (outs[0].double() - outs[3].double()).abs() / ref.abs().clamp_min(1e-3)
    assert d.max().item() <= 2 ** -6, d.max().item()


def test_stream_k_needs_room(shims_lib, dev):
    """A workspace too small for the grid (or none) is not used: whole tiles, still correct."""
    if not tma_ring_available(dev):
        pytest.skip("needs a compute-capability 9.0 GPU (sm_90a)")
    N, K, gs = 5376, 21504, 32
    small = torch.full((SK_COUNT_BYTES + 1024,), 0xFF, dtype=torch.uint8, device=dev)
    small[:SK_COUNT_BYTES] = 0
    x, qdata, scale, zero = make_inputs(1, N, K, gs, dev, seed=21)
    out = torch.full((1, N), float("nan"), device=dev, dtype=torch.bfloat16)
    rc = shims_lib.int4_cuda_int4_plain_mm_variant(x.data_ptr(), qdata.data_ptr(), scale.data_ptr(), zero.data_ptr(),
                                                   out.data_ptr(), 1, N, K, gs, small.data_ptr(), small.numel(),
                                                   torch.cuda.current_stream().cuda_stream, 33)
    assert rc == 0
    torch.cuda.synchronize()
    assert torch.equal(small[SK_COUNT_BYTES:], torch.full_like(small[SK_COUNT_BYTES:], 0xFF)), "too-small workspace used"
    ref = reference(x, qdata, scale, zero, gs)
    assert (torch.linalg.norm(out.double() - ref) / torch.linalg.norm(ref)).item() <= 1e-2


@pytest.mark.parametrize("N,K,gs,sk", [(5376, 21504, 32, True), (21504, 5376, 32, True), (14336, 4096, 32, True),
                                        (5376, 21504, 128, True), (4240, 21504, 64, True), (28672, 4096, 32, False),
                                        (8192, 4096, 32, False), (128256, 4096, 32, False)])
def test_stream_k_is_what_runs_where_it_pays(shims_lib, dev, N, K, gs, sk):
    """M = 1 through the runtime's entry (with a workspace) on an H100 (132 SMs, 2 blocks each): the
    TMA ring shares the tiles past its last whole round by stages where that shortens the longest block
    (K = 21504: 11 stages per tile; 14336x4096: 3.4 rounds) and keeps whole tiles where it does not
    (28672x4096 and 8192x4096: 14 / 4 stages either way; 128256x4096: 61 of 62, within the pieces'
    cost). Seen through the workspace's partials area, poisoned before the call."""
    if torch.cuda.get_device_properties(dev).multi_processor_count != 132 or not tma_ring_available(dev):
        pytest.skip("the policy is stated for an H100 (sm_90a, 132 SMs)")
    w = workspace(dev)
    w[SK_COUNT_BYTES:].fill_(0xFF)
    names = launched_kernels(lambda: check(shims_lib, 1, N, K, gs, dev))
    assert any("int4_mm_decode_tma_kernel" in n for n in names), names
    ran = not torch.equal(w[SK_COUNT_BYTES:], torch.full_like(w[SK_COUNT_BYTES:], 0xFF))
    assert ran == sk
    assert int(torch.count_nonzero(w[:SK_COUNT_BYTES])) == 0


def test_stream_k_in_a_cuda_graph(shims_lib, dev):
    """The runtime's decode path: one workspace shared by many calls captured in one CUDA graph and
    replayed. Every call must find the counters at zero and leave them so: two stream-K shapes
    alternate (different tile counts, the same workspace), 12 calls per replay, 3 replays, every
    output checked against float64 after the last replay."""
    if not tma_ring_available(dev):
        pytest.skip("needs a compute-capability 9.0 GPU (sm_90a)")
    w = workspace(dev)
    shapes = [(5376, 21504, 32), (14336, 4096, 32)]
    inputs = [make_inputs(1, N, K, gs, dev, seed=40 + i) for i, (N, K, gs) in enumerate(shapes)]
    outs = [torch.full((1, shapes[i % 2][0]), float("nan"), device=dev, dtype=torch.bfloat16) for i in range(12)]
    stream = torch.cuda.Stream(device=dev)

    def calls():
        for i, out in enumerate(outs):
            (N, K, gs), (x, q, s, z) = shapes[i % 2], inputs[i % 2]
            rc = shims_lib.int4_cuda_int4_plain_mm_variant(x.data_ptr(), q.data_ptr(), s.data_ptr(), z.data_ptr(),
                                                           out.data_ptr(), 1, N, K, gs, w.data_ptr(), w.numel(),
                                                           stream.cuda_stream, 33)
            assert rc == 0, shims_lib.int4_cuda_status_string(rc).decode()

    with torch.cuda.stream(stream):
        calls()  # eager first: the launcher's one-time host work (attributes, tensor-map encoder)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        calls()
    for _ in range(3):
        for out in outs:
            out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
    refs = [reference(*inputs[i], shapes[i][2]) for i in range(2)]
    for i, out in enumerate(outs):
        ref = refs[i % 2]
        assert not torch.isnan(out.double()).any(), f"call {i}: outputs not written"
        assert torch.equal(out, outs[i % 2]), f"call {i} differs from call {i % 2}"
        assert (torch.linalg.norm(out.double() - ref) / torch.linalg.norm(ref)).item() <= 1e-2
    assert int(torch.count_nonzero(w[:SK_COUNT_BYTES])) == 0, "arrival counters not reset"


def test_entry_without_workspace(shims_lib, dev):
    """int4_cuda_int4_plain_mm (no workspace) on shapes where the _ws entry shares tiles."""
    for N, K, gs in [(5376, 21504, 32), (21504, 5376, 32), (28672, 4096, 64)]:
        check(shims_lib, 1, N, K, gs, dev, ws=False)


@pytest.mark.parametrize("N,K,gs,tma", [(28672, 4096, 32, True), (8192, 4096, 32, True), (21504, 5376, 32, True),
                                         (5376, 21504, 32, True), (28672, 4096, 64, True), (34000, 4096, 128, True),
                                         (4096, 4096, 32, False), (6144, 4096, 32, False), (4096, 16384, 32, False),
                                         (49152, 1536, 32, False), (8000, 5376, 128, False), (28672, 4096, 128, False),
                                         (5376, 21504, 128, True), (14336, 4096, 128, False)])
def test_tma_ring_is_what_runs_where_it_pays(shims_lib, dev, N, K, gs, tma):
    """M = 1 on an H100 (132 SMs, 2 blocks each; tma_decode_pays): at gs <= 64 about two rounds of row
    tiles per block, or more than one round with >= 8 stages of 2048 k per block, take the TMA-ring
    kernel; at gs 128 only >= 16 stages per block, or where stream-K (the runtime's entry passes a
    workspace) shares tiles of >= 8 stages (K = 21504). One-round grids (4096x16384), 6144x4096, K = 1536
    (stages 6/8 full) and scale rows that are not 16-byte multiples (K = 5376 at gs 128) keep the
    register kernels."""
    if torch.cuda.get_device_properties(dev).multi_processor_count != 132:
        pytest.skip("the thresholds are stated for 132 SMs")
    if not tma_ring_available(dev):
        pytest.skip("needs a compute-capability 9.0 GPU (sm_90a)")
    names = launched_kernels(lambda: check(shims_lib, 1, N, K, gs, dev))
    assert any("int4_mm_decode_tma_kernel" in n for n in names) == tma, names


# Run in a fresh process: the library reads INT4_CUDA_TMA_DECODE once.
SWITCH_SCRIPT = """
import sys, torch
sys.path.insert(0, sys.argv[1])
import conftest, test_int4_plain_mm_gpu as T
lib = conftest.load_library(conftest.find_library())
names = T.launched_kernels(lambda: T.check(lib, 1, 8192, 4096, 32, torch.device("cuda")))
print("ring" if any("int4_mm_decode_tma_kernel" in n for n in names) else "registers")
"""


def test_tma_ring_switch(dev):
    """INT4_CUDA_TMA_DECODE=0 (the A/B switch) keeps a shape the ring takes on the register kernels, and
    the result stays right either way (check() compares with float64 in the child)."""
    import os
    import pathlib
    import subprocess
    import sys
    if not tma_ring_available(dev) or torch.cuda.get_device_properties(dev).multi_processor_count != 132:
        pytest.skip("needs an H100 (sm_90a, 132 SMs), where 8192x4096 takes the ring")
    here = str(pathlib.Path(__file__).resolve().parent)
    for value, want in (("0", "registers"), ("1", "ring")):
        r = subprocess.run([sys.executable, "-c", SWITCH_SCRIPT, here], check=False, capture_output=True, text=True,
                           timeout=300, env={**os.environ, "INT4_CUDA_TMA_DECODE": value})
        assert r.returncode == 0, r.stderr[-3000:]
        assert r.stdout.split()[-1] == want, (value, r.stdout[-500:])


@pytest.mark.parametrize("M", [1, 4, 8])
@pytest.mark.parametrize("N,K,xpre", [(192, 576, True), (576, 1536, True), (4096, 4096, True), (4224, 4096, True),
                                      (4240, 4096, False), (6144, 4096, False), (49152, 576, False), (4096, 14336, False)])
def test_x_with_the_weights_where_the_grid_is_one_wave(shims_lib, dev, M, N, K, xpre):
    """M <= 4: up to 264 row tiles (one wave at 2 blocks/SM) and no U = 2 load x together with the
    weights (decode_policy's xpre); more tiles, long K (U = 2) or M = 8 keep the compute-time x loads."""
    import re
    names = launched_kernels(lambda: check(shims_lib, M, N, K, 32, dev))
    ran = any(re.search(r"int4_mm_decode_kernel<1, 1, 2, true", n) for n in names)
    assert ran == (xpre and M <= 4), names


def test_sm90_split_k_is_what_runs_for_few_tiles(shims_lib, dev):
    """8 weight-row tiles of 128 and one token tile: far under one wave of SMs, so the default dispatch
    splits K over clusters (launch_prefill_hopper); the result is checked against float64."""
    import re
    if torch.cuda.get_device_capability(dev) != (9, 0):
        pytest.skip("needs a compute-capability 9.0 GPU (sm_90a)")
    names = launched_kernels(lambda: check(shims_lib, 256, 1024, 4096, 32, dev))
    assert any(re.search(r"int4_mm_prefill_sm90_kernel<\d+, 5, 2, 2, (true|false)>", n) for n in names), names


@pytest.mark.parametrize("N,K,gs,misalign,wide", [(1000, 1536, 32, False, True), (4096, 4096, 64, False, True),
                                                   (4096, 14336, 128, False, True), (1000, 1536, 32, True, False),
                                                   (4096, 4096, 128, False, False), (300, 448, 32, False, False),
                                                   (300, 1600, 32, False, False)])
def test_sm90_wide_scales_is_what_runs_where_it_applies(shims_lib, dev, N, K, gs, misalign, wide):
    """The Hopper prefill takes its scales through shared memory (WIDE) exactly where a row has more
    than 32 groups, a multiple of 8, and scale and zero are 16-byte aligned (sm90_wide_scales): not at
    32 groups (K = 4096 gs 128), 14, 50 (not a multiple of 8), nor with 2-byte aligned scales."""
    import re
    if torch.cuda.get_device_capability(dev) != (9, 0):
        pytest.skip("needs a compute-capability 9.0 GPU (sm_90a)")
    M = 256
    x, qdata, scale, zero = make_inputs(M, N, K, gs, dev, seed=13)
    if misalign:  # the same values at an address that is 2 mod 16
        sb, zb = (torch.empty(N * (K // gs) + 1, device=dev, dtype=torch.bfloat16) for _ in range(2))
        s_in, z_in = sb[1:].view(N, K // gs), zb[1:].view(N, K // gs)
        s_in.copy_(scale)
        z_in.copy_(zero)
    else:
        s_in, z_in = scale, zero
    out = torch.full((M, N), float("nan"), device=dev, dtype=torch.bfloat16)
    names = launched_kernels(lambda: run(shims_lib, x, qdata, s_in, z_in, out, M, N, K, gs, 19))
    flags = {m.group(1) for n in names for m in [re.search(r"int4_mm_prefill_sm90_kernel<\d+, 5, 2, \d, (true|false)>", n)] if m}
    assert flags == {"true" if wide else "false"}, names
    ref = reference(x, qdata, scale, zero, gs)
    rel = (torch.linalg.norm(out.double() - ref) / torch.linalg.norm(ref)).item()
    assert rel <= 1e-2, rel


def test_sm90_kernel_is_what_runs_on_hopper(shims_lib, dev):
    """Variant 19 and the default dispatch at M > 64 must reach the wgmma kernel on a compute-capability
    9.0 GPU (a silent fallback would leave the tests above checking another kernel)."""
    if torch.cuda.get_device_capability(dev) != (9, 0):
        pytest.skip("needs a compute-capability 9.0 GPU (sm_90a)")
    M, N, K, gs = 256, 512, 1024, 32
    x, qdata, scale, zero = make_inputs(M, N, K, gs, dev, seed=3)
    out = torch.empty(M, N, device=dev, dtype=torch.bfloat16)
    for variant in (19, None):  # forced, and the default dispatch for M > 64
        names = launched_kernels(lambda: run(shims_lib, x, qdata, scale, zero, out, M, N, K, gs, variant=variant))
        assert any("int4_mm_prefill_sm90" in n for n in names), (variant, names)


def run_chain(lib, dev, M, links, last, seed, reps):
    """Calls back to back on one stream with no host sync between them: x of link i is the output of
    link i - 1 (links: (N, K) each), and the last call (N, K = last) reads the previous output as
    its *scale*, viewed [N, K / 32]. Every output starts as NaN; each link is checked against a
    float64 reference on the bytes it was given."""
    gs = 32
    g = torch.Generator(device=dev).manual_seed(seed)
    x0 = torch.randn(M, links[0][1], device=dev, generator=g).to(torch.bfloat16)
    ws = [make_inputs(1, N, K, gs, dev, seed=seed + 1 + i)[1:] for i, (N, K) in enumerate(links)]
    outs = [torch.empty(M, N, device=dev, dtype=torch.bfloat16) for N, _ in links]
    (nl, kl) = last
    xl, ql, _, zl = make_inputs(M, nl, kl, gs, dev, seed=seed - 1)
    outl = torch.empty(M, nl, device=dev, dtype=torch.bfloat16)
    stream = torch.cuda.current_stream().cuda_stream

    def call(x, q, s, z, out, N, K):
        rc = lib.int4_cuda_int4_plain_mm(x.data_ptr(), q.data_ptr(), s.data_ptr(), z.data_ptr(), out.data_ptr(),
                                         M, N, K, gs, stream)
        assert rc == 0, (rc, lib.int4_cuda_status_string(rc).decode())

    for rep in range(reps):
        for o in outs + [outl]:
            o.fill_(float("nan"))
        torch.cuda.synchronize()
        x = x0
        for (N, K), (q, s, z), out in zip(links, ws, outs):
            call(x, q, s, z, out, N, K)
            x = out
        call(xl, ql, outs[-1].view(nl, kl // gs), zl, outl, nl, kl)
        torch.cuda.synchronize()
        for i, ((N, K), (q, s, z), xin, out) in enumerate(zip(links, ws, [x0] + outs[:-1], outs)):
            ref = reference(xin, q, s, z, gs)
            rel = (torch.linalg.norm(out.double() - ref) / torch.linalg.norm(ref)).item()
            assert rel <= 1e-2, f"rep {rep} link {i} ({N}x{K}): relative error {rel:.3e}"
        ref = reference(xl, ql, outs[-1].view(nl, kl // gs), zl, gs)
        rel = (torch.linalg.norm(outl.double() - ref) / torch.linalg.norm(ref)).item()
        assert rel <= 1e-2, f"rep {rep} scale link: relative error {rel:.3e}"


def test_back_to_back_chain(shims_lib, dev):
    """M = 1 calls chained (run_chain): the programmatic-dependent-launch edges of shims/pdl.cuh, where
    the decode kernel prefetches weights before griddepcontrol.wait and triggers its successor early
    (every overlap mode of decode_overlap: whole tile, first k-iteration, none). The last link reads
    the previous output as its scale, so it also checks that a prefetched weight tensor written by
    the previous kernel is read fresh."""
    # Overlap: tile, tile, none (persistent), first k-iteration (long K, one block per tile).
    run_chain(shims_lib, dev, 1, [(576, 576), (1536, 576), (14336, 1536), (1024, 14336)], (32, 1024), seed=1234,
              reps=10)


def test_prefill_back_to_back_chain(shims_lib, dev):
    """M = 512 calls chained (run_chain). On Hopper the one-wave split-K grids (4096x4096, 2048x6144,
    4096x2048) let their successor launch while they still run (sm90_trigger_early), so its blocks
    are resident before these outputs exist; the unsplit grids (6144x4096, and 16384x4096 in several
    waves) do not."""
    run_chain(shims_lib, dev, 512, [(4096, 4096), (4096, 4096), (6144, 4096), (2048, 6144), (4096, 2048)],
              (16384, 4096), seed=4321, reps=3)
