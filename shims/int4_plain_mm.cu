// int4_plain_mm kernels and launcher. Contract and layout: int4_plain_mm.h.
//
// Two kernels, chosen by M:
//  * decode (M <= 32): tensor-core matvec. A warp owns 16 weight rows; the weight tile is the MMA's
//    A operand (m16 = weight rows), the M activation rows are its B operand (n8 = tokens, rows
//    >= M fed as zeros), so up to 8 rows cost the same weight traffic as one. Packed weights go
//    straight from DRAM to registers with 16-byte streaming loads (no shared memory), are
//    dequantized in registers (magic-number nibble -> bf16, one bf16x2 fma with scale/zero) and fed
//    to mma.sync m16n8k16 (one n8 tile of tokens for M <= 8, two for M <= 16, four for M <= 32).
//    The warps of a block split K and reduce through shared memory; with many row tiles the
//    blocks are persistent and prefetch their next tile during the reduction.
//  * prefill (M > 32): 128x128x64 tiled GEMM, 8 warps, cp.async multi-stage pipeline for the
//    activation tile and the packed weight tile; each k-tile of weights is dequantized once per
//    block into a bf16 shared-memory tile (double buffered) that ldmatrix feeds to mma.sync.
//
// Nibble order trick (decode): within one 32-bit word of packed weights (8 nibbles k0..k7),
// (w >> 4j) & 0x000F000F | 0x43004300 is the bf16 pair (128 + u_kj, 128 + u_k(j+4)). The MMA sums
// over its 16 k slots in any order as long as A and B agree, so the decode kernel keeps the weight
// pairs as (kj, kj+4) and permutes the activations to match with byte permutes (prmt), instead of
// shuffling nibbles. The prefill kernel, whose activations come through ldmatrix in natural order,
// permutes the dequantized weights back to natural order before storing them.

#include "int4_plain_mm.h"
#include "pdl.cuh"

#include <cuda.h>  // CUtensorMap (types only: the encoder comes from the driver through the runtime)
#include <cudaTypedefs.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>

#include <algorithm>
#include <atomic>
#include <string.h>

namespace {

// ------------------------------------------------------------------------------------------------
// Small device helpers (inline PTX; all are sm_80+).

// Weights are read exactly once: don't allocate them in L1. L2_128: on an L2 miss, fetch the whole
// 128-byte line from DRAM (the .L2::128B prefetch size), for patterns that read half a line now and
// the other half one k-iteration later (the decode kernel's L2P).
template <bool L2_128 = false>
__device__ __forceinline__ uint4 ld_stream_u4(const void* p) {
  uint4 r;
  if constexpr (L2_128)
    asm("ld.global.nc.L1::no_allocate.L2::128B.v4.u32 {%0,%1,%2,%3}, [%4];"
        : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
        : "l"(p));
  else
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
        : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
        : "l"(p));
  return r;
}

__device__ __forceinline__ uint4 ld_nc_u4(const void* p) {
  uint4 r;
  asm("ld.global.nc.v4.u32 {%0,%1,%2,%3}, [%4];"
      : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
      : "l"(p));
  return r;
}

// Asks L2 for [p, p + bytes) and returns at once: nothing comes back to the SM. Safe before
// pdl_wait(): L2 is the GPU's point of coherence, so if the previous kernel writes these bytes
// later, L2 holds the new ones when the real loads come. sm_90 with a 16-byte aligned range: one
// bulk prefetch by thread 0 (the tail below 16 bytes is left to the real loads); otherwise one
// 128-byte line per thread and step.
__device__ __forceinline__ void prefetch_l2(const void* p, int64_t bytes) {
  const char* c = static_cast<const char*>(p);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if ((reinterpret_cast<uintptr_t>(c) & 15) == 0) {
    if (threadIdx.x == 0 && bytes >= 16)
      asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(c), "r"((uint32_t)(bytes & ~int64_t{15}))
                   : "memory");
    return;
  }
#endif
  for (int64_t off = (int64_t)threadIdx.x * 128; off < bytes; off += (int64_t)blockDim.x * 128)
    asm volatile("prefetch.global.L2 [%0];" ::"l"(c + off));
}

__device__ __forceinline__ uint32_t ld_nc_u16(const uint16_t* p) {
  unsigned short v = __ldg(p);
  return (uint32_t)v;
}
__device__ __forceinline__ uint32_t ld_nc_u32(const uint16_t* p) { return __ldg(reinterpret_cast<const unsigned int*>(p)); }

__device__ __forceinline__ uint32_t prmt(uint32_t a, uint32_t b, uint32_t sel) {
  uint32_t r;
  asm("prmt.b32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(sel));
  return r;
}

// (v & 0x000F000F) | 0x43004300: two nibbles -> bf16 pair (128 + u_lo, 128 + u_hi), exact.
__device__ __forceinline__ uint32_t nib_to_bf16x2_biased(uint32_t v) {
  uint32_t r;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(r) : "r"(v), "n"(0x000F000F), "n"(0x43004300));
  return r;
}

__device__ __forceinline__ uint32_t bf16x2_fma(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t d;
  asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}

constexpr uint32_t kBf16x2One = 0x3F803F80u;     // (1.0, 1.0)
constexpr uint32_t kBf16x2Neg136 = 0xC308C308u;  // (-136, -136)

// One packed word (nibbles k0..k7) -> four bf16x2 weights (k0,k4) (k1,k5) (k2,k6) (k3,k7),
// w = fma(u - 8, s, z) rounded once to bf16. s2/z2 are (s,s) and (z,z).
__device__ __forceinline__ void dequant_word(uint32_t w, uint32_t s2, uint32_t z2, uint32_t (&p)[4]) {
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    uint32_t h = nib_to_bf16x2_biased(j == 0 ? w : (w >> (4 * j)));  // 128 + u (exact)
    uint32_t q = bf16x2_fma(h, kBf16x2One, kBf16x2Neg136);          // u - 8   (exact)
    p[j] = bf16x2_fma(q, s2, z2);                                    // q*s + z (one rounding)
  }
}

__device__ __forceinline__ void mma_16816(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                          uint32_t a3, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// One lane's W2 k-iteration (256 k; the decode kernel's W2 and the TMA-ring kernel): rows g and
// g + 8 as two 32-k halves h, weights w0 / w1 (h = 0) and w0b / w1b (h = 1), scale and zero s0 / z0
// (row g) and s1 / z1 (row g + 8) in the low half, and at gs 32 (pair32) the second group's in the
// high half for h = 1. xb(h, i) gives the B registers of word i of half h. Half h accumulates into
// acc_h (the same array twice for one MMA chain).
template <typename XB>
__device__ __forceinline__ void w2_iteration(float (&acc_0)[4], float (&acc_1)[4], uint4 w0, uint4 w0b, uint4 w1,
                                             uint4 w1b, uint32_t s0, uint32_t z0, uint32_t s1, uint32_t z1,
                                             bool pair32, XB&& xb) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const uint32_t sel = (pair32 && h) ? 0x3232 : 0x1010;
    const uint32_t s02 = prmt(s0, s0, sel), z02 = prmt(z0, z0, sel);
    const uint32_t s12 = prmt(s1, s1, sel), z12 = prmt(z1, z1, sel);
    const uint4 v0 = h ? w0b : w0, v1 = h ? w1b : w1;
    const uint32_t wa[4] = {v0.x, v0.y, v0.z, v0.w}, wb[4] = {v1.x, v1.y, v1.z, v1.w};
    float(&acc)[4] = h ? acc_1 : acc_0;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint4 bv = xb(h, i);
      uint32_t pa[4], pb[4];
      dequant_word(wa[i], s02, z02, pa);
      dequant_word(wb[i], s12, z12, pb);
      mma_16816(acc, pa[0], pb[0], pa[1], pb[1], bv.x, bv.y);
      mma_16816(acc, pa[2], pb[2], pa[3], pb[3], bv.z, bv.w);
    }
  }
}

__device__ __forceinline__ uint16_t f32_to_bf16_bits(float f) {
  // round-to-nearest-even; NaN stays NaN
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7F800000u) == 0x7F800000u && (u & 0x007FFFFFu)) return (uint16_t)((u >> 16) | 0x40);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

// f32 activations (int4_cuda_int4_plain_mm_f32): each x is split into two bf16 parts,
// hi = bf16(x) and lo = bf16(x - hi) (round-to-nearest-even; x - hi is exact in f32), and the
// kernels multiply both with the same bf16 weights and add the two f32 results: 16 mantissa bits of
// x reach the tensor cores, |x - hi - lo| <= 2^-18 |x|. Where x - hi is NaN (x = +-inf, or |x| past
// bf16's largest finite) lo = 0, so inf stays inf; a NaN x is NaN through hi.
__device__ __forceinline__ uint32_t cvt_bf16x2(float e0, float e1) {  // e0 -> low half
  uint32_t r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(e1), "f"(e0));
  return r;
}
__device__ __forceinline__ void split2(float e0, float e1, uint32_t& hi, uint32_t& lo) {
  hi = cvt_bf16x2(e0, e1);
  float r0 = e0 - __uint_as_float(hi << 16), r1 = e1 - __uint_as_float(hi & 0xFFFF0000u);
  lo = cvt_bf16x2(r0 == r0 ? r0 : 0.f, r1 == r1 ? r1 : 0.f);
}

// 8 consecutive f32 of x -> their bf16 hi and lo parts, each packed like a bf16 load of 8.
__device__ __forceinline__ void split8(float4 a, float4 b, uint4& hi, uint4& lo) {
  split2(a.x, a.y, hi.x, lo.x);
  split2(a.z, a.w, hi.y, lo.y);
  split2(b.x, b.y, hi.z, lo.z);
  split2(b.z, b.w, hi.w, lo.w);
}
__device__ __forceinline__ uint4 split8_part(float4 a, float4 b, bool lo_part) {
  uint4 hi, lo;
  split8(a, b, hi, lo);
  return lo_part ? lo : hi;
}

// 8 activations (k 0..7) in natural order -> the decode MMA's B registers (k pairs (0,4) (1,5) and
// (2,6) (3,7); see the decode kernel).
__device__ __forceinline__ uint4 b_fragment(uint4 v) {
  return make_uint4(prmt(v.x, v.z, 0x5410), prmt(v.x, v.z, 0x7632), prmt(v.y, v.w, 0x5410), prmt(v.y, v.w, 0x7632));
}

__device__ __forceinline__ float4 ld_nc_f4(const float* p) { return __ldg(reinterpret_cast<const float4*>(p)); }

// ------------------------------------------------------------------------------------------------
// Decode overlap modes (the kernel's `overlap` argument). kOverlapNone: nothing before pdl_wait(),
// and the next kernel launches when this one exits. Otherwise each block prefetches part of its
// first row tile into L2 before pdl_wait() and triggers the next kernel on its last row tile:
// kOverlapTile the whole tile (weights, scales, zeros), kOverlapFirst the first k-iteration of
// each warp's k-range (16 rows x 64 bytes, and the scale and zero lines it needs).
enum DecodeOverlap : int { kOverlapNone = 0, kOverlapFirst = 1, kOverlapTile = 2 };

// The block's first row tile is blockIdx.x (the grid never exceeds the tile count); the warp
// split of K matches the kernel's (ceil(KI / WK) k-iterations per warp).
__device__ __forceinline__ void prefetch_first_tile(const uint8_t* q, const uint16_t* scale, const uint16_t* zero,
                                                    int N, int K, int gs_shift, int overlap) {
  const int r0 = blockIdx.x * 16, rows = min(16, N - r0), G = K >> gs_shift;
  if (overlap == kOverlapTile) {
    prefetch_l2(q + (int64_t)r0 * (K >> 1), (int64_t)rows * (K >> 1));
    prefetch_l2(scale + (int64_t)r0 * G, (int64_t)rows * G * 2);
    prefetch_l2(zero + (int64_t)r0 * G, (int64_t)rows * G * 2);
    return;
  }
  const int lane = threadIdx.x & 31, WK = blockDim.x >> 5, KI = (K + 127) >> 7;
  const int it = (threadIdx.x >> 5) * ((KI + WK - 1) / WK);
  const int r = r0 + (lane & 15);
  if (lane < 16 && r < N && it < KI) {
    asm volatile("prefetch.global.L2 [%0];" ::"l"(q + (int64_t)r * (K >> 1) + it * 64));
    asm volatile("prefetch.global.L2 [%0];" ::"l"(scale + (int64_t)r * G + ((it * 128) >> gs_shift)));
    asm volatile("prefetch.global.L2 [%0];" ::"l"(zero + (int64_t)r * G + ((it * 128) >> gs_shift)));
  }
}

