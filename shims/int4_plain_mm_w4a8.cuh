// W4A8 decode kernel (M = 1), an experiment the issue asked to measure (notes v29): variants 26 and
// 27 only, never the default dispatch, because it changes the numerics: the activations are
// quantized to int8. Included by int4_plain_mm.cu (uses its helpers).
//
// Activation quantization, per block of 32 consecutive k (the smallest group, so a block never
// straddles a weight group): sx = amax / 127, qx = rint(x * (127 / amax)) in [-127, 127] (0 where
// amax = 0), both in f32 with IEEE division and round-to-nearest-even. Each block of the kernel
// quantizes the k-range its warps walk, once, into shared memory (persistent blocks reuse it for
// every row tile). Non-finite x: sx is set to NaN, so the output is NaN, never a finite guess.
//
// out[n] = sum over 32-blocks c: s[n, g(c)] * sx_c * (sum_k u[n,k] qx_k - 8 sum_k qx_k)
//                                + z[n, g(c)] * sum_k x_k       (the exact f32 sum of the bf16 x)
// The integer part is exact (|.| <= 32 * 15 * 127 before the bias); the rest is f32, the output is
// rounded to bf16 once.
//
// Layout of the work (the decode kernel's, see int4_mm_decode_kernel): a warp owns 16 weight rows
// and a contiguous run of 128-k iterations; lane (g = lane / 4, t = lane % 4) loads 16 bytes of rows
// g and g + 8 at k [128 it + 32 t, +32): one 32-block of each row, its "chunk" t. The MMA is
// mma.m16n8k32 u8 x s8 -> s32. Its k slots 4t'..4t'+3 and 16+4t'..16+4t'+3 belong to lane t' in
// both A and B, so lane t's A registers hold only chunk t: a0 / a2 = the low / high nibbles of
// word j of row g (k 8j + {0, 2, 4, 6} / {1, 3, 5, 7}), a1 / a3 the same for row g + 8. B is
// block-diagonal: column c holds the activations of chunk c in lane c's slots and zeros elsewhere,
// so after the four MMAs j = 0..3 of an iteration, D[row][c] = sum over chunk c of u * qx, each
// chunk in its own column. Lane (g, t < 2) holds columns 2t and 2t + 1 (d0, d1 row g; d2, d3 row
// g + 8) and applies their scales; lanes t >= 2 hold the empty columns 4-7.
//
// Costs per warp and 128-k iteration (16 rows): 2 LDG.128 of weights, 8 nibble masks (and 4
// shifts), 4 IMMA, 2 LDS.128 of activations (4 lanes), 2 LDS.128 of chunk constants, and the
// scale/zero loads and ~30 f32 instructions of the per-chunk epilogue, against ~250 instructions of
// the bf16 kernel (dequant 15 per word).

// Per-32-block constants in shared memory: {sx, 8 * sum qx (as int bits), sum x, unused}.
struct W4A8Chunk {
  float sx;
  int bias8;
  float sumx;
  float pad;
};

