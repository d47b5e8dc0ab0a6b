// SDPA, KV_ATTENTION and QKV_ATTENTION.
//
// attention_kernel (generic): one block per (query row, head, batch), keys streamed in chunks of
// blockDim with an online softmax (running max and sum in fp32), any dtype and head dim.
//
// kv_attention_fast_kernel (bf16 or f32, D in {64, 128}, H / Hkv <= 8): one block per (query row, KV
// head, key range). The G = H / Hkv query heads sharing a KV head are done together, so each K/V
// row is read once for all of them. Warp w takes keys w*32 + lane of each WARPS*32-key step: the
// lane holds one key's scores (a K row read as 16-byte vectors against q in shared memory), the
// warp keeps a running max/sum per head and accumulates P*V with each lane owning D/32 output
// columns (V rows read coalesced, kVRegs values in flight). Decode (T <= kSplitMaxRows) splits the
// keys into 64-key ranges over 2-warp blocks (many short blocks instead of a few long ones); the
// last block of a (row, KV head) to finish merges the partial (max, sum, acc) of the others.
// Longer steps run one 4-warp block per (row, KV head) over all its keys.
#include "common.cuh"

namespace int4_cuda {
namespace kernels {
namespace {

constexpr int kAttnThreads = 128;
constexpr int kMaxGroup = 8;          // query heads per KV head in the fast kernel
constexpr int64_t kKeysPerSplit = 64;  // decode: 2 warps score a split's keys in one step
constexpr int kVRegs = 64;            // V values in flight per lane: 32 rows at D = 64, 16 at D = 128
constexpr int64_t kMaxSplits = 64;

// q element pair (a, b) of RoPE pair i: interleaved (2i, 2i+1) or half-split (i, i + D/2).
__device__ __forceinline__ void rope_pair_index(int64_t i, int64_t d, bool interleaved, int64_t* ia, int64_t* ib) {
  *ia = interleaved ? 2 * i : i;
  *ib = interleaved ? 2 * i + 1 : i + d / 2;
}

// Rotates (a, b) by the angle of position pos, pair i, rounded to dtype (the op-by-op ROPE's rounding).
__device__ __forceinline__ void rope_rotate(float* a, float* b, const float* cos, const float* sin, int64_t pos,
                                            int64_t i, int64_t half, DType t) {
  const float c = cos[pos * half + i], s = sin[pos * half + i];
  const float x = *a, y = *b;
  *a = round_to(x * c - y * s, t);
  *b = round_to(y * c + x * s, t);
}

__global__ void attention_kernel(AttentionParams p) {
  pdl_wait();  // before any global access (shims/pdl.cuh)
  pdl_trigger();
  extern __shared__ float smem[];
  __shared__ float red[32];
  float* qf = smem;
  float* acc = qf + p.E;
  float* pr = acc + p.Ev;
  const int64_t l = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int64_t hk = h / (p.H / p.Hkv);
  int64_t n_keys, sp = 0;
  if (p.start_pos) {
    sp = *p.start_pos;
    if (sp < 0 || sp + p.L > p.max_seq_len) return;  // launch_kv_append flagged it; the step fails
    if (p.cos && sp + p.L > p.rope_positions) return;
    n_keys = sp + l + 1;
  } else {
    n_keys = p.causal ? min(p.S, l + 1) : p.S;
  }
  const int64_t qo = b * p.qs[0] + h * p.qs[1] + l * p.qs[2];
  const int64_t ko = b * p.ks[0] + hk * p.ks[1];
  const int64_t vo = b * p.vs[0] + hk * p.vs[1];
  if (p.cos) {
    const int64_t half = p.E / 2;
    for (int64_t i = threadIdx.x; i < half; i += blockDim.x) {
      int64_t ia, ib;
      rope_pair_index(i, p.E, p.interleaved, &ia, &ib);
      float a = load_f(p.q, qo + ia, p.dtype), bb = load_f(p.q, qo + ib, p.dtype);
      rope_rotate(&a, &bb, p.cos, p.sin, sp + l, i, half, p.dtype);
      qf[ia] = a;
      qf[ib] = bb;
    }
  } else {
    for (int64_t e = threadIdx.x; e < p.E; e += blockDim.x) qf[e] = load_f(p.q, qo + e, p.dtype);
  }
  for (int64_t e = threadIdx.x; e < p.Ev; e += blockDim.x) acc[e] = 0.f;
  __syncthreads();
  float m = -INFINITY, lsum = 0.f;
  for (int64_t j0 = 0; j0 < n_keys; j0 += blockDim.x) {
    const int64_t j = j0 + threadIdx.x;
    float s = -INFINITY;
    if (j < n_keys) {
      float dot = 0.f;
      const int64_t kr = ko + j * p.ks[2];
      for (int64_t e = 0; e < p.E; ++e) dot += qf[e] * load_f(p.k, kr + e, p.dtype);
      s = dot * p.scale;
      if (p.mask) {
        const int64_t mo = b * p.ms[0] + h * p.ms[1] + l * p.ms[2] + j * p.ms[3];
        if (p.mask_dtype == DType::BOOL) {
          if (!static_cast<const uint8_t*>(p.mask)[mo]) s = -INFINITY;
        } else {
          s += load_f(p.mask, mo, p.mask_dtype);
        }
      }
    }
    const float m_new = fmaxf(m, block_max(s, red));
    const float pj = (s == -INFINITY) ? 0.f : expf(s - m_new);
    const float alpha = (m == -INFINITY) ? 0.f : expf(m - m_new);
    const float psum = block_sum(pj, red);
    pr[threadIdx.x] = pj;
    __syncthreads();
    const int64_t nj = min(static_cast<int64_t>(blockDim.x), n_keys - j0);
    for (int64_t e = threadIdx.x; e < p.Ev; e += blockDim.x) {
      float a = acc[e] * alpha;
      for (int64_t jj = 0; jj < nj; ++jj) a += pr[jj] * load_f(p.v, vo + (j0 + jj) * p.vs[2] + e, p.dtype);
      acc[e] = a;
    }
    lsum = lsum * alpha + psum;
    m = m_new;
    __syncthreads();
  }
  const int64_t oo = b * p.os[0] + h * p.os[1] + l * p.os[2];
  for (int64_t e = threadIdx.x; e < p.Ev; e += blockDim.x) store_f(p.out, oo + e, p.out_dtype, acc[e] / lsum);
}

// The fast kernel's element type T (bf16 or float): conversions and the DType for round_to.
__device__ __forceinline__ float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_f(float v) { return v; }
template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16(v); }
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <typename T> constexpr DType dtype_of() { return sizeof(T) == 4 ? DType::FLOAT32 : DType::BFLOAT16; }

// 16 bytes of T -> 16 / sizeof(T) floats.
__device__ __forceinline__ void vec16_to_f32(const uint4& u, float* out, __nv_bfloat16) { bf16x8_to_f32(u, out); }
__device__ __forceinline__ void vec16_to_f32(const uint4& u, float* out, float) {
  out[0] = __uint_as_float(u.x); out[1] = __uint_as_float(u.y); out[2] = __uint_as_float(u.z); out[3] = __uint_as_float(u.w);
}

// N consecutive T (N = 2 or 4, aligned to N elements) -> floats.
template <int N>
__device__ __forceinline__ void load_n_f32(const __nv_bfloat16* p, float* out) {
  if constexpr (N == 2) {
    const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p));
    out[0] = f.x; out[1] = f.y;
  } else {
    const uint2 w = *reinterpret_cast<const uint2*>(p);
    const float2 f0 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&w.x));
    const float2 f1 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&w.y));
    out[0] = f0.x; out[1] = f0.y; out[2] = f1.x; out[3] = f1.y;
  }
}
template <int N>
__device__ __forceinline__ void load_n_f32(const float* p, float* out) {
  if constexpr (N == 2) {
    const float2 f = *reinterpret_cast<const float2*>(p);
    out[0] = f.x; out[1] = f.y;
  } else {
    const float4 f = *reinterpret_cast<const float4*>(p);
    out[0] = f.x; out[1] = f.y; out[2] = f.z; out[3] = f.w;
  }
}

