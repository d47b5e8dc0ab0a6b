// Prefill kernel for Hopper (sm_90a): wgmma on TMA-fed shared memory, weights dequantized in the
// main loop. Included by int4_plain_mm.cu (uses its helpers); contract and layout: int4_plain_mm.h.
//
// A block computes out^T[128 weight rows, BT tokens] (BT = 128 or 256) for one (weight-row tile,
// token tile) pair, as wgmma.m64n{BT}k16 by two warpgroups of 64 weight rows each, with fp32
// accumulators in registers. Both operands come from shared memory (K-major, 128-byte swizzle):
//  * TMA (cp.async.bulk.tensor, one thread) brings each 64-k stage: the activation tile
//    [BT tokens][64 k], already in the swizzled layout the wgmma descriptor expects, and the packed
//    weight tile [128 rows][32 B]. Rows past M or N are zero-filled by the TMA unit and never stored.
//    One mbarrier per stage (expect-tx bytes) says when both landed.
//  * Each thread dequantizes 32 k of one weight row per k-tile (row tid / 2 of the block's 128, so a
//    warpgroup dequantizes exactly its own 64 rows) into one of NA bf16 tiles in the same swizzled
//    layout, in natural k order (the decode kernel's (kj, kj+4) pairs put back with prmt). The
//    weights are the same bf16 values as every other path: fma(u - 8, s, z) rounded once.
//  * No wgmma input is defined by ordinary instructions (descriptors only), so the dequant of tile
//    kt + 1 runs while the wgmmas of tile kt are in flight (wgmma.wait_group NA - 1).
//  * One __syncthreads per k-tile: the A tile is complete (each thread fenced its stores to the
//    async proxy) and both warpgroups are past tile kt + 1 - NA, whose stage slot the TMA refills.
//  * Scales and zeros: 2-byte loads per k-tile, or (WIDE) 16-byte chunks of 8 groups through shared
//    memory where each row's scales outgrow L1 (v64-v65).
//  * Epilogue: fp32 -> bf16 (RNE, cvt.rn.bf16x2) into a shared tile [token][weight row] by
//    stmatrix.trans, then 16-byte row stores.
//  * Split K (SPLIT = 2 or 4, notes v25): a cluster of SPLIT blocks shares one output tile, block
//    rank r taking k-tiles [r KT / SPLIT, (r + 1) KT / SPLIT). After the main loop each block sends
//    the fp32 partials of the weight rows it does not own to their owner's shared memory (DSMEM,
//    rank r owns rows [r 128 / SPLIT, (r + 1) 128 / SPLIT), i.e. warps [r 8 / SPLIT, ...); SPLIT = 2
//    in one bulk copy completing on the owner's mbarrier, SPLIT = 4 by remote stores between two
//    cluster barriers), and each owner adds them in rank order and stores its rows. For grids under
//    one wave of 256-token tiles (few weight rows), where the tile choice alone leaves SMs idle or
//    falls back to the costlier 128-token tile.
// Measured alternatives (docs/notes/int4_plain_mm.md v19-v23), none faster: the weights as the
// register operand (wgmma RS; a warpgroup cannot dequantize while its own wgmmas are in flight,
// since ptxas serializes wgmmas whose A registers are written meanwhile, C7513), also with the two
// warpgroups taking turns; dedicated producer warpgroups that dequantize for consumer warpgroups;
// (v26) activation stages multicast to a 2-block cluster of weight-row tiles, its slots guarded by
// a cluster barrier per k-tile or by a producer warp with empty/full mbarriers (1.7-3x slower);
// (v60, where a %clock trace showed the k-tile is the warps' serial chain, not the tensor cores)
// scales by TMA or a cp.async ring, a producer warp for the TMA stream (a warp cannot issue a
// wgmma while its previous group runs, so the dequant stops overlapping it), one barrier per
// warpgroup; (v66-v67) triggering the next kernel at the start, with or without L2 prefetches of the
// first weight stages before griddepcontrol.wait, and the output tile by TMA store.
// Needs K % 64 == 0 (the launcher falls back to the mma.sync prefill otherwise).
//
// Only compiled for sm_90a (__CUDA_ARCH_FEAT_SM90_ALL); elsewhere the kernel body is empty and the
// launcher never selects it (INT4_CUDA_HAVE_SM90A and a compute-capability 9.0 device).

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define INT4_CUDA_SM90A_DEVICE 1
#endif

