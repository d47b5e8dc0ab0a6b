// Reductions: MEAN over any dims (one warp per output element), RMS_NORM over the last dim and
// SOFTMAX over one dim (one block / one warp per row). fp32 accumulation.
#include "common.cuh"

namespace int4_cuda {
namespace kernels {
namespace {

struct MeanParams {
  const void* in; DType it; void* out; DType ot;
  int ndim;
  int64_t size[kMaxDims], stride[kMaxDims];
  // Kept dims (output order) and reduced dims of the input.
  int nk, nr;
  int kept[kMaxDims], red[kMaxDims];
  int64_t n_out, n_red;
};

__global__ void mean_kernel(MeanParams p) {
  pdl_wait();  // before any global access (shims/pdl.cuh)
  pdl_trigger();
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t o = blockIdx.x * static_cast<int64_t>(blockDim.x >> 5) + (threadIdx.x >> 5); o < p.n_out;
       o += warps) {
    int64_t rem = o, base = 0;
    for (int j = p.nk - 1; j >= 0; --j) {
      const int d = p.kept[j];
      base += (rem % p.size[d]) * p.stride[d];
      rem /= p.size[d];
    }
    float acc = 0.f;
    for (int64_t r = lane; r < p.n_red; r += 32) {
      int64_t rr = r, off = base;
      for (int j = p.nr - 1; j >= 0; --j) {
        const int d = p.red[j];
        off += (rr % p.size[d]) * p.stride[d];
        rr /= p.size[d];
      }
      acc += load_f(p.in, off, p.it);
    }
    acc = warp_sum(acc);
    if (lane == 0) store_f(p.out, o, p.ot, acc / static_cast<float>(p.n_red));
  }
}

// Rows of up to kNormCached * blockDim elements keep x and the weight in registers: both are read
// in the same first pass (one global-latency round instead of three), then scaled and written.
constexpr int kNormCached = 8;

__global__ void rms_norm_kernel(const void* x, DType xt, const void* w, DType wt, void* out, DType ot, int64_t d,
                                float eps, NormResidual res) {
  pdl_wait();  // before any global access (shims/pdl.cuh)
  pdl_trigger();
  __shared__ float smem[32];
  const int64_t row = blockIdx.x;
  // x, or x + delta written to res.sum and read back as written (ADD_RMS_NORM).
  auto input = [&](int64_t i) {
    if (!res.delta) return load_f(x, i, xt);
    const float v = load_f(x, i, xt) + load_f(res.delta, i, res.dt);
    store_f(res.sum, i, res.st, v);
    return round_to(v, res.st);
  };
  const bool cached = d <= kNormCached * static_cast<int64_t>(blockDim.x) || res.delta;
  float xv[kNormCached], wv[kNormCached];  // ADD_RMS_NORM rows always fit (checked by the launcher)
  float ss = 0.f;
  if (cached) {
#pragma unroll
    for (int r = 0; r < kNormCached; ++r) {
      const int64_t i = threadIdx.x + static_cast<int64_t>(r) * blockDim.x;
      xv[r] = i < d ? input(row * d + i) : 0.f;
      wv[r] = (i < d && w) ? load_f(w, i, wt) : 1.f;
      ss += xv[r] * xv[r];
    }
  } else {
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
      const float v = load_f(x, row * d + i, xt);
      ss += v * v;
    }
  }
  ss = block_sum(ss, smem);
  const float inv = rsqrtf(ss / static_cast<float>(d) + eps);
  if (cached) {
#pragma unroll
    for (int r = 0; r < kNormCached; ++r) {
      const int64_t i = threadIdx.x + static_cast<int64_t>(r) * blockDim.x;
      if (i < d) store_f(out, row * d + i, ot, xv[r] * inv * wv[r]);
    }
    return;
  }
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    float v = load_f(x, row * d + i, xt) * inv;
    if (w) v *= load_f(w, i, wt);
    store_f(out, row * d + i, ot, v);
  }
}

__global__ void softmax_kernel(const void* in, DType it, void* out, DType ot, int64_t outer, int64_t size,
                               int64_t inner) {
  pdl_wait();  // before any global access (shims/pdl.cuh)
  pdl_trigger();
  const int lane = threadIdx.x & 31;
  const int64_t rows = outer * inner;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += warps) {
    const int64_t base = (r / inner) * size * inner + (r % inner);
    float m = -INFINITY;
    for (int64_t j = lane; j < size; j += 32) m = fmaxf(m, load_f(in, base + j * inner, it));
    m = warp_max(m);
    float s = 0.f;
    for (int64_t j = lane; j < size; j += 32) s += expf(load_f(in, base + j * inner, it) - m);
    s = warp_sum(s);
    for (int64_t j = lane; j < size; j += 32)
      store_f(out, base + j * inner, ot, expf(load_f(in, base + j * inner, it) - m) / s);
  }
}

}  // namespace

void launch_mean(const void* in, DType it, const Shape& in_shape, uint32_t reduce_mask, void* out, DType ot,
                 cudaStream_t stream) {
  MeanParams p{};
  p.in = in; p.it = it; p.out = out; p.ot = ot; p.ndim = in_shape.ndim;
  int64_t stride = 1;
  for (int d = in_shape.ndim - 1; d >= 0; --d) {
    p.size[d] = in_shape.size[d];
    p.stride[d] = stride;
    stride *= in_shape.size[d];
  }
  p.n_out = 1; p.n_red = 1;
  for (int d = 0; d < in_shape.ndim; ++d) {
    if (reduce_mask & (1u << d)) { p.red[p.nr++] = d; p.n_red *= in_shape.size[d]; }
    else { p.kept[p.nk++] = d; p.n_out *= in_shape.size[d]; }
  }
  if (p.n_out == 0) return;
  const int warps_per_block = kThreads / 32;
  launch(mean_kernel, dim3(grid_for(p.n_out, warps_per_block)), dim3(kThreads), 0, stream, p);
}

void launch_rms_norm(const void* x, DType xt, const void* w, DType wt, void* out, DType ot, int64_t rows,
                     int64_t d, double eps, cudaStream_t stream, NormResidual res) {
  if (rows == 0) return;
  // One block per row; rows beyond the grid limit do not occur (rows <= 2^31 - 1 checked by caller).
  // With delta the row must stay in registers (d <= kNormResidualMaxD = kNormCached * 1024).
  const int threads = res.delta && d > kNormCached * kThreads ? 1024 : kThreads;
  launch(rms_norm_kernel, dim3(static_cast<unsigned>(rows)), dim3(threads), 0, stream, x, xt, w, wt, out, ot, d,
         static_cast<float>(eps), res);
}

void launch_softmax(const void* in, DType it, void* out, DType ot, int64_t outer, int64_t size, int64_t inner,
                    cudaStream_t stream) {
  const int64_t rows = outer * inner;
  if (rows == 0) return;
  launch(softmax_kernel, dim3(grid_for(rows, kThreads / 32)), dim3(kThreads), 0, stream, in, it, out, ot, outer, size, inner);
}

}  // namespace kernels
}  // namespace int4_cuda