// D: head dim; GMAX >= G = H / Hkv (register arrays are sized by it); WARPS per block; T: element
// type of q, the caches and out (bf16, or float for an fp32 export).
template <int D, int GMAX, int WARPS, typename T>
__global__ void __launch_bounds__(WARPS * 32) kv_attention_fast_kernel(KvAttentionParams p, int64_t keys_per_split,
                                                                       int* err) {
  pdl_wait();  // before any global access (shims/pdl.cuh)
  pdl_trigger();
  constexpr int kGroup = GMAX;
  constexpr int kFastWarps = WARPS;
  constexpr int kStep = WARPS * 32;  // keys a block scores per step (one per lane)
  constexpr int E = D / 32;  // output columns per lane
  constexpr int PER = 16 / static_cast<int>(sizeof(T));  // elements per 16-byte vector
  constexpr int KV = D / PER;  // 16-byte vectors per K row
  constexpr DType kT = dtype_of<T>();
  constexpr int kVBatch = kVRegs / E;
  __shared__ float qs[kGroup][D];
  __shared__ float wm[kFastWarps][kGroup], wl[kFastWarps][kGroup];
  __shared__ float wacc[kFastWarps][kGroup][D];
  __shared__ int last_block;
  const int64_t t = blockIdx.x, hk = blockIdx.y, split = blockIdx.z;
  const int G = static_cast<int>(p.H / p.Hkv);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t sp = *p.start_pos;
  const bool first = blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0 && threadIdx.x == 0;
  if (sp < 0 || sp + p.T > p.max_seq_len) {  // flagged here when appending, else by launch_kv_append
    if (p.k_new && first) set_error(err, kErrKvPosition);
    return;
  }
  if (p.cos && sp + p.T > p.rope_positions) {
    if (p.k_new && first) set_error(err, kErrRopePosition);
    return;
  }
  const int64_t n_keys = sp + t + 1;
  const int64_t n_active = (n_keys + keys_per_split - 1) / keys_per_split;
  if (split >= n_active) return;
  const int64_t k_begin = split * keys_per_split, k_end = min(n_keys, k_begin + keys_per_split);
  const T* q = static_cast<const T*>(p.q) + t * p.q_row + hk * G * D;
  const T* kc = static_cast<const T*>(p.k_cache);
  const T* vc = static_cast<const T*>(p.v_cache);

  if (p.k_new && split == n_active - 1) {  // single-row step: this block owns cache row sp of head hk
    const T* kn = static_cast<const T*>(p.k_new) + hk * D;
    const T* vn = static_cast<const T*>(p.v_new) + hk * D;
    T* kd = const_cast<T*>(kc) + (sp * p.Hkv + hk) * D;
    T* vd = const_cast<T*>(vc) + (sp * p.Hkv + hk) * D;
    for (int i = threadIdx.x; i < D / 2; i += blockDim.x) {
      int64_t ia, ib;
      rope_pair_index(i, D, p.interleaved, &ia, &ib);
      float a = to_f(kn[ia]), b = to_f(kn[ib]);
      if (p.cos) rope_rotate(&a, &b, p.cos, p.sin, sp, i, D / 2, kT);
      kd[ia] = from_f<T>(a);
      kd[ib] = from_f<T>(b);
      vd[ia] = vn[ia];
      vd[ib] = vn[ib];
    }
  }
  for (int idx = threadIdx.x; idx < G * D / 2; idx += blockDim.x) {
    const int g = idx / (D / 2), i = idx % (D / 2);
    int64_t ia, ib;
    rope_pair_index(i, D, p.interleaved, &ia, &ib);
    float a = to_f(q[g * D + ia]), b = to_f(q[g * D + ib]);
    if (p.cos) rope_rotate(&a, &b, p.cos, p.sin, sp + t, i, D / 2, kT);
    qs[g][ia] = a;
    qs[g][ib] = b;
  }
  __syncthreads();  // also orders the appended cache row before this block reads it

  float m[kGroup], l[kGroup], acc[kGroup][E];
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.f;
#pragma unroll
    for (int e = 0; e < E; ++e) acc[g][e] = 0.f;
  }
  for (int64_t j0 = k_begin + warp * 32; j0 < k_end; j0 += kStep) {
    const int64_t j = j0 + lane;
    float s[kGroup];
#pragma unroll
    for (int g = 0; g < kGroup; ++g) s[g] = 0.f;
    if (j < k_end) {
      const uint4* kr = reinterpret_cast<const uint4*>(kc + (j * p.Hkv + hk) * D);
#pragma unroll
      for (int c = 0; c < KV; ++c) {
        const uint4 u = kr[c];  // one 16-byte load
        float kf[PER];
        vec16_to_f32(u, kf, T{});
#pragma unroll
        for (int g = 0; g < kGroup; ++g)
          if (g < G) {
#pragma unroll
            for (int e = 0; e < PER; ++e) s[g] += qs[g][c * PER + e] * kf[e];
          }
      }
    }
#pragma unroll
    for (int g = 0; g < kGroup; ++g) {
      if (g >= G) continue;
      const float sg = j < k_end ? s[g] * p.scale : -INFINITY;
      const float m_new = fmaxf(m[g], warp_max(sg));  // finite: lane 0's key is always valid
      const float pj = j < k_end ? expf(sg - m_new) : 0.f;
      const float alpha = expf(m[g] - m_new);         // 0 on the first step (m = -inf)
      l[g] = l[g] * alpha + warp_sum(pj);
#pragma unroll
      for (int e = 0; e < E; ++e) acc[g][e] *= alpha;
      m[g] = m_new;
      s[g] = pj;
    }
    // P*V over this step's keys, kVBatch V rows loaded before they are used so their latencies
    // overlap (nj is warp-uniform: the shuffles see the whole warp).
    const int nj = static_cast<int>(min(static_cast<int64_t>(32), k_end - j0));
    for (int jb = 0; jb < nj; jb += kVBatch) {
      float vf[kVBatch][E];
#pragma unroll
      for (int u = 0; u < kVBatch; ++u) {
        load_n_f32<E>(vc + ((j0 + min(jb + u, nj - 1)) * p.Hkv + hk) * D + lane * E, vf[u]);
      }
#pragma unroll
      for (int u = 0; u < kVBatch; ++u) {
        if (jb + u >= nj) break;
#pragma unroll
        for (int g = 0; g < kGroup; ++g) {
          if (g >= G) continue;
          const float pj = __shfl_sync(0xffffffffu, s[g], jb + u);
#pragma unroll
          for (int e = 0; e < E; ++e) acc[g][e] += pj * vf[u][e];
        }
      }
    }
  }
  // This block's warps -> one (max, sum, acc) per head.
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
    if (g >= G) continue;
    if (lane == 0) {
      wm[warp][g] = m[g];
      wl[warp][g] = l[g];
    }