constexpr int WG_BN = 128;  // weight rows per block: two warpgroups of 64
constexpr int WG_BK = 64;   // k per stage: one 128-byte swizzle row of bf16 activations
constexpr int WG_THREADS = 256;

// wgmma shared-memory matrix descriptor: K-major, 128-byte swizzle, 8-row groups 1024 B apart.
__device__ __forceinline__ uint64_t sm90_desc(uint32_t saddr) {
  return (uint64_t)((saddr & 0x3FFFF) >> 4) | ((uint64_t)1 << 16) | ((uint64_t)(1024 >> 4) << 32) |
         ((uint64_t)1 << 62);
}
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}
// v, computed once and kept in a register: hidden from the compiler, which would otherwise recompute
// a value derived from %tid inside the main loop, re-reading it with S2R (tens of cycles on each
// k-tile's critical path; notes v60).
template <typename T>
__device__ __forceinline__ T opaque(T v) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "one register or a pair");
  if constexpr (sizeof(T) == 4) {
    uint32_t r = (uint32_t)v;
    asm volatile("mov.b32 %0, %0;" : "+r"(r));
    return (T)r;
  } else {
    uint64_t r = (uint64_t)v;
    asm volatile("mov.b64 %0, %0;" : "+l"(r));
    return (T)r;
  }
}
// Generic-proxy shared-memory stores (the dequantized tile) -> visible to wgmma (async proxy) reads.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }

// D[64 x n] += A[64 x 16] * B[16 x n], both bf16 from shared memory descriptors, fp32 accumulators.
// One overload per n (128, 256); d has n / 2 values per thread.
#if defined(INT4_CUDA_SM90A_DEVICE)
__device__ __forceinline__ void wgmma_bf16_ss(float (&d)[64], uint64_t desc_a, uint64_t desc_b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
      "}, %64, %65, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(desc_a), "l"(desc_b), "r"(1));
}
__device__ __forceinline__ void wgmma_bf16_ss(float (&d)[128], uint64_t desc_a, uint64_t desc_b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
      "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
      "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, "
      "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, "
      "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
      "}, %128, %129, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
        "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
        "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]),
        "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]),
        "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]),
        "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]),
        "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]),
        "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]),
        "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
      : "l"(desc_a), "l"(desc_b), "r"(1));
}
#endif

template <int BT, int S, int NA, int SPLIT = 1, bool WIDE = false>
struct Sm90Smem {
  static_assert(BT == 128 || BT == 256, "wgmma n");
  static_assert(SPLIT == 1 || SPLIT == 2 || SPLIT == 4, "split-K cluster size");
  static_assert(NA >= 2 && S >= NA + 1, "pipeline depth");
  static constexpr int kX = BT * 128;        // one stage of activations
  static constexpr int kA = WG_BN * 128;     // one dequantized weight tile, bf16 [128][64], swizzled
  static constexpr int kW = WG_BN * 32;      // one stage of packed weights
  static constexpr int kSzChunk = WG_BN * 16;  // 8 groups of scales (or zeros) of the block's rows
  static constexpr int kAOff = S * kX, kWOff = S * kX + NA * kA, kSzOff = kWOff + S * kW;
  // The wide scale path's 2 chunk slots of (scales, zeros); none without it, so that the 2-byte
  // scale loads keep all the L1 that the rest leaves.
  static constexpr int kBarOff = kSzOff + (WIDE ? 2 * 2 * kSzChunk : 0);
  static constexpr int kOutLd = WG_BN + 8;  // epilogue row (bf16): 272 B, conflict-free stores
  // Split K: the partials received from the other SPLIT - 1 blocks, float4 [SPLIT - 1][8 / SPLIT
  // warps][BT / 8][32 lanes] (one warp's accumulator fragment, lane-interleaved), then the output tile.
  static constexpr int kRecv = (SPLIT - 1) * (8 / SPLIT) * (BT / 8) * 32 * 16;
  static constexpr int kEpi = kRecv + BT * kOutLd * 2;  // both reuse the stages and A tiles
  // SPLIT == 2: this block's partials for the other block, laid out as it receives them, after the
  // output tile (the bulk copy that sends them may still read them while the output tile is written).
  static constexpr int kSendOff = kEpi;
  static constexpr int kEnd = SPLIT == 2 ? kSendOff + kRecv : kEpi;
  static_assert(kEnd <= kBarOff, "the epilogue's buffers must not overlap the mbarriers");
  // S stage mbarriers, then (SPLIT == 2) the one that the other block's partials complete on.
  static constexpr int kBytes = kBarOff + (S + 1) * 8 + 1024;  // + slack to align the base to 1024 B
};

