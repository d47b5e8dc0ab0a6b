// Decode kernel for Hopper (sm_90a), M = 1: the weights stream through a ring of shared-memory
// stages filled by the TMA unit, so the bytes in flight no longer live in registers. Included by
// int4_plain_mm.cu after int4_plain_mm_sm90.cuh (uses both files' helpers); contract and layout:
// int4_plain_mm.h.
//
// Why (notes v42): the register-pipelined decode kernel holds its loads in flight in registers, so
// its memory stream stalls whenever its warps compute, wait at a tile's reduction barrier or run out
// of registers for a deeper pipeline. Here one producer thread keeps S stages in flight per block
// (S x 20 KB) whatever the consumers are doing; the consumers read the stages from shared memory.
//
// Block: 8 consumer warps + 1 producer warp + 1 epilogue warp (320 threads), persistent over 16-row
// weight tiles (tile = blockIdx.x + i gridDim.x; with stream-K, below, runs of stages of the last
// tiles first). It never triggers the next kernel early (shims/pdl.cuh): letting it launch on the
// last tile measured 4-13 % slower back to back (notes v42).
// Stage: one tile's 16 rows x 2048 k (the last stage of a row may be shorter): 8 boxes of
// [16 rows][128 B] packed weights (256 k each), box w for consumer warp w, and the stage's scale and
// zero boxes [16 rows][2048 / gs], all brought by cp.async.bulk.tensor under one mbarrier (full);
// the consumers release the slot through a second mbarrier (empty, one arrival per warp).
// Shared-memory layout of a box: row r at r * IB (IB = its row bytes), 16-byte chunks XOR-swizzled
// the TMA way (SWIZZLE_128B / 64B / 32B for IB = 128 / 64 / 32: chunk c of row r lands at
// c ^ ((r IB / 128) mod IB / 16)), so the lanes' reads below are free of bank conflicts.
// Consumer warp w, lane (g = lane / 4, t = lane % 4): k [256 it + 64 t, +64) of rows g and g + 8 of
// the tile, it = 8 s + w (the decode kernel's W2 mapping, w2_iteration: two 32-k halves, mma.m16n8k16
// with the tile as A and x as B). x is staged once per block in shared memory in B-fragment order
// ([iteration][half][word][t]). At the end of a run of stages (a tile, or a stream-K piece of one) each
// consumer warp leaves its 16 partial sums in one of TD_RED shared buffers and arrives on the
// buffer's mbarrier; the epilogue warp adds the 8 warps' partials, frees the buffer and stores the
// outputs (or adds the piece through the workspace): neither the producer nor the consumers wait
// for global memory (notes v52: the stream-K additions in the consumers cost 3-4 us per piece).
// Needs M = 1, K % 256 == 0, K / gs % 8 == 0 (16-byte scale rows for the TMA) and 16-byte aligned
// qdata / scale / zero (the launcher checks; otherwise the register kernels run).

constexpr int TD_CONSUMERS = 8;                        // consumer warps
constexpr int TD_THREADS = 32 * (TD_CONSUMERS + 2);    // + the producer warp + the epilogue warp
constexpr int TD_STAGE_K = 256 * TD_CONSUMERS;         // k per stage
constexpr int TD_BOX = 16 * 128;                       // one warp's weight box, bytes
constexpr int TD_SZ = 2048;                            // one scale (or zero) box, bytes (room for gs 32)
constexpr int TD_SLOT = TD_CONSUMERS * TD_BOX + 2 * TD_SZ;  // 20 KB, a multiple of 1024
constexpr int TD_RED = 4;  // buffers of the consumers' partial sums: the epilogue may lag 3 runs behind

// Dynamic shared memory: [S slots][TD_SLOT] | x staged [K / 256][32] uint4 | partials float
// [TD_RED][8][16] | mbarriers full[S], empty[S], red_full[TD_RED], red_empty[TD_RED]. The base is
// rounded up to 1024 B (the 128-byte swizzle repeats every 1024 B of address).
inline size_t tma_decode_smem_bytes(int K, int S) {
  return (size_t)S * TD_SLOT + (size_t)(K / 256) * 512 + TD_RED * TD_CONSUMERS * 16 * 4 + 2 * S * 8 + 2 * TD_RED * 8 + 1024;
}

