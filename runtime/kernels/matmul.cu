// BMM / MATMUL / LINEAR: a simple shared-memory tiled GEMM (16x16 tiles, fp32 accumulation) with batch
// broadcast, and a weight-streaming matvec for LINEAR at decode sizes (a bf16 lm_head / tied
// embedding is the largest weight a decode step reads after the int4 ones).
#include "common.cuh"

#include <algorithm>
#include <atomic>

namespace int4_cuda {
namespace kernels {
namespace {

constexpr int kTile = 16;

struct MatmulParams {
  const void* a; DType at; const void* b; DType bt; void* out; DType ot;
  int64_t m, n, k;
  MatmulBatch batch;
  bool b_transposed;
  const void* bias; DType bias_t;
};

__global__ void matmul_kernel(MatmulParams p) {
  pdl_wait();  // before any global access (shims/pdl.cuh)
  pdl_trigger();
  __shared__ float as[kTile][kTile + 1];
  __shared__ float bs[kTile][kTile + 1];
  const int64_t bidx = blockIdx.z;
  int64_t rem = bidx, ao = 0, bo = 0;
  for (int d = p.batch.ndim - 1; d >= 0; --d) {
    const int64_t c = rem % p.batch.size[d];
    rem /= p.batch.size[d];
    ao += c * p.batch.a_stride[d];
    bo += c * p.batch.b_stride[d];
  }
  const int64_t row = static_cast<int64_t>(blockIdx.y) * kTile + threadIdx.y;
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kTile + threadIdx.x;
  float acc = 0.f;
  for (int64_t k0 = 0; k0 < p.k; k0 += kTile) {
    const int64_t ka = k0 + threadIdx.x, kb = k0 + threadIdx.y;
    as[threadIdx.y][threadIdx.x] = (row < p.m && ka < p.k) ? load_f(p.a, ao + row * p.k + ka, p.at) : 0.f;
    const int64_t bi = p.b_transposed ? bo + col * p.k + kb : bo + kb * p.n + col;
    bs[threadIdx.y][threadIdx.x] = (kb < p.k && col < p.n) ? load_f(p.b, bi, p.bt) : 0.f;
    __syncthreads();
#pragma unroll
    for (int j = 0; j < kTile; ++j) acc += as[threadIdx.y][j] * bs[j][threadIdx.x];
    __syncthreads();
  }
  if (row < p.m && col < p.n) {
    if (p.bias) acc += load_f(p.bias, col, p.bias_t);
    store_f(p.out, bidx * p.m * p.n + row * p.n + col, p.ot, acc);
  }
}

// LINEAR at decode sizes (M <= kGemvMaxM, bf16 weight [N, K], K % 8 == 0): memory-bound, so one
// warp per output column n streams weight row n once as 16-byte vectors for all M rows of x (x is
// staged in shared memory as f32). Same math as matmul_kernel: f32 products and sums, bias added
// in f32, one rounding to the output dtype.
constexpr int kGemvMaxM = 8;
constexpr int kGemvWarps = 8;
constexpr int64_t kGemvMaxX = 12288;  // M * K floats staged in shared memory (48 KiB)
constexpr int kGemvUnroll = 4;        // 16-byte weight loads in flight per lane

__global__ void __launch_bounds__(kGemvWarps * 32) linear_gemv_kernel(MatmulParams p) {
  pdl_wait();  // before any global access (shims/pdl.cuh)
  pdl_trigger();
  extern __shared__ float4 xs_raw[];  // 16-byte aligned
  float* xs = reinterpret_cast<float*>(xs_raw);
  for (int64_t i = threadIdx.x; i < p.m * p.k; i += blockDim.x) xs[i] = load_f(p.a, i, p.at);
  __syncthreads();
  const int lane = threadIdx.x % 32;
  // Grid-stride over output columns (the grid is a few waves, so x is staged a few times only).
  for (int64_t n = static_cast<int64_t>(blockIdx.x) * kGemvWarps + threadIdx.x / 32; n < p.n;
       n += static_cast<int64_t>(gridDim.x) * kGemvWarps) {
    const uint4* w = reinterpret_cast<const uint4*>(static_cast<const __nv_bfloat16*>(p.b) + n * p.k);
    float acc[kGemvMaxM] = {};
    for (int64_t c0 = lane; c0 < p.k / 8; c0 += 32 * kGemvUnroll) {
      uint4 u[kGemvUnroll];  // all of this lane's loads in flight before the first FMA
#pragma unroll
      for (int v = 0; v < kGemvUnroll; ++v)
        if (c0 + 32 * v < p.k / 8) u[v] = w[c0 + 32 * v];
#pragma unroll
      for (int v = 0; v < kGemvUnroll; ++v) {
        const int64_t c = c0 + 32 * v;
        if (c >= p.k / 8) break;
        const __nv_bfloat162* h2 = reinterpret_cast<const __nv_bfloat162*>(&u[v]);
        float wf[8];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float2 f = __bfloat1622float2(h2[e]);
          wf[2 * e] = f.x;
          wf[2 * e + 1] = f.y;
        }
#pragma unroll
        for (int r = 0; r < kGemvMaxM; ++r) {
          if (r >= p.m) break;
          // x as two 16-byte reads (k % 8 == 0 keeps them aligned): 2-way bank conflicts, not 8-way
          const float4* xv = reinterpret_cast<const float4*>(xs + r * p.k + c * 8);
          const float4 a = xv[0], b = xv[1];
          acc[r] += a.x * wf[0] + a.y * wf[1] + a.z * wf[2] + a.w * wf[3] + b.x * wf[4] + b.y * wf[5] + b.z * wf[6] +
                    b.w * wf[7];
        }
      }
    }
#pragma unroll
    for (int r = 0; r < kGemvMaxM; ++r) {
      if (r >= p.m) break;
      float v = warp_sum(acc[r]);
      if (lane == 0) {
        if (p.bias) v += load_f(p.bias, n, p.bias_t);
        store_f(p.out, r * p.n + n, p.ot, v);
      }
    }
  }
}

}  // namespace

void launch_matmul(const void* a, DType at, const void* b, DType bt, void* out, DType ot, int64_t m, int64_t n,
                   int64_t k, const MatmulBatch& batch, cudaStream_t stream, bool b_transposed, const void* bias,
                   DType bias_t) {
  int64_t nb = 1;
  for (int d = 0; d < batch.ndim; ++d) nb *= batch.size[d];
  if (nb == 0 || m == 0 || n == 0) return;
  MatmulParams p{a, at, b, bt, out, ot, m, n, k, batch, b_transposed, bias, bias_t};
  if (b_transposed && batch.ndim == 0 && bt == DType::BFLOAT16 && m <= kGemvMaxM && k % 8 == 0 &&
      m * k <= kGemvMaxX && reinterpret_cast<uintptr_t>(b) % 16 == 0) {
    static std::atomic<int> sms{0};  // blocks: ~4 waves of 8 per SM, rows grid-strided
    if (sms.load() == 0) {
      int dev = 0, v = 0;
      if (cudaGetDevice(&dev) == cudaSuccess && cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess)
        sms.store(v);
    }
    const int64_t cap = std::max(1, sms.load()) * 32;
    const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(cap, (n + kGemvWarps - 1) / kGemvWarps));
    launch(linear_gemv_kernel, dim3(blocks), dim3(kGemvWarps * 32), sizeof(float) * m * k, stream, p);
    return;
  }
  dim3 grid(static_cast<unsigned>((n + kTile - 1) / kTile), static_cast<unsigned>((m + kTile - 1) / kTile),
            static_cast<unsigned>(nb));
  launch(matmul_kernel, grid, dim3(kTile, kTile), 0, stream, p);
}

}  // namespace kernels
}  // namespace int4_cuda