#pragma unroll
    for (int e = 0; e < E; ++e) wacc[warp][g][lane * E + e] = acc[g][e];
  }
  __syncthreads();
  const int64_t splits = gridDim.z;
  float* part = p.scratch + ((t * p.Hkv + hk) * splits) * static_cast<int64_t>(G) * (D + 2);
  for (int idx = threadIdx.x; idx < G * D; idx += blockDim.x) {
    const int g = idx / D, e = idx % D;
    float mx = -INFINITY;
    for (int w = 0; w < kFastWarps; ++w) mx = fmaxf(mx, wm[w][g]);
    float sum = 0.f, a = 0.f;
    for (int w = 0; w < kFastWarps; ++w) {
      const float f = wm[w][g] == -INFINITY ? 0.f : expf(wm[w][g] - mx);  // idle warps weigh 0
      sum += wl[w][g] * f;
      a += wacc[w][g][e] * f;
    }
    if (n_active == 1) {  // the only key range of this row: no partials to merge
      static_cast<T*>(p.out)[t * p.out_row + (hk * G + g) * D + e] = from_f<T>(a / sum);
    } else {
      float* ps = part + split * G * (D + 2) + g * (D + 2);
      ps[2 + e] = a;
      if (e == 0) {
        ps[0] = mx;
        ps[1] = sum;
      }
    }
  }
  if (n_active == 1) return;
  // Last block of this (row, KV head) to finish merges the partials of its n_active splits.
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    int* counter = p.counters + t * p.Hkv + hk;
    last_block = atomicAdd(counter, 1) == n_active - 1;
    if (last_block) *counter = 0;  // ready for the next launch (the stream orders them)
  }
  __syncthreads();
  if (!last_block) return;
  __threadfence();
  for (int idx = threadIdx.x; idx < G * D; idx += blockDim.x) {
    const int g = idx / D, e = idx % D;
    float mx = -INFINITY;
    for (int64_t sidx = 0; sidx < n_active; ++sidx) mx = fmaxf(mx, __ldcg(part + sidx * G * (D + 2) + g * (D + 2)));
    float sum = 0.f, a = 0.f;
    for (int64_t sidx = 0; sidx < n_active; ++sidx) {
      const float* ps = part + sidx * G * (D + 2) + g * (D + 2);
      const float f = expf(__ldcg(ps) - mx);
      sum += __ldcg(ps + 1) * f;
      a += __ldcg(ps + 2 + e) * f;
    }
    static_cast<T*>(p.out)[t * p.out_row + (hk * G + g) * D + e] = from_f<T>(a / sum);
  }
}