__device__ __forceinline__ void mbar_init(uint32_t bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, int bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred done;\nwait_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra wait_%=;\n}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}
// Thread-block clusters (split K): this block's rank, a barrier over the cluster with release/acquire
// semantics for shared memory, and a 16-byte store into another block's shared memory.
__device__ __forceinline__ int cluster_rank() {
  uint32_t r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
  return (int)r;
}
__device__ __forceinline__ void cluster_sync() {
  asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}
__device__ __forceinline__ void st_cluster_f4(uint32_t local_addr, int rank, float a, float b, float c, float d) {
  uint32_t remote;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(local_addr), "r"(rank));
  asm volatile("st.shared::cluster.v4.f32 [%0], {%1, %2, %3, %4};" ::"r"(remote), "f"(a), "f"(b), "f"(c), "f"(d)
               : "memory");
}

// Four 8x8 b16 matrices from mma-accumulator fragments (lane l: row l / 4, columns 2 (l % 4) + {0, 1})
// stored transposed: row i of matrix q (its column i) to the 16 bytes at lane 8 q + i's address.
__device__ __forceinline__ void stmatrix_x4_trans(uint32_t addr, uint32_t r0, uint32_t r1, uint32_t r2, uint32_t r3) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};" ::"r"(addr), "r"(r0), "r"(r1),
               "r"(r2), "r"(r3)
               : "memory");
}

// 2-D TMA load of box (c0, c1) of tensor map tm into shared memory, completing on mbarrier bar.
__device__ __forceinline__ void tma_load_2d(uint32_t dst, const CUtensorMap* tm, int c0, int c1, uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(tm)), "r"(c0), "r"(c1), "r"(bar)
      : "memory");
}

