// BMM / MATMUL / LINEAR: a simple shared-memory tiled GEMM (16x16 tiles, fp32 accumulation) with batch
// broadcast. Correct first; projections go through int4_plain_mm, so this only sees attention-sized
// products.
#include "common.cuh"

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

}  // namespace

void launch_matmul(const void* a, DType at, const void* b, DType bt, void* out, DType ot, int64_t m, int64_t n,
                   int64_t k, const MatmulBatch& batch, cudaStream_t stream, bool b_transposed, const void* bias,
                   DType bias_t) {
  int64_t nb = 1;
  for (int d = 0; d < batch.ndim; ++d) nb *= batch.size[d];
  if (nb == 0 || m == 0 || n == 0) return;
  MatmulParams p{a, at, b, bt, out, ot, m, n, k, batch, b_transposed, bias, bias_t};
  dim3 grid(static_cast<unsigned>((n + kTile - 1) / kTile), static_cast<unsigned>((m + kTile - 1) / kTile),
            static_cast<unsigned>(nb));
  matmul_kernel<<<grid, dim3(kTile, kTile), 0, stream>>>(p);
}

}  // namespace kernels
}  // namespace int4_cuda