__global__ void kv_append_kernel(const void* k, int64_t k_row, const void* v, int64_t v_row, void* kc, void* vc,
                                 DType dtype, int64_t T, int64_t hkv, int64_t d, int64_t max_seq_len,
                                 const int64_t* start_pos, const float* cos, const float* sin, int64_t rope_positions,
                                 bool interleaved, int* err) {
  pdl_wait();  // before any global access (shims/pdl.cuh)
  pdl_trigger();
  const int64_t sp = *start_pos;
  if (sp < 0 || sp + T > max_seq_len) {
    if (blockIdx.x == 0 && threadIdx.x == 0) set_error(err, kErrKvPosition);
    return;
  }
  if (cos && sp + T > rope_positions) {
    if (blockIdx.x == 0 && threadIdx.x == 0) set_error(err, kErrRopePosition);
    return;
  }
  const int64_t half = d / 2;
  const int64_t n = T * hkv * half;  // one (k pair, v pair) per thread
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t pair = i % half, h = (i / half) % hkv, t = i / (half * hkv);
    int64_t ia, ib;
    rope_pair_index(pair, d, interleaved, &ia, &ib);
    const int64_t ks = t * k_row + h * d, vs = t * v_row + h * d, dst = ((sp + t) * hkv + h) * d;
    float a = load_f(k, ks + ia, dtype), b = load_f(k, ks + ib, dtype);
    if (cos) rope_rotate(&a, &b, cos, sin, sp + t, pair, half, dtype);
    store_f(kc, dst + ia, dtype, a);
    store_f(kc, dst + ib, dtype, b);
    store_f(vc, dst + ia, dtype, load_f(v, vs + ia, dtype));
    store_f(vc, dst + ib, dtype, load_f(v, vs + ib, dtype));
  }
}

}  // namespace