// Block b computes tile tile0 + b / SPLIT (its k share when SPLIT > 1: cluster rank b % SPLIT);
// tiles are numbered token tile fastest, so consecutive blocks share a weight-row tile (through L2)
// and a launch over a tile range [tile0, ...) covers whole weight-row tiles when tile0 is a multiple
// of the token-tile count. SPLIT > 1 needs a cluster of SPLIT blocks along x and K / 64 >= SPLIT.
// early (the launcher's sm90_trigger_early): the block lets the next kernel launch as soon as it has
// waited for the previous one (shims/pdl.cuh), so the next kernel's launch overlaps this one's
// epilogue; otherwise the next kernel launches when this one exits.
template <int BT, int S, int NA, int SPLIT, bool WIDE>
__global__ void __launch_bounds__(WG_THREADS, 1)
    int4_mm_prefill_sm90_kernel(const __grid_constant__ CUtensorMap tm_x, const __grid_constant__ CUtensorMap tm_w,
                                const uint16_t* __restrict__ scale, const uint16_t* __restrict__ zero,
                                uint16_t* __restrict__ out, int M, int N, int K, int gs_shift, int tile0, int early) {
#if defined(INT4_CUDA_SM90A_DEVICE)
  using L = Sm90Smem<BT, S, NA, SPLIT, WIDE>;
  extern __shared__ __align__(128) uint8_t smem_raw[];
  const uint32_t raw_s = (uint32_t)__cvta_generic_to_shared(smem_raw);
  const uint32_t base_s = (raw_s + 1023u) & ~1023u;
  uint8_t* const base = smem_raw + (base_s - raw_s);

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int mtiles = (M + BT - 1) / BT;
  const int tile = tile0 + (int)blockIdx.x / SPLIT;
  const int m0 = (tile % mtiles) * BT;
  const int n0 = (tile / mtiles) * WG_BN;
  const int rank = SPLIT > 1 ? cluster_rank() : 0;
  const int kt0 = rank * (K / WG_BK) / SPLIT;         // this block's first k-tile
  const int KT = (rank + 1) * (K / WG_BK) / SPLIT - kt0;  // and its k-tile count (>= 1)
  const int G = K >> gs_shift;
  const uint32_t bar0 = base_s + L::kBarOff;

  if (tid == 0) {
    for (int s = 0; s < S; ++s) mbar_init(bar0 + 8 * s, 1);
    if constexpr (SPLIT == 2) mbar_init(bar0 + 8 * S, 1);
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    asm volatile("prefetch.tensormap [%0];" ::"l"(reinterpret_cast<uint64_t>(&tm_x)) : "memory");
    asm volatile("prefetch.tensormap [%0];" ::"l"(reinterpret_cast<uint64_t>(&tm_w)) : "memory");
  }
  __syncthreads();
  int4_cuda::pdl_wait();  // before any global access (shims/pdl.cuh)
  if (early) int4_cuda::pdl_trigger();
  const uint32_t leader = opaque((uint32_t)(tid == 0));  // the TMA issuer
  auto issue = [&](int kt) {  // leader only
    if (kt < KT) {
      const int slot = kt % S;
      const uint32_t bar = bar0 + 8 * slot;
      mbar_expect_tx(bar, L::kX + L::kW);
      tma_load_2d(base_s + slot * L::kX, &tm_x, (kt0 + kt) * WG_BK, m0, bar);
      tma_load_2d(base_s + L::kWOff + slot * L::kW, &tm_w, (kt0 + kt) * (WG_BK / 2), n0, bar);
    }
  };

  // This thread's weight row for the dequant: row tid / 2, k half tid % 2 (32 k: one group).
  const int dr = tid >> 1, dh = tid & 1;
  const int dn = min(n0 + dr, N - 1);
  // Group of k-tile kt's half dh: (64 kt + 32 dh) >> gs_shift = (64 kt >> gs_shift) + (gs 32 ? dh : 0).
  const int gofs = gs_shift == 5 ? dh : 0;
  // Every per-thread address below is opaque (see opaque()); each kernel (WIDE or not) makes only
  // the ones it reads (an opaque move is never removed).
  const uint16_t* const srow = WIDE ? nullptr : opaque(scale + (int64_t)dn * G + gofs);
  const uint16_t* const zrow = WIDE ? nullptr : opaque(zero + (int64_t)dn * G + gofs);
  const uint32_t wraw = opaque((uint32_t)(dr * 32 + dh * 16));
  uint32_t aofs[4];  // row dr's 4 16-byte chunks of 8 k in the swizzled A tile
#pragma unroll
  for (int i = 0; i < 4; ++i) aofs[i] = opaque((uint32_t)(dr * 128 + (((dh * 4 + i) ^ (dr & 7)) << 4)));
  // Scales and zeros. Where each row's scales are its own L1 lines (rows longer than 64 bytes: the
  // block's 128 rows of scales and zeros then take 32 KB of lines, more than the ~28 KB of L1 that the
  // shared memory leaves, and one 2-byte load per k-tile hit L1 38 % of the time at gs 32, notes v63)
  // and they are 16-byte multiples with 16-byte aligned bases ("wide"): chunks of 8 groups of the
  // block's rows, copied into shared memory by cp.async.cg (16 bytes per thread: row tid / 2's scales
  // or zeros; L2 only) into a slot by chunk parity, the next chunk when the current one is first read,
  // waited for three k-tiles before its first one is read. Otherwise one 2-byte load per k-tile (at
  // gs 128 with K = 4096, 32 groups per row, two rows share a line and the loads hit L1 97 %; the wide
  // path, with its per-step chunk test on every step's chain, measured 2-4 % slower there, notes v64).
  // The path is a template parameter (WIDE, chosen by the launcher's sm90_wide_scales()), so the
  // 2-byte kernel keeps its code and its L1.
  const int last_chunk = G / 8 - 1;
  auto chunk_of = [&](int kt) { return (((kt0 + kt) * WG_BK) >> gs_shift) >> 3; };  // a k-tile never straddles two
  // A chunk spans 8 gs / 64 = 2^(gs_shift - 3) k-tiles; next_start: this block's next k-tile (local index)
  // that starts a chunk, from the second chunk on (never, without the wide path).
  const int span = 1 << (gs_shift - 3);
  int next_start = WIDE ? span - (kt0 & (span - 1)) : INT_MAX;
  const uint4* const crow = WIDE ? opaque(reinterpret_cast<const uint4*>((dh ? zero : scale) + (int64_t)dn * G)) : nullptr;
  const uint32_t cdst = WIDE ? opaque((uint32_t)(base_s + L::kSzOff + dh * L::kSzChunk + dr * 16)) : 0u;
  const uint32_t crd = WIDE ? opaque((uint32_t)(L::kSzOff + dr * 16)) : 0u;  // row dr in a chunk slot's scales
  const int gofs_o = WIDE ? (int)opaque((uint32_t)gofs) : 0;
  auto cp_chunk = [&](int c) {  // every thread, one cp.async group
    if constexpr (WIDE)
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(cdst + (uint32_t)((c & 1) * 2 * L::kSzChunk)),
                   "l"(crow + min(c, last_chunk))
                   : "memory");
    asm volatile("cp.async.commit_group;" ::: "memory");
  };
  auto ld_sz = [&](int kt, uint32_t& s2, uint32_t& z2) {
    if (kt < KT) {
      if constexpr (WIDE) {
        const int grp = (((kt0 + kt) * WG_BK) >> gs_shift) + gofs_o;
        const uint8_t* p = base + crd + ((grp >> 3) & 1) * 2 * L::kSzChunk + (grp & 7) * 2;
        s2 = *reinterpret_cast<const uint16_t*>(p);
        z2 = *reinterpret_cast<const uint16_t*>(p + L::kSzChunk);
      } else {
        const int grp = ((kt0 + kt) * WG_BK) >> gs_shift;
        s2 = ld_nc_u16(srow + grp);
        z2 = ld_nc_u16(zrow + grp);
      }
    }
  };
  // Packed 32 k -> 4 swizzled 16-byte chunks of bf16 in natural k order.
  auto dequant = [&](int kt, uint32_t s, uint32_t z) {
    const uint4 raw = *reinterpret_cast<const uint4*>(base + L::kWOff + (kt % S) * L::kW + wraw);
    const uint32_t s2 = prmt(s, s, 0x1010), z2 = prmt(z, z, 0x1010);
    const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
    uint8_t* const atile = base + L::kAOff + (kt % NA) * L::kA;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      uint32_t p[4];
      dequant_word(words[i], s2, z2, p);  // (k0,k4) (k1,k5) (k2,k6) (k3,k7)
      uint4 o;
      o.x = prmt(p[0], p[1], 0x5410);
      o.y = prmt(p[2], p[3], 0x5410);
      o.z = prmt(p[0], p[1], 0x7632);
      o.w = prmt(p[2], p[3], 0x7632);
      *reinterpret_cast<uint4*>(atile + aofs[i]) = o;
    }
  };

  float acc[BT / 2];