// Decode kernel: M <= 32 (NT token tiles of 8: NT = 1 for M <= 8, 2 for M <= 16, 4 for M <= 32).
//
// Block: WK warps (blockDim.x = 32*WK; the launcher uses 8, fewer when K has fewer 128-k
// iterations), all on the same 16 weight rows [n0, n0+16); warp w handles a contiguous run
// of ceil(KI/WK) k-iterations. One k-iteration = 128 consecutive k: lane (g = lane/4, t = lane%4) owns
// k [it*128 + 32t, +32) of rows n0+g and n0+g+8 (one 16-byte load each, one scale/zero each,
// since 32-k chunks never straddle a group for gs >= 32).
// Per 32-bit word i of the lane's chunk (k 8i..8i+7), two MMAs (j = 0, 1) per 8-token tile:
//   A: a0 = row g pair (k 2j, 2j+4), a2 = row g pair (k 2j+1, 2j+5), a1/a3 the same for row g+8
//   B: b0 = x[tok] at (k 2j, 2j+4), b1 = x[tok] at (k 2j+1, 2j+5)   (built with prmt)
// so slot (2t, 2t+1, 2t+8, 2t+9) <-> k (2j, 2j+4, 2j+1, 2j+5) on both operands.
// W2 (M = 1, K % 256 == 0; DecodePolicy::w2): one k-iteration = 256 k, lane t owns k [it*256 + 64t, +64) of
// rows g and g+8 (two 16-byte loads each: 128 contiguous bytes per row and iteration for the 4 t
// lanes), handled as two 32-k halves with the mapping above; at gs 32 the halves' two groups are
// adjacent, so their scales (and zeros) arrive in one 32-bit load when 4-byte aligned.
// Loads are software-pipelined in batches of U k-iterations, double buffered: batch b+1's weights
// and scales (and, XPRE, token tile 0's activations) are in flight while batch b is dequantized and
// multiplied.
template <int U, bool XPRE, bool W2 = false>
struct DecodeBatch {
  uint4 w0[U], w1[U];
  uint4 w0b[W2 ? U : 1], w1b[W2 ? U : 1];  // W2: the second 16 bytes of rows g and g + 8
  uint32_t s0[U], z0[U], s1[U], z1[U];
  uint4 xv[XPRE ? U : 1][4];  // XPRE: token tile 0's activations, loaded with the weights
};

// k-iterations per warp of the decode kernel (ki over wk warps), rounded up to even for L2P; the
// launcher sizes the staged activations with the same count.
__host__ __device__ __forceinline__ int decode_per_warp(int ki, int wk, bool even) {
  const int p = (ki + wk - 1) / wk;
  return even ? (p + 1) & ~1 : p;
}

// FULLK: K % 128 == 0, so no lane's chunk lies past K and the per-chunk K checks go (~10 % fewer
// instructions, +2-3 % on the large shapes).
// XS (M = 1): each warp first stages the activations of its k-range in dynamic shared memory,
// already permuted into B-fragment order, once per block; the main loop then reads its B
// registers with one LDS.128 per word instead of an LDG.128 plus 4 PRMT, and persistent blocks
// reuse them for every row tile. Layout: uint4 [k-iteration][word i][chunk t], so the four t
// lanes of a phase read 64 contiguous bytes (no bank conflict) and the g lanes broadcast.
// Needs K/128 * 256 bytes of shared memory per block. (With M > 1 the token index sits between
// t's and made 2-4-way bank conflicts: measured 6 % slower at M = 2, 35 % at M = 8.)
// L2P (XS, not W2): the weight loads ask L2 for whole 128-byte lines (.L2::128B). A 128-k iteration
// reads 64 bytes of each row, and the warp's next iteration the other half of the line; each warp
// takes an even number of iterations (decode_per_warp), so that with K % 256 == 0 every warp's range
// is whole lines of each row and a whole-line fetch never brings half a line that the next warp asks
// for again (the last warps may get fewer iterations, or none; notes v58).
// XF32: x and out are f32 [M/2, K] and [M/2, N]; M counts MMA columns, column c is the hi (c even)
// or lo (c odd) bf16 part of activation row c/2 (split8). The two parts of a row land in the same
// lane's accumulators (d0/d1), so the epilogue adds them and writes f32, never rounding to bf16.
// XF32 + XS (one f32 row): both parts are staged, [k-iteration][word i][part][chunk t], and lane g
// reads part g & 1 (lanes g >= 2 feed unused columns); 8 distinct 16-byte reads per phase.
template <int U, int NT, int MINB, bool XPRE, bool FULLK = false, bool XS = false, bool XF32 = false,
          bool W2 = false, bool L2P = false>
__global__ void __launch_bounds__(256, MINB)
    int4_mm_decode_kernel(const void* __restrict__ xv_, const uint8_t* __restrict__ q,
                          const uint16_t* __restrict__ scale, const uint16_t* __restrict__ zero,
                          void* __restrict__ out_, int M, int N, int K, int gs_shift, int overlap) {
  static_assert(!XF32 || !XPRE, "f32 activations are not loaded with the weights");
  static_assert(!W2 || (FULLK && NT == 1 && !XPRE && !XF32), "W2: one bf16 token tile, K % 256 == 0");
  // Token chunks (M > 32, few row tiles; see launch_variant): blockIdx.y takes MMA columns
  // [32y, 32y + 32), i.e. activation rows 32y.. (16y.. for f32). The chunks' blocks run together,
  // so a weight tile read by one is mostly an L2 hit for the others.
  const int col0 = 32 * blockIdx.y;
  const int row0 = XF32 ? col0 / 2 : col0;
  M = min(M - col0, 32);
  const uint16_t* x = static_cast<const uint16_t*>(xv_) + (int64_t)row0 * K;
  const float* xf = static_cast<const float*>(xv_) + (int64_t)row0 * K;
  out_ = XF32 ? static_cast<void*>(static_cast<float*>(out_) + (int64_t)row0 * N)
              : static_cast<void*>(static_cast<uint16_t*>(out_) + (int64_t)row0 * N);
  // Cross-kernel overlap (DecodeOverlap, chosen by the launcher; notes v24). The weights are
  // constants of the call, so before waiting for the previous kernel (shims/pdl.cuh) a block may
  // ask L2 for its first row tile, or for its warps' first k-iteration, while the previous kernel
  // finishes. x and everything else are read only after pdl_wait().
  if (overlap != kOverlapNone && blockIdx.y == 0) prefetch_first_tile(q, scale, zero, N, K, gs_shift, overlap);
  int4_cuda::pdl_wait();
  const int WK = blockDim.x >> 5;
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int g = lane >> 2;
  const int t = lane & 3;
  const int G = K >> gs_shift;
  const int tiles = (N + 15) >> 4;
  // Per-row-tile pointers (the grid strides over row tiles when it is smaller than their count).
  int n0 = 0;
  const uint8_t *q0 = q, *q1 = q;
  const uint16_t *s0p = scale, *s1p = scale, *z0p = zero, *z1p = zero;
  auto set_tile = [&](int tile) {
    n0 = tile * 16;
    const int r0 = min(n0 + g, N - 1);
    const int r1 = min(n0 + g + 8, N - 1);
    q0 = q + (int64_t)r0 * (K >> 1);
    q1 = q + (int64_t)r1 * (K >> 1);
    s0p = scale + (int64_t)r0 * G;
    s1p = scale + (int64_t)r1 * G;
    z0p = zero + (int64_t)r0 * G;
    z1p = zero + (int64_t)r1 * G;
  };
  bool has_x[NT];
  const uint16_t* xr[NT];
  const float* xfr[NT];  // XF32: row (g + 8nt) / 2, part (g + 8nt) & 1 = g & 1
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    has_x[nt] = g + 8 * nt < M;
    xr[nt] = x + (int64_t)(has_x[nt] ? g + 8 * nt : 0) * K;
    xfr[nt] = xf + (int64_t)(has_x[nt] ? (g + 8 * nt) >> 1 : 0) * K;
  }
  // Each warp owns a contiguous run of k-iterations (long sequential reads of each weight row).
  // W2: 256 k per iteration, lane t on k [256 it + 64 t, +64): 32 contiguous bytes of each row and,
  // at gs 32, two adjacent groups whose scales (and zeros) are one 32-bit load when aligned.
  constexpr int kLog2It = W2 ? 8 : 7;
  const int KI = (K + (1 << kLog2It) - 1) >> kLog2It;
  const bool pairs32 = W2 && gs_shift == 5 && (G & 1) == 0 &&
                       ((reinterpret_cast<uintptr_t>(scale) | reinterpret_cast<uintptr_t>(zero)) & 3) == 0;
  const int per_warp = decode_per_warp(KI, WK, L2P);
  const int it_begin = warp * per_warp;
  const int it_end = min(KI, it_begin + per_warp);

  float acc[NT][4];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.f;

  extern __shared__ uint4 xs_smem[];
  constexpr int kParts = XF32 ? 2 : 1;
  constexpr int kXsIt = W2 ? 32 : 16;  // uint4 of staged activations per k-iteration (one part)
  uint4* xs = xs_smem + (int64_t)warp * per_warp * kXsIt * kParts;  // this warp's staged activations
  if (XS) {
    static_assert(!XS || NT == 1, "XS stages one token");
    constexpr int kChunks = W2 ? 8 : 4;  // 32-k chunks per k-iteration
    const int units = max(0, it_end - it_begin) * kChunks;  // (k-iteration, chunk)
    for (int u = lane; u < units; u += 32) {
      const int il = u / kChunks, c = u % kChunks;
      const int kb = (it_begin + il) * (1 << kLog2It) + c * 32;
      if constexpr (W2) {  // chunk c = (lane t = c / 2, half h = c % 2): [iteration][h][word i][t]
#pragma unroll
        for (int i = 0; i < 4; ++i) xs[((il * 2 + (c & 1)) * 4 + i) * 4 + (c >> 1)] = b_fragment(ld_nc_u4(x + kb + 8 * i));
        continue;
      }
      const int tc = c;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        if constexpr (XF32) {
          uint4 hi = make_uint4(0, 0, 0, 0), lo = hi;
          if (FULLK || kb < K) split8(ld_nc_f4(xf + kb + 8 * i), ld_nc_f4(xf + kb + 8 * i + 4), hi, lo);
          xs[((il * 4 + i) * 2 + 0) * 4 + tc] = b_fragment(hi);
          xs[((il * 4 + i) * 2 + 1) * 4 + tc] = b_fragment(lo);
        } else {
          uint4 v = make_uint4(0, 0, 0, 0);
          if (FULLK || kb < K) v = ld_nc_u4(x + kb + 8 * i);
          xs[(il * 4 + i) * 4 + tc] = b_fragment(v);
        }
      }
    }
    __syncwarp();
  }

  static_assert(!L2P || (XS && !W2), "L2P: the staged-x 128-k kernel");
  auto load = [&](DecodeBatch<U, XPRE, W2>& b, int itb) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int it = itb + u;
      if constexpr (W2) {
        // s/z: at gs 32 the pair (group of k 64t, of k 64t + 32) in one register, else one group.
        const int kb = it * 256 + t * 64, grp = kb >> gs_shift;
        if (it < it_end) {
          b.w0[u] = ld_stream_u4(q0 + (kb >> 1));
          b.w0b[u] = ld_stream_u4(q0 + (kb >> 1) + 16);
          b.w1[u] = ld_stream_u4(q1 + (kb >> 1));
          b.w1b[u] = ld_stream_u4(q1 + (kb >> 1) + 16);
          if (pairs32) {
            b.s0[u] = ld_nc_u32(s0p + grp);
            b.z0[u] = ld_nc_u32(z0p + grp);
            b.s1[u] = ld_nc_u32(s1p + grp);
            b.z1[u] = ld_nc_u32(z1p + grp);
          } else if (gs_shift == 5) {  // unaligned pairs: two loads, joined (this waits for them)
            b.s0[u] = ld_nc_u16(s0p + grp) | ld_nc_u16(s0p + grp + 1) << 16;
            b.z0[u] = ld_nc_u16(z0p + grp) | ld_nc_u16(z0p + grp + 1) << 16;
            b.s1[u] = ld_nc_u16(s1p + grp) | ld_nc_u16(s1p + grp + 1) << 16;
            b.z1[u] = ld_nc_u16(z1p + grp) | ld_nc_u16(z1p + grp + 1) << 16;
          } else {
            b.s0[u] = ld_nc_u16(s0p + grp);
            b.z0[u] = ld_nc_u16(z0p + grp);
            b.s1[u] = ld_nc_u16(s1p + grp);
            b.z1[u] = ld_nc_u16(z1p + grp);
          }
        } else {
          b.w0[u] = b.w0b[u] = b.w1[u] = b.w1b[u] = make_uint4(0, 0, 0, 0);
          b.s0[u] = b.z0[u] = b.s1[u] = b.z1[u] = 0;
        }
        continue;
      }
      const int kb = it * 128 + t * 32;
      if (it < it_end && (FULLK || kb < K)) {
        b.w0[u] = ld_stream_u4<L2P>(q0 + (kb >> 1));
        b.w1[u] = ld_stream_u4<L2P>(q1 + (kb >> 1));
        const int grp = kb >> gs_shift;
        b.s0[u] = ld_nc_u16(s0p + grp);
        b.z0[u] = ld_nc_u16(z0p + grp);
        b.s1[u] = ld_nc_u16(s1p + grp);
        b.z1[u] = ld_nc_u16(z1p + grp);
        if (XPRE) {
#pragma unroll
          for (int i = 0; i < 4; ++i)
            b.xv[XPRE ? u : 0][i] = has_x[0] ? ld_nc_u4(xr[0] + kb + 8 * i) : make_uint4(0, 0, 0, 0);
        }
      } else {
        if (XPRE) {
#pragma unroll
          for (int i = 0; i < 4; ++i) b.xv[XPRE ? u : 0][i] = make_uint4(0, 0, 0, 0);
        }
        b.w0[u] = make_uint4(0, 0, 0, 0);
        b.w1[u] = make_uint4(0, 0, 0, 0);
        b.s0[u] = b.z0[u] = b.s1[u] = b.z1[u] = 0;  // -> dequantized weight 0
      }
    }
  };

  auto compute = [&](const DecodeBatch<U, XPRE, W2>& b, int itb) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int it = itb + u;
      if constexpr (W2) {
        if (it >= it_end) continue;  // nothing loaded
        const int kb = it * 256 + t * 64;
        w2_iteration(acc[0], acc[0], b.w0[u], b.w0b[u], b.w1[u], b.w1b[u], b.s0[u], b.z0[u], b.s1[u], b.z1[u],
                     gs_shift == 5, [&](int h, int i) {
                       return XS ? xs[(((it - it_begin) * 2 + h) * 4 + i) * 4 + t]
                                 : b_fragment(ld_nc_u4(xr[0] + kb + 32 * h + 8 * i));
                     });
        continue;
      }
      const int kb = it * 128 + t * 32;
      const bool in_k = it < it_end && (FULLK || kb < K);
      const uint32_t s02 = prmt(b.s0[u], b.s0[u], 0x1010), z02 = prmt(b.z0[u], b.z0[u], 0x1010);
      const uint32_t s12 = prmt(b.s1[u], b.s1[u], 0x1010), z12 = prmt(b.z1[u], b.z1[u], 0x1010);
      const uint32_t wa[4] = {b.w0[u].x, b.w0[u].y, b.w0[u].z, b.w0[u].w};
      const uint32_t wb[4] = {b.w1[u].x, b.w1[u].y, b.w1[u].z, b.w1[u].w};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        uint32_t pa[4], pb[4];
        if constexpr (XS) {
          // This lane's B registers, staged (token 0 for every g: columns 1-7 are never stored).
          // A U > 1 overrun (it >= it_end) has nothing staged and zero weights: skip it.
          if (it >= it_end) continue;
          const uint4 bv = XF32 ? xs[(((it - it_begin) * 4 + i) * 2 + (g & 1)) * 4 + t]
                                : xs[((it - it_begin) * 4 + i) * 4 + t];
          dequant_word(wa[i], s02, z02, pa);
          dequant_word(wb[i], s12, z12, pb);
          mma_16816(acc[0], pa[0], pb[0], pa[1], pb[1], bv.x, bv.y);
          mma_16816(acc[0], pa[2], pb[2], pa[3], pb[3], bv.z, bv.w);
        } else {
          uint4 xv[NT];
#pragma unroll
          for (int nt = 0; nt < NT; ++nt) {
            // Lanes without a token (g + 8nt >= M) read row 0: their D columns are never stored,
            // and a load with no zero-select is cheaper. Only reads beyond K must not happen.
            if constexpr (XF32)
              xv[nt] = in_k ? split8_part(ld_nc_f4(xfr[nt] + kb + 8 * i), ld_nc_f4(xfr[nt] + kb + 8 * i + 4), g & 1)
                            : make_uint4(0, 0, 0, 0);
            else
              xv[nt] = (XPRE && nt == 0) ? b.xv[XPRE ? u : 0][i]
                       : in_k ? ld_nc_u4(xr[nt] + kb + 8 * i) : make_uint4(0, 0, 0, 0);
          }
          dequant_word(wa[i], s02, z02, pa);
          dequant_word(wb[i], s12, z12, pb);
          // x (e0,e1)(e2,e3)(e4,e5)(e6,e7) -> (e0,e4)(e1,e5) and (e2,e6)(e3,e7)
#pragma unroll
          for (int nt = 0; nt < NT; ++nt) {
            mma_16816(acc[nt], pa[0], pb[0], pa[1], pb[1], prmt(xv[nt].x, xv[nt].z, 0x5410),
                      prmt(xv[nt].x, xv[nt].z, 0x7632));
            mma_16816(acc[nt], pa[2], pb[2], pa[3], pb[3], prmt(xv[nt].y, xv[nt].w, 0x5410),
                      prmt(xv[nt].y, xv[nt].w, 0x7632));
          }
        }
      }
    }
  };

  __shared__ float red[8][NT * 4][32];
  int tile = blockIdx.x;
  set_tile(tile);
  DecodeBatch<U, XPRE, W2> ba, bb;
  load(ba, it_begin);
  while (true) {
    // With overlap on, the next kernel may launch once every block is on its last row tile: its
    // blocks then take only the slots that finished blocks free (none of ours still waits for
    // one) and prefetch their own weights. An earlier trigger parked them on slots this weight
    // stream still needed (notes/decode_e2e.md row 6).
    if (overlap != kOverlapNone && tile + (int)gridDim.x >= tiles) int4_cuda::pdl_trigger();
    for (int itb = it_begin; itb < it_end; itb += 2 * U) {
      const bool has_b = itb + U < it_end;
      if (has_b) load(bb, itb + U);
      compute(ba, itb);
      if (itb + 2 * U < it_end) load(ba, itb + 2 * U);
      if (has_b) compute(bb, itb + U);
    }
    // The next row tile's first batch goes in flight before this tile's reduction.
    const int next = tile + gridDim.x;
    const int n0_done = n0;
    if (next < tiles) {
      set_tile(next);
      load(ba, it_begin);
    }

    // Reduce the WK warps' partial sums. acc[nt]: d0 (row g, tok 2t) d1 (row g, tok 2t+1)
    // d2 (row g+8, tok 2t) d3 (row g+8, tok 2t+1), tok += 8*nt.
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int r = 0; r < 4; ++r) red[warp][nt * 4 + r][lane] = acc[nt][r];
    __syncthreads();
    for (int e = threadIdx.x; e < NT * 128; e += blockDim.x) {
      const int r = e >> 5, l = e & 31;
      const int m = 8 * (r >> 2) + 2 * (l & 3) + (r & 1);
      const int n = n0_done + (l >> 2) + 8 * ((r & 3) >> 1);
      if (XF32) {
        // Column pair (m, m + 1) = (hi, lo) of f32 row m / 2; handled by the even r.
        if ((r & 1) == 0 && m < M && n < N) {
          float hi = 0.f, lo = 0.f;
          for (int w = 0; w < WK; ++w) hi += red[w][r][l], lo += red[w][r + 1][l];
          static_cast<float*>(out_)[(int64_t)(m >> 1) * N + n] = hi + lo;
        }
      } else if (m < M && n < N) {
        float sum = 0.f;
        for (int w = 0; w < WK; ++w) sum += red[w][r][l];
        static_cast<uint16_t*>(out_)[(int64_t)m * N + n] = f32_to_bf16_bits(sum);
      }
    }
    if (next >= tiles) break;
    __syncthreads();  // red is reused by the next tile
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.f;
    tile = next;
  }
}