void launch_attention(const AttentionParams& p, cudaStream_t stream) {
  if (p.B == 0 || p.H == 0 || p.L == 0) return;
  const size_t smem = sizeof(float) * static_cast<size_t>(p.E + p.Ev + kAttnThreads);
  dim3 grid(static_cast<unsigned>(p.L), static_cast<unsigned>(p.H), static_cast<unsigned>(p.B));
  launch(attention_kernel, grid, dim3(kAttnThreads), smem, stream, p);
}

// The instantiation whose group bound is the smallest >= g (1, 2, 4 or 8 query heads per KV head).
template <int D, int W, typename T>
void launch_fast_t(const KvAttentionParams& p, int64_t g, dim3 grid, int64_t per_split, int* err, cudaStream_t stream) {
  if (g <= 1) launch(kv_attention_fast_kernel<D, 1, W, T>, grid, dim3(W * 32), 0, stream, p, per_split, err);
  else if (g <= 2) launch(kv_attention_fast_kernel<D, 2, W, T>, grid, dim3(W * 32), 0, stream, p, per_split, err);
  else if (g <= 4) launch(kv_attention_fast_kernel<D, 4, W, T>, grid, dim3(W * 32), 0, stream, p, per_split, err);
  else launch(kv_attention_fast_kernel<D, 8, W, T>, grid, dim3(W * 32), 0, stream, p, per_split, err);
}
template <int D, int W>
void launch_fast(const KvAttentionParams& p, int64_t g, dim3 grid, int64_t per_split, int* err, cudaStream_t stream) {
  if (p.dtype == DType::FLOAT32) launch_fast_t<D, W, float>(p, g, grid, per_split, err, stream);
  else launch_fast_t<D, W, __nv_bfloat16>(p, g, grid, per_split, err, stream);
}

bool kv_attention_fast(DType dtype, int64_t H, int64_t Hkv, int64_t D) {
  return (dtype == DType::BFLOAT16 || dtype == DType::FLOAT32) && (D == 64 || D == 128) && Hkv > 0 && H % Hkv == 0 &&
         H / Hkv <= kMaxGroup;
}