// Byte offset of logical byte b of row r in a TMA box with IB-byte rows (IB = 16 .. 128), swizzled
// as above (IB = 16: unswizzled). Needs the box at a 1024-byte aligned address.
__device__ __forceinline__ uint32_t td_swz(int r, int b, int IB) {
  return (uint32_t)(r * IB + (b ^ ((((r * IB) >> 7) & ((IB >> 4) - 1)) << 4)));
}
__device__ __forceinline__ uint4 lds128(uint32_t a) {
  uint4 v;
  asm volatile("ld.shared.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(a));
  return v;
}
__device__ __forceinline__ uint32_t lds32(uint32_t a) {
  uint32_t v;
  asm volatile("ld.shared.u32 %0, [%1];" : "=r"(v) : "r"(a));
  return v;
}
__device__ __forceinline__ uint32_t lds16(uint32_t a) {
  unsigned short v;
  asm volatile("ld.shared.u16 %0, [%1];" : "=h"(v) : "r"(a));
  return v;
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void consumer_sync() {  // the 256 consumer threads only (barrier 1)
  asm volatile("bar.sync 1, %0;" ::"n"(32 * TD_CONSUMERS) : "memory");
}

// Stream-K (notes v52). With T tiles on G blocks, dp = (T / G) G tiles are dealt out whole, round-
// robin (tile b + i G for block b); the last T - dp tiles (fewer than G) are cut into their NS stages,
// "units", and the U = (T - dp) NS units are shared out evenly, each block's share first (so that the
// additions below overlap its whole tiles): with U <= G block b < U takes unit b, else block b takes
// [U b / G, U (b + 1) / G) (at least one unit, fewer than NS). Unit u is stage u % NS of tile
// dp + u / NS. A tile shared by several blocks ("pieces") is added up through the caller's workspace
// (int4_plain_mm.h): each piece's 16 row sums go to part[2 b + (tile is b's first ? 0 : 1)] (a block
// holds at most two pieces, its first tile and its last), then an arrival counter per tile; the last
// piece to arrive adds all pieces in block order (deterministic), stores the outputs and sets the
// counter back to 0, so the workspace is left as it was found. dp = T: no stream-K. All int math
// fits 32 bits: U < G NS <= 4096 * 32 (kSkMaxGrid, kTdMaxK).
__device__ __forceinline__ int td_sk_start(int b, int U, int G) { return U <= G ? min(b, U) : U * b / G; }
__device__ __forceinline__ int td_sk_owner(int u, int U, int G) { return U <= G ? u : ((u + 1) * G + U - 1) / U - 1; }

// Calls f(tile, from, to) for each run of stages [from, to) of one tile, in this block's order.
template <class F>
__device__ __forceinline__ void td_walk(int dp, int tiles, int NS, F&& f) {
  const int G = gridDim.x, b = blockIdx.x, U = (tiles - dp) * NS;
  for (int u = td_sk_start(b, U, G), u1 = td_sk_start(b + 1, U, G); u < u1;) {
    const int s0 = u % NS, s1 = min(NS, s0 + (u1 - u));
    f(dp + u / NS, s0, s1);
    u += s1 - s0;
  }
  for (int tile = b; tile < dp; tile += G) f(tile, 0, NS);
}

// Called by lanes 0-15 of one warp (lane i = row i of tile dp + j) with this block's piece of a
// shared tile; returns true (with the tile's total in *sum) in the block that arrives last.
__device__ __noinline__ bool td_stream_k_fixup(unsigned* count, float* part, int j, int U, int NS, float* sum) {
  const int G = gridDim.x, i = threadIdx.x & 15;
  auto slot = [&](int c) { return 2 * c + (j == td_sk_start(c, U, G) / NS ? 0 : 1); };  // block c's piece
  __stcg(part + slot(blockIdx.x) * 16 + i, *sum);
  __threadfence();  // the piece is visible before the arrival that announces it
  __syncwarp(0xffff);
  const int c0 = td_sk_owner(j * NS, U, G), c1 = td_sk_owner((j + 1) * NS - 1, U, G);  // every one holds a piece
  unsigned before = 0;
  if (i == 0) before = atomicAdd(count + j, 1u);
  before = __shfl_sync(0xffff, before, 0);
  if (before != (unsigned)(c1 - c0)) return false;
  __threadfence();
  float total = 0.f;
  for (int c = c0; c <= c1; ++c) total += __ldcg(part + slot(c) * 16 + i);
  if (i == 0) count[j] = 0;  // every piece has arrived: reset for the next call
  *sum = total;
  return true;
}

__global__ void __launch_bounds__(TD_THREADS, 2)
    int4_mm_decode_tma_kernel(const __grid_constant__ CUtensorMap tm_q, const __grid_constant__ CUtensorMap tm_s,
                              const __grid_constant__ CUtensorMap tm_z, const uint16_t* __restrict__ x,
                              uint16_t* __restrict__ out, int N, int K, int gs_shift, int S, int dp,
                              unsigned* __restrict__ sk_count, float* __restrict__ sk_part) {
#if defined(INT4_CUDA_SM90A_DEVICE)
  extern __shared__ __align__(1024) unsigned char td_smem_raw[];
  const uint32_t raw = (uint32_t)__cvta_generic_to_shared(td_smem_raw);
  const uint32_t base = (raw + 1023) & ~1023u;
  const int KI = K >> 8;                                 // 256-k iterations
  const int NS = (KI + TD_CONSUMERS - 1) / TD_CONSUMERS;  // stages per tile
  const int tiles = (N + 15) >> 4;
  const int SG = TD_STAGE_K >> gs_shift;                 // scale columns per stage
  const int IB = SG * 2;                                 // scale box row bytes: 128 / 64 / 32 / 16
  const uint32_t xs = base + S * TD_SLOT;
  float* red = reinterpret_cast<float*>(td_smem_raw + (xs - raw) + KI * 512);  // [TD_RED][8][16]
  const uint32_t full0 = xs + KI * 512 + TD_RED * TD_CONSUMERS * 16 * 4, empty0 = full0 + 8 * S;
  const uint32_t red_full0 = empty0 + 8 * S, red_empty0 = red_full0 + 8 * TD_RED;  // partials [buffer] written / read
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;

  if (threadIdx.x == 0) {
    for (int i = 0; i < S; ++i) {
      mbar_init(full0 + 8 * i, 1);
      mbar_init(empty0 + 8 * i, TD_CONSUMERS);
    }
    for (int p = 0; p < TD_RED; ++p) {
      mbar_init(red_full0 + 8 * p, 8 * TD_CONSUMERS);  // the 8 writing lanes (t = 0) of each consumer warp
      mbar_init(red_empty0 + 8 * p, 1);
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  // Everything is read after the previous kernel (shims/pdl.cuh): a caller may have written the
  // weights in it, and shared memory (unlike L2) could hold stale bytes.
  int4_cuda::pdl_wait();

  if (warp == TD_CONSUMERS) {  // producer
    if (lane != 0) return;
    int gi = 0;
    td_walk(dp, tiles, NS, [&](int tile, int from, int to) {
      for (int s = from; s < to; ++s, ++gi) {
        const int slot = gi % S;
        if (gi >= S) mbar_wait(empty0 + 8 * slot, ((gi / S) & 1) ^ 1);
        const int nb = min(TD_CONSUMERS, KI - s * TD_CONSUMERS);
        const uint32_t dst = base + slot * TD_SLOT, full = full0 + 8 * slot;
        mbar_expect_tx(full, nb * TD_BOX + 2 * 16 * IB);
        for (int b = 0; b < nb; ++b) tma_load_2d(dst + b * TD_BOX, &tm_q, (s * TD_CONSUMERS + b) * 128, tile * 16, full);
        tma_load_2d(dst + TD_CONSUMERS * TD_BOX, &tm_s, s * SG, tile * 16, full);
        tma_load_2d(dst + TD_CONSUMERS * TD_BOX + TD_SZ, &tm_z, s * SG, tile * 16, full);
      }
    });
    return;
  }
  if (warp == TD_CONSUMERS + 1) {  // epilogue: adds the 8 warps' partials of each run and stores them
    int q = 0;
    td_walk(dp, tiles, NS, [&](int tile, int from, int to) {
      const int p = q % TD_RED;
      mbar_wait(red_full0 + 8 * p, (q / TD_RED) & 1);
      float sum = 0.f;
      if (lane < 16) {
#pragma unroll
        for (int w = 0; w < TD_CONSUMERS; ++w) sum += red[p * TD_CONSUMERS * 16 + w * 16 + lane];
      }
      __syncwarp();
      if (lane == 0) mbar_arrive(red_empty0 + 8 * p);
      ++q;
      if (lane < 16) {
        const int n = tile * 16 + lane;
        if ((from == 0 && to == NS) || td_stream_k_fixup(sk_count, sk_part, tile - dp, (tiles - dp) * NS, NS, &sum))
          if (n < N) out[n] = f32_to_bf16_bits(sum);
      }
    });
    return;
  }

  // Consumers. x -> B fragments, once per block: unit u = (iteration u / 8, 32-k chunk c = u % 8),
  // chunk c = (lane t = c / 2, half h = c % 2).
  for (int u = threadIdx.x; u < KI * 8; u += 32 * TD_CONSUMERS) {
    const int it = u >> 3, c = u & 7;
    const uint16_t* xp = x + it * 256 + c * 32;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint4 v = b_fragment(ld_nc_u4(xp + 8 * i));
      asm volatile("st.shared.v4.u32 [%0], {%1,%2,%3,%4};" ::"r"(xs + (uint32_t)(it * 32 + ((c & 1) * 4 + i) * 4 + (c >> 1)) * 16),
                   "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w)
                   : "memory");
    }
  }
  consumer_sync();

  const int g = lane >> 2, t = lane & 3;
  // This lane's offsets inside a slot: weight rows g and g + 8 (chunks 2t, 2t + 1 of 128 B), and the
  // scale / zero of its 64 k (at gs 32 the pair of groups 8w + 2t, 8w + 2t + 1, one 32-bit word).
  const uint32_t wq0 = warp * TD_BOX + td_swz(g, 32 * t, 128), wq0b = warp * TD_BOX + td_swz(g, 32 * t + 16, 128);
  const uint32_t wq1 = wq0 + 8 * 128, wq1b = wq0b + 8 * 128;  // row g + 8: same swizzle phase
  const int sb = ((256 * warp + 64 * t) >> gs_shift) * 2;     // scale byte within the stage's row
  const uint32_t ws0 = TD_CONSUMERS * TD_BOX + td_swz(g, sb, IB);
  const uint32_t ws1 = TD_CONSUMERS * TD_BOX + td_swz(g + 8, sb, IB);
  const bool pair = gs_shift == 5;
  int gi = 0, q = 0;
  td_walk(dp, tiles, NS, [&](int, int from, int to) {
    float acc[2][4] = {};  // one per 32-k half: two independent MMA chains
    for (int s = from; s < to; ++s, ++gi) {
      const int slot = gi % S;
      mbar_wait(full0 + 8 * slot, (gi / S) & 1);
      const int it = s * TD_CONSUMERS + warp;
      if (it < KI) {
        const uint32_t sl = base + slot * TD_SLOT;
        const uint4 w0 = lds128(sl + wq0), w0b = lds128(sl + wq0b), w1 = lds128(sl + wq1), w1b = lds128(sl + wq1b);
        uint32_t s0, z0, s1, z1;
        if (pair) {
          s0 = lds32(sl + ws0), z0 = lds32(sl + ws0 + TD_SZ), s1 = lds32(sl + ws1), z1 = lds32(sl + ws1 + TD_SZ);
        } else {
          s0 = lds16(sl + ws0), z0 = lds16(sl + ws0 + TD_SZ), s1 = lds16(sl + ws1), z1 = lds16(sl + ws1 + TD_SZ);
        }
        // The slot is free once its bytes are in registers: the producer refills it while this
        // warp computes (released after the MMAs instead: up to 3 % slower, notes v42).
        __syncwarp();
        if (lane == 0) mbar_arrive(empty0 + 8 * slot);
        w2_iteration(acc[0], acc[1], w0, w0b, w1, w1b, s0, z0, s1, z1, pair,
                     [&](int h, int i) { return lds128(xs + (uint32_t)(it * 32 + (h * 4 + i) * 4 + t) * 16); });
      } else {
        __syncwarp();
        if (lane == 0) mbar_arrive(empty0 + 8 * slot);
      }
    }
    // acc: d0 = (row g, token 2t), d2 = (row g + 8, token 2t); token 0 is lane t = 0's. The partials
    // of run q go to buffer q % TD_RED, once the epilogue has read run q - TD_RED's.
    if (t == 0) {
      const int p = q % TD_RED;
      if (q >= TD_RED) mbar_wait(red_empty0 + 8 * p, (q / TD_RED - 1) & 1);
      float* r = red + p * TD_CONSUMERS * 16;
      r[warp * 16 + g] = acc[0][0] + acc[1][0];
      r[warp * 16 + g + 8] = acc[0][2] + acc[1][2];
      mbar_arrive(red_full0 + 8 * p);
    }
    ++q;
  });
#endif
}