// ------------------------------------------------------------------------------------------------
// Prefill kernel: M > 32. Block tile 128 tokens x 128 weight rows x 64 k, 8 warps (2 x 4), warp tile
// 64 tokens x 32 weight rows (4 x 4 mma m16n8k16). D[token][wrow] = x (A, row) x W^T (B, col).
// Pipeline (one barrier per k-tile): iteration kt issues cp.async for stage kt+S-1, runs the MMAs
// of tile kt from xs[kt%S] and wbf[kt%2], dequantizes tile kt+1 (raw stage (kt+1)%S) into
// wbf[(kt+1)%2], then waits for stage kt+2 and syncs. K % 64 == 32 is handled by zero-filling the
// upper half of the last k-tile (x and weights; its scale/zero read as 0).
// XF32 (f32 activations): a block takes 64 tokens; in each 16-row MMA tile rows 0-7 hold the hi and
// rows 8-15 the lo bf16 parts (split8) of the same 8 tokens, so d0+d2 and d1+d3 are a token's f32
// results. Their x tiles are loaded to registers before the MMAs and split into shared memory after
// them (cp.async cannot convert).
// BM = 64 (token rows per block; warp tile 32 x 32): for M <= 64, where a 128-row tile would be half
// empty and do twice the MMA work (notes v17; at M = 512 it is slower).
constexpr int PF_BM = 128, PF_BN = 128, PF_BK = 64, PF_LD = 72;  // LD: padded row (bf16), 144 B
constexpr int PF_THREADS = 256;

template <int S, int BM = PF_BM>
struct PrefillSmem {
  uint16_t xs[S][BM][PF_LD];
  uint16_t wbf[2][PF_BN][PF_LD];
  uint8_t wraw[S][PF_BN][32];
};

// 16-byte async copy; when !valid nothing is read and the 16 bytes are zero-filled.
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  uint32_t s = (uint32_t)__cvta_generic_to_shared(smem);
  int n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(s), "l"(gmem), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem) {
  uint32_t s = (uint32_t)__cvta_generic_to_shared(smem);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}

// Activation tile loader: chunk c = tid + PF_THREADS * i is (row c / 8, 8 elements at column 8 (c % 8))
// of rows m0.. of x [M, K]; rows >= M point at row M - 1 (never read: ok = false).
template <typename T, int NI>
__device__ __forceinline__ void x_chunks(const T* x, int tid, int m0, int M, int K, const T* (&src)[NI], int (&row)[NI],
                                         int (&part)[NI], bool (&ok)[NI]) {
#pragma unroll
  for (int i = 0; i < NI; ++i) {
    const int c = tid + i * PF_THREADS;
    row[i] = c >> 3;
    part[i] = c & 7;
    ok[i] = m0 + row[i] < M;
    src[i] = x + (int64_t)min(m0 + row[i], M - 1) * K + part[i] * 8;
  }
}

template <int S, bool XF32 = false, int BM = PF_BM>
__global__ void __launch_bounds__(PF_THREADS, 2)
    int4_mm_prefill_kernel(const void* __restrict__ xv_, const uint8_t* __restrict__ q,
                           const uint16_t* __restrict__ scale, const uint16_t* __restrict__ zero,
                           void* __restrict__ out_, int M, int N, int K, int gs_shift) {
  static_assert(S >= 3, "pipeline needs >= 3 stages");
  static_assert(BM == 128 || BM == 64, "token tile");
  constexpr int TOK = XF32 ? BM / 2 : BM;  // tokens per block
  constexpr int MT = BM / 32;              // 16-row MMA tiles per warp (2 warps along the tokens)
  const uint16_t* x = static_cast<const uint16_t*>(xv_);
  const float* xf = static_cast<const float*>(xv_);
  // Before any global access (shims/pdl.cuh). No early pdl_trigger(): the next kernel's blocks
  // would park on SM slots this weight stream uses (measured slower on the llama3 presets).
  int4_cuda::pdl_wait();
  extern __shared__ __align__(128) uint8_t smem_raw[];
  PrefillSmem<S, BM>& sm = *reinterpret_cast<PrefillSmem<S, BM>*>(smem_raw);

  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const int wm = warp & 1;   // token half: BM / 2 rows
  const int wn = warp >> 1;  // weight-row quarter: 32 rows
  const int mtiles = (M + TOK - 1) / TOK;
  const int m0 = (blockIdx.x % mtiles) * TOK;
  const int n0 = (blockIdx.x / mtiles) * PF_BN;
  const int KT = (K + PF_BK - 1) / PF_BK;
  const int G = K >> gs_shift;

  // Loader assignments. x: BM rows x 8 chunks of 8 bf16 (16 B), thread handles chunks tid + 256 i;
  // XF32: BM / 2 tokens x 8 chunks of 8 floats.
  constexpr int XI = BM * 8 / PF_THREADS, XFI = XI / 2;
  const uint16_t* xsrc[XI];
  int xrow[XI], xpart[XI];
  bool xrow_ok[XI];
  x_chunks(x, tid, m0, M, K, xsrc, xrow, xpart, xrow_ok);
  const float* xfsrc[XFI];
  int xftok[XFI], xfpart[XFI];
  bool xftok_ok[XFI];
  x_chunks(xf, tid, m0, M, K, xfsrc, xftok, xfpart, xftok_ok);
  float4 xfv[XFI][2];
  auto xf_fetch = [&](int kt) {
#pragma unroll
    for (int i = 0; i < XFI; ++i) {
      const bool ok = kt < KT && xftok_ok[i] && kt * PF_BK + xfpart[i] * 8 < K;
      xfv[i][0] = ok ? ld_nc_f4(xfsrc[i] + kt * PF_BK) : make_float4(0.f, 0.f, 0.f, 0.f);
      xfv[i][1] = ok ? ld_nc_f4(xfsrc[i] + kt * PF_BK + 4) : make_float4(0.f, 0.f, 0.f, 0.f);
    }
  };
  auto xf_store = [&](int kt) {  // token t -> rows 16(t/8) + t%8 (hi) and + 8 (lo)
    if (kt >= KT) return;
#pragma unroll
    for (int i = 0; i < XFI; ++i) {
      const int row = (xftok[i] >> 3) * 16 + (xftok[i] & 7);
      uint16_t* dst = &sm.xs[kt % S][row][xfpart[i] * 8];
      uint4 hi, lo;
      split8(xfv[i][0], xfv[i][1], hi, lo);
      *reinterpret_cast<uint4*>(dst) = hi;
      *reinterpret_cast<uint4*>(dst + 8 * PF_LD) = lo;
    }
  };
  // raw weights: 128 rows x 2 chunks of 16 B (32 k each); thread = (row tid/2, chunk tid%2).
  // The same (row, 32-k half) is what the thread dequantizes.
  const int dq_row = tid >> 1, dq_half = tid & 1;
  const int dq_n = min(n0 + dq_row, N - 1);
  const uint8_t* qsrc = q + (int64_t)dq_n * (K >> 1) + dq_half * 16;
  const uint16_t* dq_s = scale + (int64_t)dq_n * G;
  const uint16_t* dq_z = zero + (int64_t)dq_n * G;

  auto load_stage = [&](int kt) {
    if (kt < KT) {
      const int slot = kt % S;
      const int k0 = kt * PF_BK;
#pragma unroll
      for (int i = 0; i < (XF32 ? 0 : XI); ++i) {
        // Token rows >= M are zero-filled, not re-read (clamped duplicate reads of one row by many
        // threads measured 2x slower for M = 33..64).
        const bool ok = xrow_ok[i] && k0 + xpart[i] * 8 < K;
        cp_async16(&sm.xs[slot][xrow[i]][xpart[i] * 8], ok ? xsrc[i] + k0 : xsrc[i], ok);
      }
      const bool okw = k0 + dq_half * 32 < K;
      cp_async16(&sm.wraw[slot][dq_row][dq_half * 16], okw ? qsrc + (k0 >> 1) : qsrc, okw);
    }
    cp_async_commit();
  };

  auto dequant_tile = [&](int kt, uint32_t s, uint32_t z) {
    const int slot = kt % S;
    const uint4 raw = *reinterpret_cast<const uint4*>(&sm.wraw[slot][dq_row][dq_half * 16]);
    const uint32_t s2 = prmt(s, s, 0x1010), z2 = prmt(z, z, 0x1010);
    const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      uint32_t p[4];
      dequant_word(words[i], s2, z2, p);  // (k0,k4) (k1,k5) (k2,k6) (k3,k7)
      uint4 o;
      o.x = prmt(p[0], p[1], 0x5410);  // (k0,k1)
      o.y = prmt(p[2], p[3], 0x5410);  // (k2,k3)
      o.z = prmt(p[0], p[1], 0x7632);  // (k4,k5)
      o.w = prmt(p[2], p[3], 0x7632);  // (k6,k7)
      *reinterpret_cast<uint4*>(&sm.wbf[kt & 1][dq_row][dq_half * 32 + i * 8]) = o;
    }
  };

  // Scale/zero of tiles kt+1 and kt+2 live in registers (sa/za, sb/zb); tile kt+3's are loaded in
  // iteration kt, two iterations before use, so their DRAM latency hides behind the MMAs.
  auto ld_sz = [&](int kt, uint32_t& s, uint32_t& z) {
    s = z = 0;
    const int k = kt * PF_BK + dq_half * 32;
    if (kt < KT && k < K) {
      const int grp = k >> gs_shift;
      s = ld_nc_u16(dq_s + grp);
      z = ld_nc_u16(dq_z + grp);
    }
  };

  float acc[MT][4][4];
