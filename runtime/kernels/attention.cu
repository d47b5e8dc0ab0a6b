// SDPA and KV_ATTENTION: one block per (query row, head, batch), keys streamed in chunks of
// blockDim with an online softmax (running max and sum in fp32), so any sequence length runs in
// O(E + Ev + blockDim) shared memory and no scratch buffer.
#include "common.cuh"

namespace int4_cuda {
namespace kernels {
namespace {

constexpr int kAttnThreads = 128;

__global__ void attention_kernel(AttentionParams p) {
  extern __shared__ float smem[];
  __shared__ float red[32];
  float* qf = smem;
  float* acc = qf + p.E;
  float* pr = acc + p.Ev;
  const int64_t l = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int64_t hk = h / (p.H / p.Hkv);
  int64_t n_keys;
  if (p.start_pos) {
    const int64_t sp = *p.start_pos;
    if (sp < 0 || sp + p.L > p.max_seq_len) return;  // launch_kv_write flagged it; the step fails
    n_keys = sp + l + 1;
  } else {
    n_keys = p.causal ? min(p.S, l + 1) : p.S;
  }
  const int64_t qo = b * p.qs[0] + h * p.qs[1] + l * p.qs[2];
  const int64_t ko = b * p.ks[0] + hk * p.ks[1];
  const int64_t vo = b * p.vs[0] + hk * p.vs[1];
  for (int64_t e = threadIdx.x; e < p.E; e += blockDim.x) qf[e] = load_f(p.q, qo + e, p.dtype);
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

__global__ void kv_write_kernel(const void* k, const void* v, void* kc, void* vc, DType dtype, int64_t T,
                                int64_t hkv, int64_t d, int64_t max_seq_len, const int64_t* start_pos, int* err) {
  const int64_t sp = *start_pos;
  if (sp < 0 || sp + T > max_seq_len) {
    if (blockIdx.x == 0 && threadIdx.x == 0) set_error(err, kErrKvPosition);
    return;
  }
  const int64_t n = T * hkv * d;
  const int es = elem_size(dtype);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    // src [1, T, Hkv, D] and the cache rows [sp + t, Hkv, D] have the same inner layout.
    const int64_t dst = sp * hkv * d + i;
    if (es == 4) {
      static_cast<float*>(kc)[dst] = static_cast<const float*>(k)[i];
      static_cast<float*>(vc)[dst] = static_cast<const float*>(v)[i];
    } else {
      static_cast<uint16_t*>(kc)[dst] = static_cast<const uint16_t*>(k)[i];
      static_cast<uint16_t*>(vc)[dst] = static_cast<const uint16_t*>(v)[i];
    }
  }
}

}  // namespace

void launch_attention(const AttentionParams& p, cudaStream_t stream) {
  if (p.B == 0 || p.H == 0 || p.L == 0) return;
  const size_t smem = sizeof(float) * static_cast<size_t>(p.E + p.Ev + kAttnThreads);
  dim3 grid(static_cast<unsigned>(p.L), static_cast<unsigned>(p.H), static_cast<unsigned>(p.B));
  attention_kernel<<<grid, kAttnThreads, smem, stream>>>(p);
}

void launch_kv_write(const void* k, const void* v, void* k_cache, void* v_cache, DType dtype, int64_t T,
                     int64_t hkv, int64_t d, int64_t max_seq_len, const int64_t* start_pos, int* err,
                     cudaStream_t stream) {
  const int64_t n = T * hkv * d;
  kv_write_kernel<<<grid_for(n > 0 ? n : 1), kThreads, 0, stream>>>(k, v, k_cache, v_cache, dtype, T, hkv, d,
                                                                    max_seq_len, start_pos, err);
}

}  // namespace kernels
}  // namespace int4_cuda
