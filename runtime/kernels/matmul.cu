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
  int64_t ao = 0, bo = 0;
  strided_offsets(bidx, p.batch.ndim, p.batch.size, p.batch.a_stride, p.batch.b_stride, &ao, &bo);
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

// LINEAR at decode sizes (M <= kGemvMaxM, bf16 weight [N, K], K % 8 == 0): memory-bound, so the
// weight is streamed once as 16-byte vectors for all M rows of x (x staged in shared memory as
// f32). One wave of resident blocks, warps grid-strided over groups of R output columns; a lane
// keeps kGemvLoads vectors (R rows x kGemvLoads / R chunks) in flight before it multiplies, so
// short rows (K = 576) still have enough bytes in flight to run at memory speed. Same math as
// matmul_kernel: f32 products and sums, bias added in f32, one rounding to the output dtype.
constexpr int kGemvMaxM = 8;
constexpr int kGemvWarps = 8;
constexpr int64_t kGemvMaxX = 12288;  // M * K floats staged in shared memory (48 KiB)
constexpr int kGemvLoads = 4;         // 16-byte weight loads in flight per lane

template <int MM, int R>
__global__ void __launch_bounds__(kGemvWarps * 32) linear_gemv_kernel(MatmulParams p) {
  pdl_wait();  // before any global access (shims/pdl.cuh)
  pdl_trigger();
  constexpr int U = kGemvLoads / R;  // chunks of 32 vectors per row per step
  extern __shared__ float4 xs_raw[];  // 16-byte aligned
  float* xs = reinterpret_cast<float*>(xs_raw);
  for (int64_t i = threadIdx.x; i < p.m * p.k; i += blockDim.x) xs[i] = load_f(p.a, i, p.at);
  __syncthreads();
  const int lane = threadIdx.x % 32;
  const int64_t kv = p.k / 8;  // vectors per weight row
  const __nv_bfloat16* wb = static_cast<const __nv_bfloat16*>(p.b);
  for (int64_t n0 = (static_cast<int64_t>(blockIdx.x) * kGemvWarps + threadIdx.x / 32) * R; n0 < p.n;
       n0 += static_cast<int64_t>(gridDim.x) * kGemvWarps * R) {
    float acc[R][MM] = {};
    for (int64_t c0 = lane; c0 < kv; c0 += 32 * U) {
      uint4 u[R][U];
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int v = 0; v < U; ++v)
          if (n0 + r < p.n && c0 + 32 * v < kv)
            u[r][v] = reinterpret_cast<const uint4*>(wb + (n0 + r) * p.k)[c0 + 32 * v];
#pragma unroll
      for (int v = 0; v < U; ++v) {
        const int64_t c = c0 + 32 * v;
        if (c >= kv) break;
#pragma unroll
        for (int r = 0; r < R; ++r) {
          if (n0 + r >= p.n) break;
          float wf[8];
          bf16x8_to_f32(u[r][v], wf);
#pragma unroll
          for (int m = 0; m < MM; ++m) {
            if (m >= p.m) break;
            // x as two 16-byte reads (k % 8 == 0 keeps them aligned): 2-way bank conflicts
            const float4* xv = reinterpret_cast<const float4*>(xs + m * p.k + c * 8);
            const float4 a = xv[0], b = xv[1];
            acc[r][m] += a.x * wf[0] + a.y * wf[1] + a.z * wf[2] + a.w * wf[3] + b.x * wf[4] + b.y * wf[5] +
                         b.z * wf[6] + b.w * wf[7];
          }
        }
      }
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if (n0 + r >= p.n) break;
#pragma unroll
      for (int m = 0; m < MM; ++m) {
        if (m >= p.m) break;
        float v = warp_sum(acc[r][m]);
        if (lane == 0) {
          if (p.bias) v += load_f(p.bias, n0 + r, p.bias_t);
          store_f(p.out, m * p.n + n0 + r, p.ot, v);
        }
      }
    }
  }
}

// One wave of linear_gemv_kernel<MM, R>: resident blocks per SM x SMs (cached per instantiation).
template <int MM, int R>
void launch_gemv(const MatmulParams& p, cudaStream_t stream) {
  // Cached for the last shared-memory size seen (a model has one or two LINEAR shapes).
  static std::atomic<int64_t> cached{0};  // smem bytes << 32 | blocks
  const int64_t smem = static_cast<int64_t>(sizeof(float)) * p.m * p.k;
  int64_t c = cached.load(std::memory_order_relaxed);
  int blocks = (c >> 32) == smem ? static_cast<int>(c & 0xffffffff) : 0;
  if (blocks == 0) {
    int dev = 0, sms = 0, per_sm = 0;
    if (cudaGetDevice(&dev) == cudaSuccess && cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess &&
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, linear_gemv_kernel<MM, R>, kGemvWarps * 32,
                                                      static_cast<size_t>(smem)) == cudaSuccess && per_sm > 0)
      blocks = sms * per_sm;
    else
      blocks = 132 * 4;
    cached.store(smem << 32 | blocks, std::memory_order_relaxed);
  }
  const int64_t needed = (p.n + kGemvWarps * R - 1) / (kGemvWarps * R);
  launch(linear_gemv_kernel<MM, R>, dim3(static_cast<unsigned>(std::min<int64_t>(blocks, needed))),
         dim3(kGemvWarps * 32), static_cast<size_t>(smem), stream, p);
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
    // Short rows take several columns per warp step so kGemvLoads vectors stay in flight per lane.
    const int64_t kv = k / 8;
    if (m == 1) {
      if (kv <= 32) launch_gemv<1, 4>(p, stream);
      else if (kv <= 128) launch_gemv<1, 2>(p, stream);
      else launch_gemv<1, 1>(p, stream);
    } else {
      if (kv <= 32) launch_gemv<kGemvMaxM, 4>(p, stream);
      else if (kv <= 128) launch_gemv<kGemvMaxM, 2>(p, stream);
      else launch_gemv<kGemvMaxM, 1>(p, stream);
    }
    return;
  }
  dim3 grid(static_cast<unsigned>((n + kTile - 1) / kTile), static_cast<unsigned>((m + kTile - 1) / kTile),
            static_cast<unsigned>(nb));
  launch(matmul_kernel, grid, dim3(kTile, kTile), 0, stream, p);
}

}  // namespace kernels
}  // namespace int4_cuda