#pragma unroll
  for (int a = 0; a < MT; ++a)
#pragma unroll
    for (int b = 0; b < 4; ++b)
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[a][b][c] = 0.f;

  // Prologue.
#pragma unroll
  for (int s = 0; s < S - 1; ++s) {
    load_stage(s);
    if (XF32) xf_fetch(s), xf_store(s);
  }
  cp_async_wait<S - 3>();  // stages 0 and 1 landed
  __syncthreads();
  uint32_t sa, za, sb, zb;
  {
    uint32_t s0, z0;
    ld_sz(0, s0, z0);
    ld_sz(1, sa, za);
    ld_sz(2, sb, zb);
    dequant_tile(0, s0, z0);
  }
  __syncthreads();

  for (int kt = 0; kt < KT; ++kt) {
    load_stage(kt + S - 1);
    if (XF32) xf_fetch(kt + S - 1);  // stored after this tile's MMAs (slot (kt-1)%S, free since the last barrier)
    uint32_t sc, zc;
    ld_sz(kt + 3, sc, zc);
    const int slot = kt % S;
    const int wbuf = kt & 1;
#pragma unroll
    for (int kk = 0; kk < PF_BK; kk += 16) {
      uint32_t af[MT][4], bfr[2][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
        ldmatrix_x4(af[mt], &sm.xs[slot][wm * (BM / 2) + mt * 16 + (lane & 15)][kk + (lane >> 4) * 8]);
#pragma unroll
      for (int np = 0; np < 2; ++np)
        ldmatrix_x4(bfr[np], &sm.wbf[wbuf][wn * 32 + np * 16 + (lane & 7) + ((lane >> 4) << 3)]
                                    [kk + ((lane >> 3) & 1) * 8]);
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < 4; ++nt)
          mma_16816(acc[mt][nt], af[mt][0], af[mt][1], af[mt][2], af[mt][3],
                    bfr[nt >> 1][(nt & 1) * 2], bfr[nt >> 1][(nt & 1) * 2 + 1]);
    }
    if (XF32) xf_store(kt + S - 1);
    if (kt + 1 < KT) dequant_tile(kt + 1, sa, za);
    sa = sb; za = zb; sb = sc; zb = zc;
    cp_async_wait<S - 3>();
    __syncthreads();
  }

  // Epilogue: d0 (tok g, wrow 2t) d1 (tok g, wrow 2t+1) d2/d3 tok g+8.
  const int g = lane >> 2, t = lane & 3;
  if constexpr (XF32) {  // d0 + d2, d1 + d3: hi + lo of token m0 + 8 (tile) + g
    float* outf = static_cast<float*>(out_);
    const bool vec2 = ((N & 1) == 0) && ((reinterpret_cast<uintptr_t>(outf) & 7) == 0);
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      const int m = m0 + (wm * MT + mt) * 8 + g;
      if (m >= M) continue;
      float* orow = outf + (int64_t)m * N;
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
        const int n = n0 + wn * 32 + nt * 8 + 2 * t;
        const float v0 = acc[mt][nt][0] + acc[mt][nt][2], v1 = acc[mt][nt][1] + acc[mt][nt][3];
        if (vec2 && n + 1 < N) {
          *reinterpret_cast<float2*>(orow + n) = make_float2(v0, v1);
        } else {
          if (n < N) orow[n] = v0;
          if (n + 1 < N) orow[n + 1] = v1;
        }
      }
    }
    return;
  }
  uint16_t* out = static_cast<uint16_t*>(out_);
  const bool vec_ok = ((N & 1) == 0) && ((reinterpret_cast<uintptr_t>(out) & 3) == 0);
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const int m = m0 + wm * (BM / 2) + mt * 16 + g + hh * 8;
      if (m >= M) continue;
      uint16_t* orow = out + (int64_t)m * N;
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
        const int n = n0 + wn * 32 + nt * 8 + 2 * t;
        const uint16_t lo = f32_to_bf16_bits(acc[mt][nt][hh * 2]);
        const uint16_t hi = f32_to_bf16_bits(acc[mt][nt][hh * 2 + 1]);
        if (vec_ok && n + 1 < N) {
          *reinterpret_cast<uint32_t*>(orow + n) = (uint32_t)lo | ((uint32_t)hi << 16);
        } else {
          if (n < N) orow[n] = lo;
          if (n + 1 < N) orow[n + 1] = hi;
        }
      }
    }
  }
}

#include "int4_plain_mm_sm90.cuh"
#include "int4_plain_mm_tma_decode.cuh"

constexpr int kPrefillStages = 3;

thread_local char g_last_cuda_error[256] = "";

int record_cuda_error(cudaError_t e) {
  snprintf(g_last_cuda_error, sizeof(g_last_cuda_error), "%s: %s", cudaGetErrorName(e),
           cudaGetErrorString(e));
  return INT4_CUDA_ERR_LAUNCH;
}

// Largest M, N, K: 2^30 keeps every 32-bit index expression in the kernels (k + 128, n + 16, ...)
// far from overflow.
constexpr int64_t kMaxDim = int64_t(1) << 30;

// Argument checks, in the order of the status codes. Touches no CUDA API.
int check_args(const void* x, const void* qdata, const void* scale, const void* zero,
               const void* out, int64_t M, int64_t N, int64_t K, int64_t gs, int out_elem) {
  if (!x) return INT4_CUDA_ERR_NULL_X;
  if (!qdata) return INT4_CUDA_ERR_NULL_QDATA;
  if (!scale) return INT4_CUDA_ERR_NULL_SCALE;
  if (!zero) return INT4_CUDA_ERR_NULL_ZERO;
  if (!out) return INT4_CUDA_ERR_NULL_OUT;
  if (M <= 0) return INT4_CUDA_ERR_BAD_M;
  if (N <= 0) return INT4_CUDA_ERR_BAD_N;
  if (K <= 0) return INT4_CUDA_ERR_BAD_K;
  if (gs != 32 && gs != 64 && gs != 128 && gs != 256) return INT4_CUDA_ERR_BAD_GROUP_SIZE;
  if (K % gs != 0) return INT4_CUDA_ERR_K_NOT_DIVISIBLE;
  if (M > kMaxDim || N > kMaxDim || K > kMaxDim) return INT4_CUDA_ERR_TOO_LARGE;
  if (reinterpret_cast<uintptr_t>(x) % 16) return INT4_CUDA_ERR_MISALIGNED_X;
  if (reinterpret_cast<uintptr_t>(qdata) % 16) return INT4_CUDA_ERR_MISALIGNED_QDATA;
  if (reinterpret_cast<uintptr_t>(scale) % 2) return INT4_CUDA_ERR_MISALIGNED_SCALE;
  if (reinterpret_cast<uintptr_t>(zero) % 2) return INT4_CUDA_ERR_MISALIGNED_ZERO;
  if (reinterpret_cast<uintptr_t>(out) % out_elem) return INT4_CUDA_ERR_MISALIGNED_OUT;
  return INT4_CUDA_OK;
}

int gs_shift_of(int64_t gs) { return gs == 32 ? 5 : gs == 64 ? 6 : gs == 128 ? 7 : 8; }

struct Args {
  const void* x;  // bf16, or f32 for the f32 entry points
  const uint8_t* q;
  const uint16_t* s;
  const uint16_t* z;
  void* out;      // same dtype as x
  int M, N, K, gsh;
  void* ws = nullptr;  // the caller's workspace (int4_cuda_int4_plain_mm_ws), or null
  size_t ws_bytes = 0;
};

constexpr int kMaxDevices = 64;

// Decode launch: WK warps per block (capped at the number of 128-k iterations) splitting K; one
// block per 16 weight rows, or (persistent) one resident wave of blocks striding over row tiles.
// XS: the activations are staged in dynamic shared memory (at most kXsMaxSmem; see xs_fits).
constexpr int kXsMaxSmem = 64 * 1024;
// parts: 2 for f32 (hi, lo); even: the L2P kernel's per-warp iterations, rounded up to even.
size_t xs_smem_bytes(const Args& a, int wk, int parts = 1, bool w2 = false, bool even = false) {
  const int ki = w2 ? (a.K + 255) / 256 : (a.K + 127) / 128;
  if (wk > ki) wk = ki;
  return (size_t)wk * decode_per_warp(ki, wk, even) * (w2 ? 32 : 16) * parts * sizeof(uint4);
}
bool xs_fits(const Args& a) { return a.M == 1 && xs_smem_bytes(a, 8, 1, false, true) <= (size_t)kXsMaxSmem; }
// f32 (a.M = MMA columns): one f32 row, both parts staged.
bool xs_fits_f32(const Args& a) { return a.M == 2 && xs_smem_bytes(a, 8, 2) <= (size_t)kXsMaxSmem; }

// Cross-kernel overlap policy (DecodeOverlap), measured on H100 back to back in a CUDA graph (notes
// v24): small calls (<= 4 MB of packed weights, all of SmolLM2's int4 layers) are latency-bound, and
// prefetching their whole first tile before pdl_wait() took 20-25 % off (192x576 2.5 -> 2.0 us);
// long-K calls with one block per tile (>= 8 k-iterations per warp: 4096x14336, 5376x21504) gain
// 2-7 % from the first k-iteration. Elsewhere both the prefetch and the early trigger measured
// slower (4096x4096 7.5 -> 8.2 us, 21504x5376 +1-3 %), or within 2 %: no overlap. Without PDL
// (pre-sm_90, or INT4_CUDA_PDL=0) there is nothing to overlap with; INT4_CUDA_DECODE_OVERLAP=0 in
// the environment turns the overlap off alone (for A/B timing).
constexpr int64_t kOverlapTileMaxBytes = 4 << 20;
int decode_overlap(const Args& a, int wk, bool persistent) {
  static const bool off = [] {
    const char* e = std::getenv("INT4_CUDA_DECODE_OVERLAP");
    return e != nullptr && std::strcmp(e, "0") == 0;
  }();
  if (off || !int4_cuda::pdl_enabled()) return kOverlapNone;
  if ((int64_t)a.N * (a.K / 2) <= kOverlapTileMaxBytes) return kOverlapTile;
  const int ki = (a.K + 127) / 128;
  if (!persistent && (ki + wk - 1) / wk >= 8) return kOverlapFirst;
  return kOverlapNone;
}

// XF32: a.M is the MMA column count, 2 x the f32 rows (see the kernel). M > 32 columns: one grid row
// (blockIdx.y) per 32 columns (NT = 4 only).
template <int U, int NT, int MINB, bool XPRE = false, bool FULLK = false, bool XS = false, bool XF32 = false,
          bool W2 = false, bool L2P = false>