__device__ __forceinline__ void imma_16832(int (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                           uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.u8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ float bf16_bits_to_f32(uint32_t b) { return __uint_as_float(b << 16); }

__device__ __forceinline__ uint32_t ld_nc_u32(const uint16_t* p) { return __ldg(reinterpret_cast<const unsigned int*>(p)); }

// Four int8 (low byte first) from four ints already in [-127, 127].
__device__ __forceinline__ uint32_t pack_s8x4(int a, int b, int c, int d) {
  return (uint32_t)(a & 0xFF) | ((uint32_t)(b & 0xFF) << 8) | ((uint32_t)(c & 0xFF) << 16) | ((uint32_t)d << 24);
}

// U k-iterations of one lane's loads (batches are double buffered, as in the decode kernel).
template <int U>
struct W4A8Batch {
  uint4 w0[U], w1[U];         // rows g, g + 8: chunk t
  uint32_t sz[U][4];          // scale and zero, rows g and g + 8: {s g, z g, s g+8, z g+8}, chunks (ca, cb)
};

// Block: WK warps on 16 weight rows, as the decode kernel. Dynamic shared memory: the quantized
// activations of the block's k-range, uint8 [chunk][32] in B order (per chunk: for j = 0..3, the
// bytes k 8j + {0, 2, 4, 6} then 8j + {1, 3, 5, 7}), then W4A8Chunk [chunk]; chunk = 4 it + t over
// the block's iterations (warp w's first at 4 w per_warp).
template <int U, int MINB, bool I8>
__global__ void __launch_bounds__(256, MINB)
    int4_mm_w4a8_kernel(const uint16_t* __restrict__ x, const uint8_t* __restrict__ q,
                        const uint16_t* __restrict__ scale, const uint16_t* __restrict__ zero,
                        uint16_t* __restrict__ out, int N, int K, int gs_shift, bool pairs32) {
  int4_cuda::pdl_wait();
  const int WK = blockDim.x >> 5;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int G = K >> gs_shift;
  const int tiles = (N + 15) >> 4;
  const int KI = (K + 127) >> 7;
  const int per_warp = (KI + WK - 1) / WK;
  const int it_begin = warp * per_warp;
  const int it_end = min(KI, it_begin + per_warp);

  extern __shared__ uint4 w4a8_smem[];
  const int block_chunks = WK * per_warp * 4;
  constexpr int kXU4 = I8 ? 2 : 4;  // uint4 of activations per chunk
  uint4* xq = w4a8_smem + (int64_t)warp * per_warp * 4 * kXU4;
  const W4A8Chunk* cst_all = reinterpret_cast<const W4A8Chunk*>(w4a8_smem + block_chunks * kXU4);
  W4A8Chunk* cst = reinterpret_cast<W4A8Chunk*>(w4a8_smem + block_chunks * kXU4) + warp * per_warp * 4;
  const float2* sum_all = reinterpret_cast<const float2*>(w4a8_smem + block_chunks * kXU4);  // bf16: {sum x, -136 sum x}
  float2* sums = reinterpret_cast<float2*>(w4a8_smem + block_chunks * kXU4) + warp * per_warp * 4;

  // Stage this warp's chunks: 4 lanes per chunk, lane part p = lane % 4 takes k 8p..8p+7 (I8: word
  // j = p of the B order; bf16: word i = p, in the decode kernel's B-fragment order).
  {
    const int p = lane & 3;
    const int units = max(0, it_end - it_begin) * 4;
    for (int c0 = 0; c0 < units; c0 += 8) {
      const int c = c0 + (lane >> 2);
      const int kb = it_begin * 128 + c * 32;  // chunk c of this warp = k [128 it_begin + 32 c, +32)
      const bool valid = c < units && kb < K;
      uint4 v = make_uint4(0, 0, 0, 0);
      if (valid) v = ld_nc_u4(x + kb + 8 * p);
      const uint32_t wv[4] = {v.x, v.y, v.z, v.w};
      float f[8];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        f[2 * i] = bf16_bits_to_f32(wv[i] & 0xFFFF);
        f[2 * i + 1] = bf16_bits_to_f32(wv[i] >> 16);
      }
      float amax = 0.f, sum = 0.f;
#pragma unroll
      for (int i = 0; i < 8; ++i) amax = fmaxf(amax, fabsf(f[i])), sum += f[i];
#pragma unroll
      for (int o = 1; o <= 2; o <<= 1) {
        amax = fmaxf(amax, __shfl_xor_sync(0xFFFFFFFFu, amax, o));
        sum += __shfl_xor_sync(0xFFFFFFFFu, sum, o);
      }
      if constexpr (!I8) {
        if (c < units) {
          xq[c * 4 + p] = b_fragment(v);
          if (p == 0) sums[c] = make_float2(sum, -136.f * sum);
        }
        continue;
      }
      // fmaxf drops NaN and amax = inf gives inv = 0: the sum is the witness of a non-finite x.
      const bool finite = isfinite(sum);
      const float inv = amax > 0.f && finite ? 127.f / amax : 0.f;
      int qi[8], qsum = 0;
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        qi[i] = __float2int_rn(f[i] * inv);
        qsum += qi[i];
      }
#pragma unroll
      for (int o = 1; o <= 2; o <<= 1) qsum += __shfl_xor_sync(0xFFFFFFFFu, qsum, o);
      if (c < units) {
        reinterpret_cast<uint2*>(xq + c * 2)[p] =
            make_uint2(pack_s8x4(qi[0], qi[2], qi[4], qi[6]), pack_s8x4(qi[1], qi[3], qi[5], qi[7]));
        if (p == 0) cst[c] = W4A8Chunk{finite ? amax / 127.f : __int_as_float(0x7FC00000), 8 * qsum, sum, 0.f};
      }
    }
    __syncwarp();
  }

  int n0 = 0;
  const uint8_t *q0 = q, *q1 = q;
  const uint16_t *s0p = scale, *s1p = scale, *z0p = zero, *z1p = zero;
  auto set_tile = [&](int tile) {
    n0 = tile * 16;
    const int r0 = min(n0 + g, N - 1), r1 = min(n0 + g + 8, N - 1);
    q0 = q + (int64_t)r0 * (K >> 1);
    q1 = q + (int64_t)r1 * (K >> 1);
    s0p = scale + (int64_t)r0 * G;
    s1p = scale + (int64_t)r1 * G;
    z0p = zero + (int64_t)r0 * G;
    z1p = zero + (int64_t)r1 * G;
  };
  // Lanes t < 2 apply the scales of chunks 2t and 2t + 1; lanes t >= 2 compute with chunks 0 and 2
  // (in range, values unused: their columns are empty).
  const int ca = (2 * t) & 3, cb = ca + 1;
  auto load = [&](W4A8Batch<U>& b, int itb) {
#pragma unroll
   for (int u = 0; u < U; ++u) {
    const int it = itb + u;
    const int kb = it * 128 + t * 32;
    if (it < it_end && kb < K) {
      b.w0[u] = ld_stream_u4(q0 + (kb >> 1));
      b.w1[u] = ld_stream_u4(q1 + (kb >> 1));
    } else {
      b.w0[u] = b.w1[u] = make_uint4(0, 0, 0, 0);
    }
    const int ka = it * 128 + ca * 32, kc = ka + 32;
    const int ga = ka >> gs_shift, gb = kc >> gs_shift;
    const bool va = t < 2 && it < it_end && ka < K, vb = t < 2 && it < it_end && kc < K;
    // Scale and zero of chunks ca and cb as bf16 pairs (low half: ca). gs 32 with 4-byte aligned
    // pairs (even G, aligned bases: the launcher's pairs32): one 32-bit load each; gs >= 64: one
    // group for both chunks, one 16-bit load, duplicated at use.
    if (gs_shift == 5 && pairs32) {
      b.sz[u][0] = va ? ld_nc_u32(s0p + ga) : 0;
      b.sz[u][1] = va ? ld_nc_u32(z0p + ga) : 0;
      b.sz[u][2] = va ? ld_nc_u32(s1p + ga) : 0;
      b.sz[u][3] = va ? ld_nc_u32(z1p + ga) : 0;
    } else if (gs_shift == 5) {  // not 4-byte aligned: two loads, joined here (waits for them)
      b.sz[u][0] = va ? ld_nc_u16(s0p + ga) | (vb ? ld_nc_u16(s0p + gb) << 16 : 0) : 0;
      b.sz[u][1] = va ? ld_nc_u16(z0p + ga) | (vb ? ld_nc_u16(z0p + gb) << 16 : 0) : 0;
      b.sz[u][2] = va ? ld_nc_u16(s1p + ga) | (vb ? ld_nc_u16(s1p + gb) << 16 : 0) : 0;
      b.sz[u][3] = va ? ld_nc_u16(z1p + ga) | (vb ? ld_nc_u16(z1p + gb) << 16 : 0) : 0;
    } else {
      b.sz[u][0] = va ? ld_nc_u16(s0p + ga) : 0;
      b.sz[u][1] = va ? ld_nc_u16(z0p + ga) : 0;
      b.sz[u][2] = va ? ld_nc_u16(s1p + ga) : 0;
      b.sz[u][3] = va ? ld_nc_u16(z1p + ga) : 0;
    }
   }
  };
  float acc0 = 0.f, acc1 = 0.f;  // rows g, g + 8
  const bool diag = g == t;      // the lanes that feed B
  auto compute = [&](const W4A8Batch<U>& b, int itb) {
#pragma unroll
   for (int u = 0; u < U; ++u) {
    const int it = itb + u;
    if (it >= it_end) break;
    const int il = it - it_begin;
    const uint32_t wa[4] = {b.w0[u].x, b.w0[u].y, b.w0[u].z, b.w0[u].w};
    const uint32_t wb[4] = {b.w1[u].x, b.w1[u].y, b.w1[u].z, b.w1[u].w};
    // bf16 pair -> f32 of chunk ca (low half) and cb (high half; gs >= 64: the same group).
    const auto lo = [](uint32_t v) { return __uint_as_float(v << 16); };
    const auto hi = [&](uint32_t v) { return __uint_as_float(gs_shift == 5 ? v & 0xFFFF0000u : v << 16); };
    float pa, pb, pc, pd;  // sum over chunk (ca row g, cb row g, ca row g+8, cb row g+8) of (u - 8) x
    float sxa, sxb;        // sum x of chunks ca, cb
    if constexpr (I8) {
      uint4 bx0 = make_uint4(0, 0, 0, 0), bx1 = bx0;
      if (diag) {
        bx0 = xq[(il * 4 + t) * 2];
        bx1 = xq[(il * 4 + t) * 2 + 1];
      }
      const uint32_t bj[8] = {bx0.x, bx0.y, bx0.z, bx0.w, bx1.x, bx1.y, bx1.z, bx1.w};
      int d[4] = {0, 0, 0, 0};
#pragma unroll
      for (int j = 0; j < 4; ++j)
        imma_16832(d, wa[j] & 0x0F0F0F0Fu, wb[j] & 0x0F0F0F0Fu, (wa[j] >> 4) & 0x0F0F0F0Fu, (wb[j] >> 4) & 0x0F0F0F0Fu,
                   bj[2 * j], bj[2 * j + 1]);
      const W4A8Chunk A = cst_all[warp * per_warp * 4 + il * 4 + ca];
      const W4A8Chunk B = cst_all[warp * per_warp * 4 + il * 4 + cb];
      pa = A.sx * (float)(d[0] - A.bias8), pb = B.sx * (float)(d[1] - B.bias8);
      pc = A.sx * (float)(d[2] - A.bias8), pd = B.sx * (float)(d[3] - B.bias8);
      sxa = A.sumx, sxb = B.sumx;
    } else {
      // Exact weights 128 + u (one lop3 per pair), the MMA sums (128 + u) x per chunk in f32, and
      // -136 sum x takes the bias off.
      float d[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const uint4 bv = diag ? xq[(il * 4 + t) * 4 + i] : make_uint4(0, 0, 0, 0);
        uint32_t ra[4], rb[4];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          ra[j] = nib_to_bf16x2_biased(j == 0 ? wa[i] : wa[i] >> (4 * j));
          rb[j] = nib_to_bf16x2_biased(j == 0 ? wb[i] : wb[i] >> (4 * j));
        }
        mma_16816(d, ra[0], rb[0], ra[1], rb[1], bv.x, bv.y);
        mma_16816(d, ra[2], rb[2], ra[3], rb[3], bv.z, bv.w);
      }
      const float4 S = reinterpret_cast<const float4*>(sum_all)[(warp * per_warp * 4 + il * 4 + ca) >> 1];
      pa = d[0] + S.y, pb = d[1] + S.w, pc = d[2] + S.y, pd = d[3] + S.w;
      sxa = S.x, sxb = S.z;
    }
    acc0 = fmaf(lo(b.sz[u][0]), pa, acc0);
    acc0 = fmaf(lo(b.sz[u][1]), sxa, acc0);
    acc0 = fmaf(hi(b.sz[u][0]), pb, acc0);
    acc0 = fmaf(hi(b.sz[u][1]), sxb, acc0);
    acc1 = fmaf(lo(b.sz[u][2]), pc, acc1);
    acc1 = fmaf(lo(b.sz[u][3]), sxa, acc1);
    acc1 = fmaf(hi(b.sz[u][2]), pd, acc1);
    acc1 = fmaf(hi(b.sz[u][3]), sxb, acc1);
   }
  };

  __shared__ float red[8][16];
  int tile = blockIdx.x;
  set_tile(tile);
  W4A8Batch<U> ba, bb;
  load(ba, it_begin);
  while (true) {
    for (int itb = it_begin; itb < it_end; itb += 2 * U) {
      const bool has_b = itb + U < it_end;
      if (has_b) load(bb, itb + U);
      compute(ba, itb);
      if (itb + 2 * U < it_end) load(ba, itb + 2 * U);
      if (has_b) compute(bb, itb + U);
    }
    const int next = tile + gridDim.x;
    const int n0_done = n0;
    if (next < tiles) {
      set_tile(next);
      load(ba, it_begin);
    }
    // Lanes t = 0, 1 hold the two halves of a row's chunks.
    const float r0 = acc0 + __shfl_xor_sync(0xFFFFFFFFu, acc0, 1);
    const float r1 = acc1 + __shfl_xor_sync(0xFFFFFFFFu, acc1, 1);
    if (t == 0) {
      red[warp][g] = r0;
      red[warp][g + 8] = r1;
    }
    __syncthreads();
    if (threadIdx.x < 16 && n0_done + (int)threadIdx.x < N) {
      float sum = 0.f;
      for (int w = 0; w < WK; ++w) sum += red[w][threadIdx.x];
      out[n0_done + threadIdx.x] = f32_to_bf16_bits(sum);
    }
    if (next >= tiles) break;
    __syncthreads();  // red is reused by the next tile
    acc0 = acc1 = 0.f;
    tile = next;
  }
}