int64_t kv_attention_splits(int64_t max_seq_len) {
  return std::min(kMaxSplits, std::max<int64_t>(1, (max_seq_len + kKeysPerSplit - 1) / kKeysPerSplit));
}

int64_t kv_attention_scratch_floats(int64_t H, int64_t Hkv, int64_t D, int64_t max_seq_len) {
  return kSplitMaxRows * kv_attention_splits(max_seq_len) * H * (D + 2);  // Hkv * G = H
}

int64_t kv_attention_counters(int64_t Hkv) { return kSplitMaxRows * Hkv; }

void launch_kv_attention(KvAttentionParams p, int* err, cudaStream_t stream) {
  if (p.T == 0 || p.H == 0) return;
  const bool fast = kv_attention_fast(p.dtype, p.H, p.Hkv, p.D);
  if (!(fast && p.T == 1)) {
    launch_kv_append(p.k_new, p.kv_row, p.v_new, p.kv_row, const_cast<void*>(p.k_cache), const_cast<void*>(p.v_cache),
                     p.dtype, p.T, p.Hkv, p.D, p.max_seq_len, p.start_pos, p.cos, p.sin, p.rope_positions,
                     p.interleaved, err, stream);
    p.k_new = p.v_new = nullptr;
  }
  if (!fast) {
    AttentionParams a;
    a.q = p.q; a.k = p.k_cache; a.v = p.v_cache; a.out = p.out;
    a.dtype = p.dtype; a.out_dtype = p.dtype;
    a.B = 1; a.H = p.H; a.Hkv = p.Hkv; a.L = p.T; a.S = p.max_seq_len; a.E = p.D; a.Ev = p.D;
    a.qs[1] = p.D; a.qs[2] = p.q_row;                    // q row t, head h: t * q_row + h * D
    a.ks[1] = p.D; a.ks[2] = p.Hkv * p.D;                // cache [S, Hkv, D]
    a.vs[1] = p.D; a.vs[2] = p.Hkv * p.D;
    a.os[1] = p.D; a.os[2] = p.out_row;
    a.scale = p.scale;
    a.start_pos = p.start_pos; a.max_seq_len = p.max_seq_len; a.err = err;
    a.cos = p.cos; a.sin = p.sin; a.rope_positions = p.rope_positions; a.interleaved = p.interleaved;
    launch_attention(a, stream);
    return;
  }
  // Per-split keys: kKeysPerSplit, or more when max_seq_len needs over kMaxSplits splits.
  // Decode: key ranges of kKeysPerSplit over 2-warp blocks (more blocks, shorter serial chains);
  // longer steps: one 4-warp block per (row, KV head) over all its keys.
  const int64_t splits = p.T <= kSplitMaxRows ? kv_attention_splits(p.max_seq_len) : 1;
  const int64_t per_split = splits == 1 ? p.max_seq_len : (p.max_seq_len + splits - 1) / splits;
  dim3 grid(static_cast<unsigned>(p.T), static_cast<unsigned>(p.Hkv), static_cast<unsigned>(splits));
  const int64_t g = p.H / p.Hkv;
  if (p.D == 64) splits > 1 ? launch_fast<64, 2>(p, g, grid, per_split, err, stream)
                            : launch_fast<64, 4>(p, g, grid, per_split, err, stream);
  else splits > 1 ? launch_fast<128, 2>(p, g, grid, per_split, err, stream)
                  : launch_fast<128, 4>(p, g, grid, per_split, err, stream);
}

void launch_kv_append(const void* k, int64_t k_row, const void* v, int64_t v_row, void* k_cache, void* v_cache,
                      DType dtype, int64_t T, int64_t hkv, int64_t d, int64_t max_seq_len, const int64_t* start_pos,
                      const float* cos, const float* sin, int64_t rope_positions, bool interleaved, int* err,
                      cudaStream_t stream) {
  const int64_t n = T * hkv * (d / 2);
  launch(kv_append_kernel, dim3(grid_for(n > 0 ? n : 1)), dim3(kThreads), 0, stream, k, k_row, v, v_row, k_cache, v_cache, dtype, T,
                                                                     hkv, d, max_seq_len, start_pos, cos, sin,
                                                                     rope_positions, interleaved, err);
}

}  // namespace kernels
}  // namespace int4_cuda