cudaError_t launch_decode(const Args& a, cudaStream_t stream, int wk, bool persistent) {
  auto kernel = int4_mm_decode_kernel<U, NT, MINB, XPRE, FULLK, XS, XF32, W2, L2P>;
  const int tiles = (a.N + 15) / 16;
  const int ki = (a.K + (W2 ? 255 : 127)) / (W2 ? 256 : 128);
  wk = wk < 1 ? 1 : wk > 8 ? 8 : wk;
  if (wk > ki) wk = ki;
  const size_t smem = XS ? xs_smem_bytes(a, wk, XF32 ? 2 : 1, W2, L2P) : 0;
  // Per device, once: opt-in shared memory (XS), resident blocks of 8 warps by registers, the SM
  // count and the SM's shared memory (the XS grid also divides by its per-call shared memory).
  static std::atomic<int> resident_cache[kMaxDevices];
  static std::atomic<int> smem_per_sm_cache[kMaxDevices];
  static std::atomic<int> sms_cache[kMaxDevices];
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return e;
  int resident = dev < kMaxDevices ? resident_cache[dev].load(std::memory_order_relaxed) : 0;
  int smem_per_sm = dev < kMaxDevices ? smem_per_sm_cache[dev].load(std::memory_order_relaxed) : 0;
  int sms = dev < kMaxDevices ? sms_cache[dev].load(std::memory_order_relaxed) : 0;
  if (resident <= 0 && (persistent || XS)) {
    int blocks_per_sm = 0;
    if (XS) {
      e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kXsMaxSmem);
      if (e != cudaSuccess) return e;
    }
    e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    if (e != cudaSuccess) return e;
    e = cudaDeviceGetAttribute(&smem_per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev);
    if (e != cudaSuccess) return e;
    e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks_per_sm, kernel, 256, 0);
    if (e != cudaSuccess) return e;
    resident = sms * blocks_per_sm;  // resident blocks of 8 warps
    if (dev < kMaxDevices) {
      smem_per_sm_cache[dev].store(smem_per_sm, std::memory_order_relaxed);
      sms_cache[dev].store(sms, std::memory_order_relaxed);
      resident_cache[dev].store(resident, std::memory_order_relaxed);
    }
  }
  int grid = tiles;
  if (persistent) {
    int64_t r = (int64_t)resident * 8 / wk;
    if (XS && smem > 0) {  // fewer blocks fit when each holds its staged activations
      const int64_t by_smem = (int64_t)sms * (smem_per_sm / (int64_t)(smem + 4096 + 1024));
      if (by_smem > 0 && by_smem < r) r = by_smem;
    }
    if (r > 0 && r < grid) grid = (int)r;
  }
  const int chunks = (a.M + 31) / 32;
  if (chunks > 1 && (NT != 4 || persistent)) return cudaErrorInvalidConfiguration;  // a launcher bug
  const cudaError_t le = int4_cuda::launch(kernel, dim3(grid, chunks), dim3(wk * 32), smem, stream, a.x, a.q, a.s,
                                           a.z, a.out, a.M, a.N, a.K, a.gsh,
                                           W2 ? (int)kOverlapNone : decode_overlap(a, wk, persistent));
  return le != cudaSuccess ? le : cudaGetLastError();
}

template <int S = kPrefillStages, bool XF32 = false, int BM = PF_BM>
cudaError_t launch_prefill(const Args& a, cudaStream_t stream) {
  const size_t smem = sizeof(PrefillSmem<S, BM>);
  auto kernel = int4_mm_prefill_kernel<S, XF32, BM>;
  cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
  if (e != cudaSuccess) return e;
  const int tok = XF32 ? BM / 2 : BM;
  const int64_t tiles = (int64_t)((a.M + tok - 1) / tok) * ((a.N + PF_BN - 1) / PF_BN);
  if (tiles > INT32_MAX) return cudaErrorInvalidConfiguration;
  const cudaError_t le = int4_cuda::launch(kernel, dim3((unsigned)tiles), dim3(PF_THREADS), smem,
                                           stream, a.x, a.q, a.s, a.z, a.out, a.M, a.N, a.K, a.gsh);
  return le != cudaSuccess ? le : cudaGetLastError();
}

// The Hopper prefill (int4_plain_mm_sm90.cuh) runs where this library was built with sm_90a
// (INT4_CUDA_HAVE_SM90A, set by shims/CMakeLists.txt when its architectures name 90a), the device
// is compute capability 9.0 (sm_90a code runs nowhere else) and K % 64 == 0.
cudaError_t sm90_prefill_available(const Args& a, bool* ok) {
  *ok = false;
#if defined(INT4_CUDA_HAVE_SM90A)
  if (a.K % WG_BK != 0) return cudaSuccess;
  static std::atomic<int> cache[kMaxDevices];  // 0 unknown, 1 no, 2 yes
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return e;
  int c = dev < kMaxDevices ? cache[dev].load(std::memory_order_relaxed) : 0;
  if (c == 0) {
    int major = 0, minor = 0;
    e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    if (e != cudaSuccess) return e;
    e = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
    if (e != cudaSuccess) return e;
    c = major == 9 && minor == 0 ? 2 : 1;
    if (dev < kMaxDevices) cache[dev].store(c, std::memory_order_relaxed);
  }
  *ok = c == 2;
#else
  (void)a;
#endif
  return cudaSuccess;
}

// cuTensorMapEncodeTiled from the driver, through the runtime (no libcuda link), once per process.
cudaError_t tensor_map_encoder(PFN_cuTensorMapEncodeTiled_v12000* fn) {
  static std::atomic<PFN_cuTensorMapEncodeTiled_v12000> cache{nullptr};
  *fn = cache.load(std::memory_order_acquire);
  if (*fn) return cudaSuccess;
  void* p = nullptr;
  cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
  const cudaError_t e = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q);
  if (e != cudaSuccess) return e;
  if (q != cudaDriverEntryPointSuccess || !p) return cudaErrorSymbolNotFound;
  *fn = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
  cache.store(*fn, std::memory_order_release);
  return cudaSuccess;
}