#pragma unroll
  for (int i = 0; i < BT / 2; ++i) acc[i] = 0.f;

  if (leader)
    for (int s = 0; s < S - NA; ++s) issue(s);
  // Scale/zero in a two-entry register ring by tile parity, loaded two tiles ahead and never moved
  // (a register move would wait for its load).
  uint32_t se = 0, ze = 0, so = 0, zo = 0;  // even / odd tiles
  if constexpr (WIDE) {  // the first two chunks (tiles 0-2 lie in them: a chunk spans >= 4 k-tiles)
    cp_chunk(chunk_of(0));
    cp_chunk(chunk_of(0) + 1);
    asm volatile("cp.async.wait_group 0;" ::: "memory");
    __syncthreads();
  }
  ld_sz(0, se, ze);
  ld_sz(1, so, zo);
  mbar_wait(bar0, 0);
  dequant(0, se, ze);
  ld_sz(2, se, ze);
  fence_proxy_async();
  __syncthreads();
  // Chunk chunk_of(0) + 1 first read above (a block whose k range starts in a chunk's last tiles):
  // the next one goes into the first chunk's slot, read for the last time before this barrier.
  if (next_start <= 2) {
    cp_chunk(chunk_of(0) + 2);
    next_start += span;
  }
  // Descriptors: only the 14-bit address field (bits 0-13, address / 16) changes, and never carries.
  const uint32_t a_lo = (uint32_t)sm90_desc(base_s + L::kAOff + (warp >> 2) * 64 * 128);
  const uint32_t b_lo = (uint32_t)sm90_desc(base_s);
  const uint32_t d_hi = (uint32_t)(sm90_desc(base_s) >> 32);
  // One k-tile; (s, z) is the ring entry of tile kt + 1.
  auto step = [&](int kt, uint32_t& s, uint32_t& z) {
    // Here: A buffer kt % NA and activation stage kt are complete and visible to the async proxy.
    const uint32_t a = a_lo + (((kt % NA) * L::kA) >> 4), b = b_lo + (((kt % S) * L::kX) >> 4);
    wgmma_fence();
#pragma unroll
    for (int i = 0; i < 4; ++i)  // k 16 i: 32 B into the swizzled rows
      wgmma_bf16_ss(acc, ((uint64_t)d_hi << 32) | (a + 2 * i), ((uint64_t)d_hi << 32) | (b + 2 * i));
    wgmma_commit();
    // Stage kt + S - NA goes to the slot of tile kt - NA, which both warpgroups finished before the
    // last barrier (their wait_group below in the previous step); issued here, it overlaps the wait.
    if (leader) issue(kt + S - NA);
    // This warpgroup's tile kt + 1 - NA is done, so A buffer (kt + 1) % NA is free; NA - 1 tiles
    // stay in flight while the next one is dequantized.
    wgmma_wait<NA - 1>();
    if (kt + 1 < KT) {
      mbar_wait(bar0 + 8 * ((kt + 1) % S), ((kt + 1) / S) & 1);
      dequant(kt + 1, s, z);
    }
    // Tile kt + 3 starts a chunk: its copy (issued when the previous chunk was first read) must have
    // landed before this barrier, which makes it visible to every thread.
    const bool chunk_start = WIDE && kt + 3 == next_start && kt + 3 < KT;
    if (chunk_start) asm volatile("cp.async.wait_group 0;" ::: "memory");
    fence_proxy_async();
    __syncthreads();  // A tile kt + 1 complete; both warpgroups are past tile kt + 1 - NA
    ld_sz(kt + 3, s, z);  // after the fence, which would otherwise wait for it
    if (chunk_start) {  // into the slot of chunk_of(kt + 3) - 1, read for the last time
      cp_chunk(chunk_of(kt + 3) + 1);
      next_start += span;
    }
  };
  // KT >= 1 (K >= 64). No zero-trip path: the compiler then merges no copies of the accumulators
  // before wgmma.wait_group (reading them there serializes the wgmmas, C7514).
  int kt = 0;
  for (;;) {
    step(kt, so, zo);  // even kt: tile kt + 1 is odd
    if (++kt >= KT) break;
    step(kt, se, ze);
    if (++kt >= KT) break;
  }
  wgmma_wait<0>();
  __syncthreads();  // every wgmma and TMA of this block is done: the pipeline memory becomes the output tile

  // Warp w holds weight rows 16 w + lane / 4 and 16 w + lane / 4 + 8 (warpgroup w / 4, its m64 slice (w % 4) 16).
  constexpr int kOwnWarps = 8 / SPLIT;  // split K: the warps whose rows this block stores
  const bool own = warp / kOwnWarps == rank;
  if constexpr (SPLIT == 2) {
    // The non-owned half of the accumulators goes to the other block in one bulk copy (shared to
    // shared through the cluster, completing on its mbarrier bar0 + 8 S), staged here first in the
    // layout it reads. H100 (notes v65): the exchange by 16-byte remote stores from every lane, between
    // two cluster barriers, took 3.3 us per block at BT = 256.
    const uint32_t recv_bar = bar0 + 8 * S;
    if (!own) {
      float4* send = reinterpret_cast<float4*>(base + L::kSendOff) + (warp % kOwnWarps) * (BT / 8) * 32 + lane;
#pragma unroll
      for (int j = 0; j < BT / 8; ++j) send[j * 32] = make_float4(acc[4 * j], acc[4 * j + 1], acc[4 * j + 2], acc[4 * j + 3]);
      fence_proxy_async();  // the staged partials, visible to the bulk copy
    }
    if (tid == 0) mbar_expect_tx(recv_bar, L::kRecv);  // before the cluster barrier, so before the copy
    cluster_sync();  // both blocks are past their main loops (their pipeline memory is free) and staged
    if (tid == 0) {
      const int peer = rank ^ 1;
      uint32_t dst, bar;
      asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(dst) : "r"(base_s), "r"(peer));
      asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(bar) : "r"(recv_bar), "r"(peer));
      asm volatile(
          "cp.async.bulk.shared::cluster.shared::cta.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n"
          "cp.async.bulk.commit_group;" ::"r"(dst),
          "r"(base_s + L::kSendOff), "r"(L::kRecv), "r"(bar)
          : "memory");
    }
    if (own) mbar_wait(recv_bar, 0);
  } else if constexpr (SPLIT > 1) {
    cluster_sync();  // every block of the cluster is past its main loop: their pipeline memory is free
    if (!own) {
      const int owner = warp / kOwnWarps, slot = rank < owner ? rank : rank - 1;
      const uint32_t dst = base_s + (uint32_t)(((slot * kOwnWarps + warp % kOwnWarps) * (BT / 8) * 32 + lane) * 16);
#pragma unroll
      for (int j = 0; j < BT / 8; ++j)
        st_cluster_f4(dst + j * 32 * 16, owner, acc[4 * j], acc[4 * j + 1], acc[4 * j + 2], acc[4 * j + 3]);
    }
    cluster_sync();  // the partials have landed; nobody touches another block's memory after this
  }
  if constexpr (SPLIT > 1) {  // the owner adds the received partials in rank order
    if (own) {
      const float4* recv = reinterpret_cast<const float4*>(base) + (warp % kOwnWarps) * (BT / 8) * 32 + lane;
#pragma unroll
      for (int sl = 0; sl < SPLIT - 1; ++sl)
#pragma unroll
        for (int j = 0; j < BT / 8; ++j) {
          const float4 v = recv[(sl * kOwnWarps * (BT / 8) + j) * 32];
          acc[4 * j] += v.x, acc[4 * j + 1] += v.y, acc[4 * j + 2] += v.z, acc[4 * j + 3] += v.w;
        }
    }
  }

  // The output tile, bf16 [BT tokens][kOutLd], from the fragments by stmatrix.trans: per 16 tokens,
  // the warp's four 8x8 blocks (rows r0 / r0 + 8 of tokens 16 j2 ... + 7, then of the next 8 tokens),
  // each stored as 8 token rows of 8 weight rows (16 bytes; rows 272 bytes apart, so the 8 rows of a
  // block fall in distinct banks). cvt.rn.bf16x2 rounds to nearest even, as the reference does.
  // H100 (notes v65): a software rounding and a 2-byte store per value took 2.6 us per block at BT = 256.
  const uint16_t* os = reinterpret_cast<const uint16_t*>(base + L::kRecv);
  if (own) {
    const int r0 = (warp >> 2) * 64 + (warp & 3) * 16, q = lane >> 3;
    const uint32_t st0 = base_s + L::kRecv + (uint32_t)((((q >> 1) * 8 + (lane & 7)) * L::kOutLd + r0 + (q & 1) * 8) * 2);
#pragma unroll
    for (int j2 = 0; j2 < BT / 16; ++j2) {
      const float* f = acc + 8 * j2;
      stmatrix_x4_trans(st0 + j2 * 16 * L::kOutLd * 2, cvt_bf16x2(f[0], f[1]), cvt_bf16x2(f[2], f[3]),
                        cvt_bf16x2(f[4], f[5]), cvt_bf16x2(f[6], f[7]));
    }
  }
  __syncthreads();
  const bool vec = (N % 8) == 0 && (reinterpret_cast<uintptr_t>(out) % 16) == 0;
  constexpr int kChunks = WG_BN / 8 / SPLIT;  // 8-row chunks this block stores per token
  for (int c = tid; c < BT * kChunks; c += WG_THREADS) {
    const int tok = c / kChunks, ch = rank * kChunks + c % kChunks;
    const int m = m0 + tok, n = n0 + ch * 8;
    if (m >= M || n >= N) continue;
    const uint16_t* src = os + tok * L::kOutLd + ch * 8;
    uint16_t* dst = out + (int64_t)m * N + n;
    if (vec) {
      *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e)
        if (n + e < N) dst[e] = src[e];
    }
  }
  // The bulk copy's source is this block's shared memory: it must have been read before the block exits
  // (the other block waits for it on its mbarrier, so its destination outlives it).
  if constexpr (SPLIT == 2)
    if (tid == 0) asm volatile("cp.async.bulk.wait_group.read 0;" ::: "memory");
#endif  // INT4_CUDA_SM90A_DEVICE
}