// Row-major 2-D tensor [rows][cols] of elem-byte elements, box [box_rows][box_cols]; out-of-range
// rows read as zeros.
cudaError_t encode_2d(PFN_cuTensorMapEncodeTiled_v12000 fn, CUtensorMap* tm, CUtensorMapDataType type, int elem,
                      const void* ptr, int64_t rows, int64_t cols, int box_rows, int box_cols, CUtensorMapSwizzle swz) {
  const cuuint64_t dims[2] = {(cuuint64_t)cols, (cuuint64_t)rows};
  const cuuint64_t strides[1] = {(cuuint64_t)(cols * elem)};
  const cuuint32_t box[2] = {(cuuint32_t)box_cols, (cuuint32_t)box_rows};
  const cuuint32_t estr[2] = {1, 1};
  const CUresult r = fn(tm, type, 2, const_cast<void*>(ptr), dims, strides, box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE, swz,
                        CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

// The Hopper prefill's scales and zeros go through shared memory in 16-byte chunks of 8 groups
// (int4_plain_mm_sm90.cuh, "wide") where a row has more than 32 groups, a multiple of 8, and both
// tensors are 16-byte aligned; otherwise the kernel loads 2 bytes per k-tile.
bool sm90_wide_scales(const Args& a) {
  const int groups = a.K >> a.gsh;
  return groups > 32 && groups % 8 == 0 &&
         ((reinterpret_cast<uintptr_t>(a.s) | reinterpret_cast<uintptr_t>(a.z)) & 15) == 0;
}

// Whether the Hopper prefill lets the next kernel launch early (the kernel's `early`): only a grid
// split over K (clusters) that fits in one wave, 1 block per SM. Measured on H100 back to back, best
// of two (notes v66, v71): split grids at M = 128 / 256 and with small N or K are 1.7-2.8 % faster
// in every visit (4096x4096 M = 128 -2.6 / -2.7 / -2.8 / -2.7 %, 2048x4096 M = 512 -2.5 / -2.7 %);
// 4096x4096 M = 512 -1.9 to +0.7 % and 4096x14336 M = 512 -0.9 to +1.8 % (within a run's spread).
// Unsplit grids are slower: 6144x4096 M = 512 (96 blocks; the next call's blocks park on its 36
// idle SMs) +1.8 to +3.6 %, 28672x4096 (several waves) +1.2 %.
cudaError_t device_sms(int* sms);
cudaError_t sm90_trigger_early(int split, int64_t blocks, int* early) {
  *early = 0;
  if (split == 1) return cudaSuccess;
  int sms = 0;
  const cudaError_t e = device_sms(&sms);
  if (e == cudaSuccess) *early = blocks <= sms;
  return e;
}

// Tiles [tile0, tile0 + count) of the Hopper prefill kernel with BT-token tiles, each split over K
// by a cluster of SPLIT blocks (needs K / 64 >= SPLIT).
template <int BT, int S, int NA, int SPLIT, bool WIDE>
cudaError_t launch_prefill_sm90_scales(const Args& a, cudaStream_t stream, int64_t tile0, int64_t count) {
  using L = Sm90Smem<BT, S, NA, SPLIT, WIDE>;
  auto kernel = int4_mm_prefill_sm90_kernel<BT, S, NA, SPLIT, WIDE>;
  if (a.K / WG_BK < SPLIT) return cudaErrorInvalidConfiguration;  // a launcher bug
  PFN_cuTensorMapEncodeTiled_v12000 fn = nullptr;
  cudaError_t e = tensor_map_encoder(&fn);
  if (e != cudaSuccess) return e;
  CUtensorMap tm_x, tm_w;
  e = encode_2d(fn, &tm_x, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, a.x, a.M, a.K, BT, WG_BK, CU_TENSOR_MAP_SWIZZLE_128B);
  if (e != cudaSuccess) return e;
  e = encode_2d(fn, &tm_w, CU_TENSOR_MAP_DATA_TYPE_UINT8, 1, a.q, a.N, a.K / 2, WG_BN, WG_BK / 2, CU_TENSOR_MAP_SWIZZLE_NONE);
  if (e != cudaSuccess) return e;
  e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, L::kBytes);
  if (e != cudaSuccess) return e;
  if (count <= 0) return cudaSuccess;
  if (tile0 + count > INT32_MAX / SPLIT) return cudaErrorInvalidConfiguration;
  int early = 0;
  e = sm90_trigger_early(SPLIT, count * SPLIT, &early);
  if (e != cudaSuccess) return e;
  const cudaError_t le =
      int4_cuda::launch_clusters(kernel, dim3((unsigned)(count * SPLIT)), dim3(WG_THREADS), L::kBytes, stream, SPLIT, tm_x,
                                 tm_w, a.s, a.z, static_cast<uint16_t*>(a.out), a.M, a.N, a.K, a.gsh, (int)tile0, early);
  return le != cudaSuccess ? le : cudaGetLastError();
}
template <int BT, int S, int NA, int SPLIT = 1>
cudaError_t launch_prefill_sm90(const Args& a, cudaStream_t stream, int64_t tile0, int64_t count) {
  return sm90_wide_scales(a) ? launch_prefill_sm90_scales<BT, S, NA, SPLIT, true>(a, stream, tile0, count)
                             : launch_prefill_sm90_scales<BT, S, NA, SPLIT, false>(a, stream, tile0, count);
}
template <int BT, int SPLIT = 1>
cudaError_t launch_prefill_sm90_all(const Args& a, cudaStream_t stream) {
  const int64_t tiles = (int64_t)((a.M + BT - 1) / BT) * ((a.N + WG_BN - 1) / WG_BN);
  // Forced split variants on K < 64 SPLIT run unsplit (the policy never picks them there).
  if (SPLIT > 1 && a.K / WG_BK < SPLIT) return launch_prefill_sm90<BT, 5, 2>(a, stream, 0, tiles);
  return launch_prefill_sm90<BT, 5, 2, SPLIT>(a, stream, 0, tiles);
}

// Hopper prefill tiling, from whole waves (grid / SMs, rounded up): 256-token tiles do the most
// work per dequantized weight, 128-token tiles give more blocks. Measured on H100 (notes v22): a
// 128-token tile costs 0.7 of a 256-token one. The third choice runs the full waves of 256-token
// tiles and the remaining weight rows in a second launch of 128-token tiles (28672x4096 at M = 512:
// 448 tiles are 3.4 waves of 132). Split K over a cluster of 2 blocks (v25) halves a tile's k-walk
// and doubles its blocks: for grids that fill less than a wave.
constexpr int kHopperMinM = 48;  // with K >= 2048 (launch_variant)
// Split-K cluster of 2: its time over half an unsplit tile's, measured on H100 (notes v25: 4096x4096
// at M = 512 takes 56.1 us in 64 whole 256-token tiles and 36.9 us in 64 pairs).
constexpr double kSplitCost = 1.32;
cudaError_t launch_prefill_hopper(const Args& a, cudaStream_t stream) {
  int sms = 0;
  const cudaError_t e = device_sms(&sms);
  if (e != cudaSuccess) return e;
  const int64_t rows = (a.N + WG_BN - 1) / WG_BN, mt256 = (a.M + 255) / 256, mt128 = (a.M + 127) / 128;
  const auto waves = [&](int64_t blocks) { return (double)((blocks + sms - 1) / sms); };
  constexpr double kCost128 = 0.7;
  const double c256 = waves(rows * mt256), c128 = kCost128 * waves(rows * mt128);
  const int64_t big_rows = (rows * mt256 / sms) * sms / mt256;  // weight-row tiles in whole waves
  const double csplit = waves(big_rows * mt256) + kCost128 * waves((rows - big_rows) * mt128);
  if (big_rows > 0 && csplit < c256 && csplit < c128) {
    const cudaError_t e1 = launch_prefill_sm90<256, 5, 2>(a, stream, 0, big_rows * mt256);
    if (e1 != cudaSuccess) return e1;
    return launch_prefill_sm90<128, 5, 2>(a, stream, big_rows * mt128, (rows - big_rows) * mt128);
  }
  // Split K over 2 blocks: a wave of clusters costs kSplitCost / 2 of a wave of whole tiles (v25:
  // a k-tile takes longer once every SM streams its tiles through L2). Splits over 4 measured slower
  // than over 2 everywhere (variants 24, 25).
  const bool can_split = a.K / WG_BK >= 4;  // at least 2 k-tiles per block
  const double s256 = can_split ? kSplitCost * waves(rows * mt256 * 2) / 2 : 1e30;
  const double s128 = can_split ? kSplitCost * kCost128 * waves(rows * mt128 * 2) / 2 : 1e30;
  const double best = std::min(std::min(c256, c128), std::min(s256, s128));
  if (best == s256) return launch_prefill_sm90_all<256, 2>(a, stream);
  if (best == s128) return launch_prefill_sm90_all<128, 2>(a, stream);
  return c256 <= c128 ? launch_prefill_sm90_all<256>(a, stream) : launch_prefill_sm90_all<128>(a, stream);
}

// A positive attribute of the current device, cached per device (one cache per Attr).
template <cudaDeviceAttr Attr>
cudaError_t device_attr(int* v) {
  static std::atomic<int> cache[kMaxDevices];
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return e;
  *v = dev < kMaxDevices ? cache[dev].load(std::memory_order_relaxed) : 0;
  if (*v > 0) return cudaSuccess;
  e = cudaDeviceGetAttribute(v, Attr, dev);
  if (e == cudaSuccess && dev < kMaxDevices) cache[dev].store(*v, std::memory_order_relaxed);
  return e;
}
cudaError_t device_sms(int* sms) { return device_attr<cudaDevAttrMultiProcessorCount>(sms); }

// The TMA-ring decode kernel (int4_plain_mm_tma_decode.cuh): M = 1, K % 256 == 0, 16-byte scale
// rows (K / gs % 8 == 0) and 16-byte aligned weights, scales and zeros, on a device and library
// with sm_90a (sm90_prefill_available's test, which also needs K % 64 == 0).
constexpr int kTdMaxSmem = 227 * 1024;  // the largest opt-in shared memory per block (sm_90)
constexpr int kTdMaxK = 65536;           // staged x 64 KB: the slots still fit in kTdMaxSmem
cudaError_t tma_decode_available(const Args& a, bool* ok) {
  *ok = false;
  if (a.M != 1 || a.K % 256 != 0 || a.K > kTdMaxK || (a.K >> a.gsh) % 8 != 0 ||
      ((reinterpret_cast<uintptr_t>(a.q) | reinterpret_cast<uintptr_t>(a.s) | reinterpret_cast<uintptr_t>(a.z)) & 15) != 0)
    return cudaSuccess;
  return sm90_prefill_available(a, ok);
}

// Ring slots and blocks per SM (H100, notes v42): 2 slots at 2 blocks/SM were the fastest; 28672x4096
// gs 32: 28.4 us, with 3 / 4 slots 29.8 / 30.1, 3 blocks/SM 29.7 (one visit); 1 block/SM with 10
// slots 32.0 against 30.2 at 2 blocks/SM with 5 (an earlier build, slots freed after the MMAs).
constexpr int kTdSlots = 2;
constexpr int kTdBlocksPerSm = 2;

// The ring kernel's shared memory for K, and its resident blocks: kTdBlocksPerSm per SM, 1 where the
// staged x of a long K (> ~35K) leaves no room for two.
cudaError_t tma_decode_grid(const Args& a, size_t* smem, int* resident) {
  int smem_per_sm = 0, sms = 0;
  cudaError_t e = device_attr<cudaDevAttrMaxSharedMemoryPerMultiprocessor>(&smem_per_sm);
  if (e == cudaSuccess) e = device_sms(&sms);
  if (e != cudaSuccess) return e;
  constexpr int kReservedPerBlock = 1024;  // the driver's per-block shared memory
  *smem = tma_decode_smem_bytes(a.K, kTdSlots);
  if (*smem > (size_t)kTdMaxSmem) return cudaErrorInvalidConfiguration;  // a launcher bug: see kTdMaxK
  *resident = sms * (*smem + kReservedPerBlock <= (size_t)smem_per_sm / kTdBlocksPerSm ? kTdBlocksPerSm : 1);
  return cudaSuccess;
}

// Stream-K (int4_plain_mm_tma_decode.cuh) shares the row tiles past the last whole round of the
// resident blocks by stages, and adds the pieces up through the caller's workspace: one arrival
// counter per shared tile (fewer than the grid), always at the start of the workspace so that calls
// with different grids find them at zero, then the pieces' partial sums, float [grid][2][16].
constexpr int kSkMaxGrid = 4096;
constexpr size_t kSkCountBytes = kSkMaxGrid * sizeof(unsigned);
// INT4_CUDA_STREAM_K=0 in the environment ignores the workspace (for A/B timing).
bool stream_k_room(const Args& a, int grid) {
  static const bool off = [] {
    const char* e = std::getenv("INT4_CUDA_STREAM_K");
    return e != nullptr && std::strcmp(e, "0") == 0;
  }();
  return !off && a.ws != nullptr && grid <= kSkMaxGrid &&
         a.ws_bytes >= kSkCountBytes + (size_t)grid * 2 * 16 * sizeof(float);
}
// Where it pays (H100, same visit, notes v52): where it shortens the longest block by >= 1/16 (whole
// tiles: ceil(T / G) NS stages; shared: (T / G) NS + ceil(U / G)), with at least one whole round for
// the pieces' additions to overlap. Against whole tiles: 5376x21504 gs 32 33.1 -> 29.5 us (gs 64
// -12 %, gs 128 -13 %), 4240x21504 31.7 -> 24.5, 21504x5376 30.2 -> 28.7, 14336x4096 17.3 -> 16.6,
// 10240x4096 -6 %. Where it shortens nothing (28672x4096, 8192x4096: 14 / 4 stages either way) it
// costs 5-30 %, with no whole round (4096x14336, 4096x4096: the last additions end the call)
// 20-50 %, and 128256x4096 (61 of 62 stages) 0 to +2 %.
bool stream_k_pays(int tiles, int NS, int grid) {
  const int rounds = tiles / grid, rem = tiles % grid;
  const int whole = (rounds + (rem != 0)) * NS, shared = rounds * NS + (rem * NS + grid - 1) / grid;
  return rounds >= 1 && rem != 0 && 16 * (whole - shared) >= whole;
}
int td_stages(const Args& a) { return (a.K / 256 + TD_CONSUMERS - 1) / TD_CONSUMERS; }  // per tile

// Where the TMA ring pays (H100, notes v42-v43, v52, against the register kernels in the same visits;
// stages >= 7/8 full in every case: K = 1536 has one stage of 6 boxes, 2 of 8 warps idle, and
// 49152x1536 lost 10 %):
//  * gs <= 64 from about two rounds of row tiles per resident block: 8192x4096 13.3 -> 11.1 us,
//    10240x4096 -9 %, 12288x4096 -12 %, 28672x4096 31.5 -> 28.4, 21504x5376 -4 %, 128256x4096 -9 %,
//    gs 64 28672x4096 -10 %; and with more than one round where each block streams >= 8 stages
//    (5376x21504: 1.3 rounds, 14 stages, -4 %; with stream-K -13 %). One round loses or ties
//    (4096x16384 +3.5 %, 4096x14336 and 4096x11008 equal), and so does 6144x4096 (1.5 rounds, 2.9
//    stages: +6.6 %; with stream-K +2 %).
//  * gs >= 128, where the register kernel fetches whole L2 lines (L2P), for long streams (>= 16
//    stages per block: 128256x4096 -4 %), or where stream-K shares tiles of >= 8 stages (K = 21504:
//    5376x21504 28.4 -> 26.3 us, 4240x21504 25.9 -> 22.0); 28672x4096 ties, 14336x4096 +7 % (with
//    stream-K +1.5 %).
// INT4_CUDA_TMA_DECODE=0 in the environment keeps the register kernels (for A/B timing).
cudaError_t tma_decode_pays(const Args& a, bool* pays) {
  *pays = false;
  static const bool off = [] {
    const char* e = std::getenv("INT4_CUDA_TMA_DECODE");
    return e != nullptr && std::strcmp(e, "0") == 0;
  }();
  if (off) return cudaSuccess;
  bool ok = false;
  cudaError_t e = tma_decode_available(a, &ok);
  if (e != cudaSuccess || !ok) return e;
  size_t smem = 0;
  int blocks = 0;
  e = tma_decode_grid(a, &smem, &blocks);
  if (e != cudaSuccess) return e;
  const int ki = a.K / 256, stages = td_stages(a), tiles = (a.N + 15) / 16;
  const int64_t stream = (int64_t)tiles * stages;  // stages of all tiles
  if (ki * 8 < 7 * TD_CONSUMERS * stages) return cudaSuccess;
  const bool sk = stream_k_room(a, blocks) && stream_k_pays(tiles, stages, blocks);
  *pays = a.gsh >= 7 ? stream >= 16 * blocks || (sk && stages >= 8)
                     : 10 * tiles >= 19 * blocks || (tiles > blocks && stream >= 8 * blocks);
  return cudaSuccess;
}

// Persistent blocks, kTdSlots ring slots each (tma_decode_grid). Stream-K where stream_k_pays (with
// room in the workspace); StreamK::kAlways (variant 33, tests) shares whatever is past the last whole
// round, kNever (variant 32) keeps whole tiles.
enum class StreamK { kPolicy, kNever, kAlways };
cudaError_t launch_decode_tma(const Args& a, cudaStream_t stream, StreamK mode = StreamK::kPolicy) {
  auto kernel = int4_mm_decode_tma_kernel;
  size_t smem = 0;
  int resident = 0;
  cudaError_t e = tma_decode_grid(a, &smem, &resident);
  if (e != cudaSuccess) return e;
  PFN_cuTensorMapEncodeTiled_v12000 fn = nullptr;
  e = tensor_map_encoder(&fn);
  if (e != cudaSuccess) return e;
  const int G = a.K >> a.gsh, SG = TD_STAGE_K >> a.gsh, IB = 2 * SG;
  const CUtensorMapSwizzle swz = IB == 128  ? CU_TENSOR_MAP_SWIZZLE_128B
                                 : IB == 64 ? CU_TENSOR_MAP_SWIZZLE_64B
                                 : IB == 32 ? CU_TENSOR_MAP_SWIZZLE_32B
                                            : CU_TENSOR_MAP_SWIZZLE_NONE;
  CUtensorMap tm_q, tm_s, tm_z;
  e = encode_2d(fn, &tm_q, CU_TENSOR_MAP_DATA_TYPE_UINT8, 1, a.q, a.N, a.K / 2, 16, 128, CU_TENSOR_MAP_SWIZZLE_128B);
  if (e == cudaSuccess) e = encode_2d(fn, &tm_s, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, a.s, a.N, G, 16, SG, swz);
  if (e == cudaSuccess) e = encode_2d(fn, &tm_z, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, a.z, a.N, G, 16, SG, swz);
  if (e != cudaSuccess) return e;
  e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
  if (e != cudaSuccess) return e;
  const int tiles = (a.N + 15) / 16;
  const bool sk = mode != StreamK::kNever && tiles % resident != 0 && stream_k_room(a, resident) &&
                  (mode == StreamK::kAlways || stream_k_pays(tiles, td_stages(a), resident));
  const int grid = sk ? resident : std::min(tiles, resident);
  const int dp = sk ? tiles / resident * resident : tiles;  // tiles dealt out whole
  unsigned* sk_count = sk ? static_cast<unsigned*>(a.ws) : nullptr;
  float* sk_part = sk ? reinterpret_cast<float*>(static_cast<char*>(a.ws) + kSkCountBytes) : nullptr;
  const cudaError_t le = int4_cuda::launch(kernel, dim3(grid), dim3(TD_THREADS), smem, stream, tm_q, tm_s, tm_z,
                                           static_cast<const uint16_t*>(a.x), static_cast<uint16_t*>(a.out), a.N,
                                           a.K, a.gsh, kTdSlots, dp, sk_count, sk_part);
  return le != cudaSuccess ? le : cudaGetLastError();
}

// Past the decode kernel's 32 MMA columns, up to max_cols: the decode kernel over 32-column token
// chunks (one grid row each) instead of the prefill kernel when the latter would have fewer blocks
// than SMs (few weight rows: its blocks then walk all of K serially). Each chunk re-reads the
// weights, mostly from L2 since the chunks run together, and re-dequantizes them: worth it only for
// a few chunks. Measured on H100 (notes v16), bf16: 4096x4096 M = 33/64/128 71.6/74.5/80.4 ->
// 23.8/28.0/53.5 us, 4096x14336 M = 64 280.6 -> 82.8 us; 28672x4096 (224 prefill blocks) is faster
// in the prefill kernel (M = 64: 128.8 vs 181.4 us). f32 (the register split per lane costs more):
// 4096x4096 M = 33 84.1 -> 67.5 us, equal at M = 64, 3072x576 M = 64 10 % slower.
constexpr int kChunkedMaxCols = 128;
constexpr int kChunkedMaxColsF32 = 96;
cudaError_t chunked_decode_pays(const Args& a, int cols, int max_cols, int tokens_per_prefill_block, bool* pays) {
  *pays = false;
  if (cols > max_cols) return cudaSuccess;
  int sms = 0;
  const cudaError_t e = device_sms(&sms);
  if (e != cudaSuccess) return e;
  const int64_t blocks = (int64_t)((a.M + tokens_per_prefill_block - 1) / tokens_per_prefill_block) * ((a.N + PF_BN - 1) / PF_BN);
  *pays = blocks < (int64_t)sms;
  return cudaSuccess;
}

// Decode policy, measured on H100 (docs/notes/int4_plain_mm.md). 8 warps per row tile; U = 2 (2
// blocks/SM) only for long K (>= 8 k-iterations per warp) when the tiles fit one wave at 2 blocks/SM
// or there are many of them, else U = 1 (3 blocks/SM for one token tile). Many row tiles (and >= 2
// k-iterations per warp, so a tile is worth prefetching across): persistent blocks. 264/396 = one
// wave of 2/3 blocks on an H100's 132 SMs (a tuning constant only; any GPU gets correct results).
// K % 128 == 0: the kernel drops its per-chunk K checks (FULLK).
// w2 (M = 1): the 256-k iteration (W2) with x staged (XS): 32 contiguous bytes of each row per lane,
// and at gs 32 a lane's two groups' scales in one 32-bit load. H100, same visit (notes v32): where
// the blocks are persistent, gs 32, 28672x4096 32.7 -> 31.7 us, 21504x5376 32.3 -> 30.5 (gs 128 27.6
// -> 25.7), 128256x4096 127.3 -> 122.1; on long K without U = 2, 5376x21504 35.6 -> 34.1 (gs 128
// 31.5 -> 28.5). Slower where each warp has only a few k-iterations (4096x4096 7.7 -> 8.4, 6144x4096
// 9.6 -> 10.8) or U = 2 runs (4096x14336 16.4 -> 17.9). At gs >= 64 there is no scale pair, and with
// K = 4096 (two W2 iterations per warp) it measured equal or slower (28672x4096 gs 128 27.3 -> 27.9):
// there W2 needs >= 3 iterations per warp.
// xpre (M <= 4): grids of at most one wave at 2 blocks/SM (<= 264 row tiles) without U = 2 are
// latency-bound, and there loading x with the weights (XPRE) overlaps the two DRAM/L2 round trips
// that the compute-time x loads would serialize. H100, old vs new library in one visit (notes v37):
// M = 1 gs 32 4096x4096 7.90 -> 7.23 us, 576x1536 2.63 -> 2.29, 192x576 1.92 -> 1.85, 1536x576 2.10 ->
// 1.98; 3072x1536 equal; M = 2 / 4 on 4096x4096 7.70 -> 7.43 / equal, but M = 8 8.12 -> 8.61. With
// more tiles its 2 blocks/SM lose (6144x4096 9.3 -> 11.9, 49152x576 13.7 -> 16.3, as variant 11).
// lines (M = 1, gs >= 128): the staged-x kernel with whole-line L2 fetches (L2P, variant 30), whose
// warps each take whole 128-byte lines of every row (K % 256 == 0, an even number of 128-k iterations
// per warp), wherever there are >= 4 iterations per warp and >= 128 row tiles, before W2, U = 2, XPRE
// and the register kernels (not where many tiles take U = 2: not measured). H100, variant 30 / default,
// gs 128, same visits (notes v58): -4 to -11 % where the iterations per warp are even anyway (4096x4096
// 6.27 -> 5.93 us, 6144x4096 8.17 -> 7.55, 4096x14336 15.19 -> 14.26, 4096x5376 7.97 -> 7.11,
// 2048x8192 7.44 -> 6.61; W2's 21504x5376 25.52 -> 24.69, 14336x6144 20.88 -> 20.10); where they are
// odd, rounded up to even, -2 to -11 % (4096x5120 7.10 -> 6.92, 4096x11008 13.11 -> 11.63, 6144x4608
// 8.87 -> 8.23, W2's 13824x5120 17.92 -> 17.17; 28672x5120 equal), and +1 to +12 % without the
// rounding; 3 iterations (4096x3072) +5 %, few tiles +2 to +14 % (2048x2048, 1024x4096); gs 256 the
// same, gs 64 no gain.
// few (M <= 4): U = 2 (the warp's four 128-k iterations all in flight at once) with one block per row
// tile where there are exactly 4 iterations per warp (3072 < K <= 4096) and 64..128 row tiles, so at
// most one block per SM. H100 (132 SMs), default / U = 2 (variant 5), same visit (notes v61): -12 to
// -21 % at every gs (2048x4096 gs 32 5.40 -> 4.36 us, gs 64 5.10 -> 4.09, gs 128 (was L2P) 5.08 ->
// 4.01, M = 4 5.57 -> 4.50; 1024x4096 -12 to -14 %, 1536x4096 -17 %, 2048x3584 -10 to -20 %), but
// +3 to +14 % from 129 tiles up (2064x4096 ... 2112x4096), with 3, 5 or 7 iterations (+7 to +22 %),
// mixed with 6 (1024x6144 -5 to -8 %, 2048x6144 +3 to +15 %), and +3 to +7 % at 16 tiles or fewer.
// The f32 entry (f32 = true) takes it at M = 1 only (its staged-x kernel, variant 15): H100, U = 1 /
// U = 2 in one visit (notes v66): 2048x4096 gs 32 6.27 -> 4.96 us, gs 128 5.77 -> 4.57, 1024x4096
// 4.84 -> 4.12, 1536x4096 gs 64 5.39 -> 4.44, 2048x3584 5.58 -> 5.41; at M = 2 (4 columns, the register
// kernel) U = 2 measured 1-5 % slower (visit 164), so it keeps U = 1.
struct DecodePolicy {
  bool many, u2, fk, w2, xpre, lines;
};
DecodePolicy decode_policy(const Args& a, bool f32 = false) {
  const int ki = (a.K + 127) / 128;
  const int per_warp = (ki + 7) / 8;
  const int tiles = (a.N + 15) / 16;
  const bool many = tiles > 396 && per_warp >= 2;
  const bool few = (f32 ? a.M == 1 : a.M <= 4) && per_warp == 4 && tiles >= 64 && tiles <= 128;
  const bool u2 = (per_warp >= 8 && (many || tiles <= 264)) || few;
  const bool w2 = a.M == 1 && a.K % 256 == 0 && !u2 && (many || per_warp >= 8) && (a.gsh == 5 || (ki / 2 + 7) / 8 >= 3) &&
                  xs_smem_bytes(a, 8, 1, true) <= (size_t)kXsMaxSmem;
  const bool xpre = a.M <= 4 && tiles <= 264 && !u2 && !w2;
  const bool lines = a.M == 1 && a.gsh >= 7 && a.K % 256 == 0 && per_warp >= 4 && tiles >= 128 && !(many && u2) &&
                     !few && xs_fits(a);
  return {many, u2, a.K % 128 == 0, w2, xpre, lines};
}

// The register-path decode kernel with NT token tiles under policy p. NT = 4 (up to 32 columns, and
// token chunks beyond) runs U = 1 and one block per row tile (its registers leave no room for more).
template <int NT, bool XF32>
cudaError_t launch_registers(const Args& a, const DecodePolicy& p, cudaStream_t stream) {
  if constexpr (NT == 4)
    return p.fk ? launch_decode<1, 4, 2, false, true, false, XF32>(a, stream, 8, false)
                : launch_decode<1, 4, 2, false, false, false, XF32>(a, stream, 8, false);
  if constexpr (NT == 1 && !XF32)
    if (p.xpre)
      return p.fk ? launch_decode<1, 1, 2, true, true>(a, stream, 8, false) : launch_decode<1, 1, 2, true>(a, stream, 8, false);
  constexpr int kMinBlocksU1 = NT == 1 ? 3 : 2;
  return p.u2 ? (p.fk ? launch_decode<2, NT, 2, false, true, false, XF32>(a, stream, 8, p.many)
                      : launch_decode<2, NT, 2, false, false, false, XF32>(a, stream, 8, p.many))
              : (p.fk ? launch_decode<1, NT, kMinBlocksU1, false, true, false, XF32>(a, stream, 8, p.many)
                      : launch_decode<1, NT, kMinBlocksU1, false, false, false, XF32>(a, stream, 8, p.many));
}

// Variant table (benchmarking/tuning); variant 0 = the default choice.
cudaError_t launch_variant(const Args& a, int variant, cudaStream_t stream) {
  if (a.M > 16 && a.M <= INT4_CUDA_PLAIN_MM_DECODE_MAX_M &&
      ((variant >= 1 && variant <= 7) || (variant >= 10 && variant <= 12)))
    return launch_decode<1, 4, 2>(a, stream, 8, variant >= 6);
  const bool nt1 = a.M <= 8;
  switch (variant) {
    case 1:  // U = 2, WK = 4
      return nt1 ? launch_decode<2, 1, 2>(a, stream, 4, false)
                 : launch_decode<2, 2, 2>(a, stream, 4, false);
    case 2:  // U = 1, 3 blocks/SM
      return nt1 ? launch_decode<1, 1, 3>(a, stream, 8, false)
                 : launch_decode<1, 2, 2>(a, stream, 8, false);
    case 3:  // U = 1, WK = 2
      return nt1 ? launch_decode<1, 1, 3>(a, stream, 2, false)
                 : launch_decode<1, 2, 2>(a, stream, 2, false);
    case 4:  // U = 1, WK = 8, one block per row tile
      return nt1 ? launch_decode<1, 1, 3>(a, stream, 8, false)
                 : launch_decode<1, 2, 2>(a, stream, 8, false);
    case 5:  // U = 2, WK = 8, one block per row tile
      return nt1 ? launch_decode<2, 1, 2>(a, stream, 8, false)
                 : launch_decode<2, 2, 2>(a, stream, 8, false);
    case 6:  // U = 2, WK = 8, persistent
      return nt1 ? launch_decode<2, 1, 2>(a, stream, 8, true)
                 : launch_decode<2, 2, 2>(a, stream, 8, true);
    case 7:  // U = 1, WK = 8, persistent
      return nt1 ? launch_decode<1, 1, 3>(a, stream, 8, true)
                 : launch_decode<1, 2, 2>(a, stream, 8, true);
    case 10:  // U = 1, persistent, activations loaded with the weights (2 blocks/SM)
      return nt1 ? launch_decode<1, 1, 2, true>(a, stream, 8, true)
                 : launch_decode<1, 2, 2>(a, stream, 8, true);
    case 11:  // U = 1, block per tile, activations loaded with the weights (2 blocks/SM)
      return nt1 ? launch_decode<1, 1, 2, true>(a, stream, 8, false)
                 : launch_decode<1, 2, 2>(a, stream, 8, false);
    case 12:  // U = 2, block per tile, activations loaded with the weights (1 block/SM)
      return nt1 ? launch_decode<2, 1, 1, true>(a, stream, 8, false)
                 : launch_decode<2, 2, 2>(a, stream, 8, false);
    case 13: case 14:  // XS: activations staged in shared memory, U = 1, persistent / block per tile
      if (!xs_fits(a)) break;  // default dispatch
      return a.K % 128 == 0 ? launch_decode<1, 1, 3, false, true, true>(a, stream, 8, variant == 13)
                            : launch_decode<1, 1, 3, false, false, true>(a, stream, 8, variant == 13);
    case 15:  // XS, U = 2 (2 blocks/SM), persistent
      if (!xs_fits(a)) break;
      return a.K % 128 == 0 ? launch_decode<2, 1, 2, false, true, true>(a, stream, 8, true)
                            : launch_decode<2, 1, 2, false, false, true>(a, stream, 8, true);
    case 19: case 20: case 21: case 22: case 23: case 24: case 25: {
      // Hopper prefill (any M) where available, else the default dispatch.
      bool ok = false;
      const cudaError_t e = sm90_prefill_available(a, &ok);
      if (e != cudaSuccess) return e;
      if (!ok) break;
      switch (variant) {
        case 19: return launch_prefill_hopper(a, stream);
        case 20: return launch_prefill_sm90_all<128>(a, stream);
        case 21: return launch_prefill_sm90_all<256>(a, stream);
        case 22: return launch_prefill_sm90_all<256, 2>(a, stream);
        case 23: return launch_prefill_sm90_all<128, 2>(a, stream);
        case 24: return launch_prefill_sm90_all<256, 4>(a, stream);
        default: return launch_prefill_sm90_all<128, 4>(a, stream);
      }
    }
    case 26: case 27: case 28: case 29:  // W2 (256 k per iteration): XS persistent 3/SM, 2/SM, XS block/tile, registers block/tile
      if (a.K % 256 != 0 || a.M > 8 || (variant != 29 && !xs_fits(a))) break;
      if (variant == 26) return launch_decode<1, 1, 3, false, true, true, false, true>(a, stream, 8, true);
      if (variant == 27) return launch_decode<1, 1, 2, false, true, true, false, true>(a, stream, 8, true);
      if (variant == 28) return launch_decode<1, 1, 3, false, true, true, false, true>(a, stream, 8, false);
      return launch_decode<1, 1, 2, false, true, false, false, true>(a, stream, 8, false);
    case 30:  // XS U1 persistent with whole-line L2 fetches (L2P)
      if (a.K % 128 != 0 || !xs_fits(a)) break;
      return launch_decode<1, 1, 3, false, true, true, false, false, true>(a, stream, 8, true);
    case 31: case 32: case 33: {  // TMA-ring decode where available (stream-K by policy / never / always)
      bool ok = false;
      const cudaError_t e = tma_decode_available(a, &ok);
      if (e != cudaSuccess) return e;
      if (!ok) break;
      return launch_decode_tma(a, stream, variant == 31 ? StreamK::kPolicy : variant == 32 ? StreamK::kNever : StreamK::kAlways);
    }
    case 8: return launch_prefill<4>(a, stream);
    case 9: return launch_prefill(a, stream);
    case 17: return launch_prefill<kPrefillStages, false, 64>(a, stream);
    default: break;
  }
  if (a.M == 1) {
    bool tma = false;
    const cudaError_t e = tma_decode_pays(a, &tma);
    if (e != cudaSuccess) return e;
    if (tma) return launch_decode_tma(a, stream);
  }
  if (a.M <= 16) {
    const DecodePolicy p = decode_policy(a);
    if (p.lines) return launch_decode<1, 1, 3, false, true, true, false, false, true>(a, stream, 8, true);
    if (p.w2) return launch_decode<1, 1, 3, false, true, true, false, true>(a, stream, 8, p.many);
    // Persistent blocks stage x once in shared memory and reuse it for every row tile (XS: +4-5 %
    // on 21504x5376 and 128256x4096, equal on 28672x4096; with few tiles the staging does not pay).
    // At gs >= 128 the weight loads fetch whole L2 lines (L2P; H100, same visit, two reps, notes v38:
    // 28672x4096 gs 128 27.2 -> 25.2 us, 128256x4096 106.6 -> 102.7; at gs 64 equal or 1 % slower,
    // on the other decode paths equal or slower: 6144x4096 gs 128 8.2 -> 9.0 us; .L2::256B was
    // 10-30 % slower everywhere).
    if (p.many && xs_fits(a)) {
      if (a.gsh >= 7 && !p.u2)  // (gs >= 128: K % 128 == 0, FULLK)
        return launch_decode<1, 1, 3, false, true, true, false, false, true>(a, stream, 8, true);
      return p.u2 ? (p.fk ? launch_decode<2, 1, 2, false, true, true>(a, stream, 8, true)
                          : launch_decode<2, 1, 2, false, false, true>(a, stream, 8, true))
                  : (p.fk ? launch_decode<1, 1, 3, false, true, true>(a, stream, 8, true)
                          : launch_decode<1, 1, 3, false, false, true>(a, stream, 8, true));
    }
    return a.M <= 8 ? launch_registers<1, false>(a, p, stream) : launch_registers<2, false>(a, p, stream);
  }
  // Hopper: the wgmma kernel (int4_plain_mm_sm90.cuh) for M > 64, and from M > kHopperMinM where
  // K >= 2048. There it beats the token chunks and 64-token tiles too (H100, notes v22, v25: M = 128
  // 4096x4096 53.8 -> 24.8 us, 4096x14336 162 -> 78; M = 64 6144x4096 40.6 -> 25.4, 4096x4096 27.3
  // -> 24.6, 28672x4096 94.2 -> 89.4; but at M = 33 4096x14336 67.3 -> 74.4); with SmolLM2's
  // K = 576 / 1536 the chunks stay faster (128-token prefill 73k vs 57k tok/s end to end).
  bool hopper = false;
  if (variant == 0 && a.M > kHopperMinM) {
    const cudaError_t e = sm90_prefill_available(a, &hopper);
    if (e != cudaSuccess) return e;
    if (hopper && a.K >= 2048) return launch_prefill_hopper(a, stream);
  }
  bool chunked = a.M <= INT4_CUDA_PLAIN_MM_DECODE_MAX_M || (variant == 16 && a.M <= kChunkedMaxCols);
  if (!chunked && variant == 0) {
    const cudaError_t e = chunked_decode_pays(a, a.M, kChunkedMaxCols, PF_BM, &chunked);
    if (e != cudaSuccess) return e;
  }
  if (chunked) return launch_registers<4, false>(a, decode_policy(a), stream);
  // M <= 64 with many weight rows: 64-token tiles, half the MMA work of a half-empty 128-token tile
  // (H100, notes v17: 28672x4096 M = 33/64 126.1/129.9 -> 92.7/94.8 us; at M = 512 64-token tiles
  // are 10-27 % slower).
  if (variant == 0 && a.M <= 64) return launch_prefill<kPrefillStages, false, 64>(a, stream);
  if (hopper && a.M > 64) return launch_prefill_hopper(a, stream);  // 1.7-2.0x the mma.sync kernel at M = 512
  return launch_prefill(a, stream);
}

// f32 activations (variants: int4_cuda_int4_plain_mm_f32_variant in int4_plain_mm.h). The decode
// kernel takes M <= INT4_CUDA_PLAIN_MM_F32_DECODE_MAX_M rows as 2M bf16 columns (hi, lo), with the
// bf16 path's policy (decode_policy).
cudaError_t launch_variant_f32(const Args& a, int variant, cudaStream_t stream) {
  Args c = a;
  c.M = 2 * a.M;  // MMA columns
  const DecodePolicy p = decode_policy(a, true);
  if (variant == 9) return launch_prefill<kPrefillStages, true>(a, stream);
  if (variant == 17) return launch_prefill<kPrefillStages, true, 64>(a, stream);
  if (a.M > INT4_CUDA_PLAIN_MM_F32_DECODE_MAX_M) {  // the prefill kernel, or token chunks (see launch_variant)
    bool chunked = variant == 16 && c.M <= kChunkedMaxCols;
    if (variant == 0) {
      const cudaError_t e = chunked_decode_pays(a, c.M, kChunkedMaxColsF32, PF_BM / 2, &chunked);
      if (e != cudaSuccess) return e;
    }
    return chunked ? launch_registers<4, true>(c, p, stream) : launch_prefill<kPrefillStages, true>(a, stream);
  }
  // M = 1: x split and staged once per block (XS), persistent blocks, U as the bf16 policy says.
  // Measured on H100 (docs/notes/int4_plain_mm.md v15, v18): 1.04x the bf16 time on 28672x4096,
  // 1.11x on 4096x4096, 1.18x on 4096x14336 (U = 2; U = 1: 1.28x), 1.2-1.25x on the SmolLM2 shapes;
  // splitting in registers per lane instead cost 1.3-1.7x.
  if (variant != 18 && xs_fits_f32(c)) {
    if ((p.u2 && variant != 13 && variant != 14) || variant == 15)
      return p.fk ? launch_decode<2, 1, 2, false, true, true, true>(c, stream, 8, true)
                  : launch_decode<2, 1, 2, false, false, true, true>(c, stream, 8, true);
    return p.fk ? launch_decode<1, 1, 3, false, true, true, true>(c, stream, 8, variant != 14)
                : launch_decode<1, 1, 3, false, false, true, true>(c, stream, 8, variant != 14);
  }
  return c.M <= 8 ? launch_registers<1, true>(c, p, stream)
                  : c.M <= 16 ? launch_registers<2, true>(c, p, stream) : launch_registers<4, true>(c, p, stream);
}

int plain_mm_impl(const void* x, const void* qdata, const void* scale, const void* zero, void* out,
                  int64_t M, int64_t N, int64_t K, int64_t group_size, void* ws, size_t ws_bytes,
                  cudaStream_t stream, int variant, bool f32) {
  const int st = check_args(x, qdata, scale, zero, out, M, N, K, group_size, f32 ? 4 : 2);
  if (st != INT4_CUDA_OK) return st;
  if (reinterpret_cast<uintptr_t>(ws) % 16) return INT4_CUDA_ERR_MISALIGNED_WORKSPACE;
  if (!f32 && ((variant >= 1 && variant <= 7) || (variant >= 10 && variant <= 15)) &&
      M > INT4_CUDA_PLAIN_MM_DECODE_MAX_M)
    return INT4_CUDA_ERR_BAD_M;
  Args a{x, static_cast<const uint8_t*>(qdata), static_cast<const uint16_t*>(scale),
         static_cast<const uint16_t*>(zero), out, (int)M, (int)N, (int)K, gs_shift_of(group_size), ws, ws_bytes};
  const cudaError_t e = f32 ? launch_variant_f32(a, variant, stream) : launch_variant(a, variant, stream);
  if (e != cudaSuccess) return record_cuda_error(e);
  g_last_cuda_error[0] = '\0';
  return INT4_CUDA_OK;
}

}  // namespace

extern "C" {

int int4_cuda_int4_plain_mm(const void* x, const void* qdata, const void* scale, const void* zero,
                            void* out, int64_t M, int64_t N, int64_t K, int64_t group_size,
                            int4_cuda_stream_t stream) {
  return plain_mm_impl(x, qdata, scale, zero, out, M, N, K, group_size, nullptr, 0,
                       reinterpret_cast<cudaStream_t>(stream), 0, false);
}

int int4_cuda_int4_plain_mm_ws(const void* x, const void* qdata, const void* scale, const void* zero,
                               void* out, int64_t M, int64_t N, int64_t K, int64_t group_size,
                               void* workspace, size_t workspace_bytes, int4_cuda_stream_t stream) {
  return plain_mm_impl(x, qdata, scale, zero, out, M, N, K, group_size, workspace, workspace_bytes,
                       reinterpret_cast<cudaStream_t>(stream), 0, false);
}

int int4_cuda_int4_plain_mm_f32(const void* x, const void* qdata, const void* scale, const void* zero,
                                void* out, int64_t M, int64_t N, int64_t K, int64_t group_size,
                                int4_cuda_stream_t stream) {
  return plain_mm_impl(x, qdata, scale, zero, out, M, N, K, group_size, nullptr, 0,
                       reinterpret_cast<cudaStream_t>(stream), 0, true);
}

int int4_cuda_int4_plain_mm_f32_variant(const void* x, const void* qdata, const void* scale,
                                        const void* zero, void* out, int64_t M, int64_t N, int64_t K,
                                        int64_t group_size, int4_cuda_stream_t stream, int variant) {
  return plain_mm_impl(x, qdata, scale, zero, out, M, N, K, group_size, nullptr, 0,
                       reinterpret_cast<cudaStream_t>(stream), variant, true);
}

// Not part of the stable contract: forces one kernel variant (benchmarks and tests only).
// variant 0 = default dispatch; see int4_plain_mm.h for the others.
int int4_cuda_int4_plain_mm_variant(const void* x, const void* qdata, const void* scale,
                                    const void* zero, void* out, int64_t M, int64_t N, int64_t K,
                                    int64_t group_size, void* workspace, size_t workspace_bytes,
                                    int4_cuda_stream_t stream, int variant) {
  return plain_mm_impl(x, qdata, scale, zero, out, M, N, K, group_size, workspace, workspace_bytes,
                       reinterpret_cast<cudaStream_t>(stream), variant, false);
}

const char* int4_cuda_status_string(int status) {
  switch (status) {
    case INT4_CUDA_OK: return "ok";
    case INT4_CUDA_ERR_NULL_X: return "x is a null pointer";
    case INT4_CUDA_ERR_NULL_QDATA: return "qdata is a null pointer";
    case INT4_CUDA_ERR_NULL_SCALE: return "scale is a null pointer";
    case INT4_CUDA_ERR_NULL_ZERO: return "zero is a null pointer";
    case INT4_CUDA_ERR_NULL_OUT: return "out is a null pointer";
    case INT4_CUDA_ERR_BAD_M: return "M must be > 0";
    case INT4_CUDA_ERR_BAD_N: return "N must be > 0";
    case INT4_CUDA_ERR_BAD_K: return "K must be > 0";
    case INT4_CUDA_ERR_BAD_GROUP_SIZE: return "group_size must be 32, 64, 128 or 256";
    case INT4_CUDA_ERR_K_NOT_DIVISIBLE: return "K must be divisible by group_size";
    case INT4_CUDA_ERR_TOO_LARGE: return "M, N and K must each be <= 1073741824 (2^30)";
    case INT4_CUDA_ERR_MISALIGNED_X: return "x must be 16-byte aligned";
    case INT4_CUDA_ERR_MISALIGNED_QDATA: return "qdata must be 16-byte aligned";
    case INT4_CUDA_ERR_MISALIGNED_SCALE: return "scale must be 2-byte aligned";
    case INT4_CUDA_ERR_MISALIGNED_ZERO: return "zero must be 2-byte aligned";
    case INT4_CUDA_ERR_MISALIGNED_OUT: return "out must be 2-byte aligned (bf16) / 4-byte aligned (f32)";
    case INT4_CUDA_ERR_MISALIGNED_WORKSPACE: return "workspace must be 16-byte aligned (or null)";
    case INT4_CUDA_ERR_LAUNCH:
      return "CUDA launch failed (no device, no kernel image for this GPU, or bad stream); "
             "see int4_cuda_last_cuda_error()";
    default: return "unknown int4_cuda status code";
  }
}

const char* int4_cuda_last_cuda_error(void) { return g_last_cuda_error; }

}  // extern "C"
