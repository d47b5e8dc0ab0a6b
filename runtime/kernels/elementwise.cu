// ADD/SUB/MUL/DIV (tensor-tensor with broadcast, or tensor-scalar), NEG, RSQRT, SILU, SIGMOID, POW,
// and SWIGLU. One thread per output element, grid-stride; the output is contiguous in `shape`.
#include "common.cuh"

namespace int4_cuda {
namespace kernels {
namespace {

struct EwParams {
  OpCode op;
  const void* a; DType at; Strides as;
  const void* b; DType bt; Strides bs; bool has_b;
  double scalar;
  void* out; DType ot;
  Shape shape;
  int64_t n;
};

__device__ __forceinline__ float silu_f(float x) { return x / (1.f + expf(-x)); }

__device__ __forceinline__ float apply_f(OpCode op, float x, float y) {
  switch (op) {
    case OpCode::ADD: return x + y;
    case OpCode::SUB: return x - y;
    case OpCode::MUL: return x * y;
    case OpCode::DIV: return x / y;
    case OpCode::NEG: return -x;
    case OpCode::RSQRT: return rsqrtf(x);
    case OpCode::SILU: return silu_f(x);
    case OpCode::SIGMOID: return 1.f / (1.f + expf(-x));
    case OpCode::POW: return y == 2.f ? x * x : powf(x, y);
    default: return 0.f;
  }
}

__device__ __forceinline__ int64_t apply_i(OpCode op, int64_t x, int64_t y) {
  switch (op) {
    case OpCode::ADD: return x + y;
    case OpCode::SUB: return x - y;
    case OpCode::MUL: return x * y;
    case OpCode::NEG: return -x;
    default: return 0;
  }
}

__global__ void elementwise_kernel(EwParams p) {
  pdl_wait();  // before any global access (shims/pdl.cuh)
  pdl_trigger();
  const bool int_out = is_int(p.ot);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < p.n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t ao = 0, bo = 0;
    strided_offsets(i, p.shape.ndim, p.shape.size, p.as.s, p.bs.s, &ao, &bo);
    if (int_out) {
      const int64_t x = load_i(p.a, ao, p.at);
      const int64_t y = p.has_b ? load_i(p.b, bo, p.bt) : static_cast<int64_t>(p.scalar);
      store_i(p.out, i, p.ot, apply_i(p.op, x, y));
    } else {
      const float x = load_f(p.a, ao, p.at);
      const float y = p.has_b ? load_f(p.b, bo, p.bt) : static_cast<float>(p.scalar);
      store_f(p.out, i, p.ot, apply_f(p.op, x, y));
    }
  }
}

__global__ void swiglu_kernel(const void* x, DType xt, void* out, int64_t rows, int64_t f) {
  pdl_wait();  // before any global access (shims/pdl.cuh)
  pdl_trigger();
  const int64_t n = rows * f;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / f, c = i % f;
    const float gate = round_to(silu_f(load_f(x, r * 2 * f + c, xt)), xt);
    store_f(out, i, xt, gate * load_f(x, r * 2 * f + f + c, xt));
  }
}

}  // namespace

void launch_swiglu(const void* x, DType xt, void* out, int64_t rows, int64_t f, cudaStream_t stream) {
  const int64_t n = rows * f;
  if (n == 0) return;
  launch(swiglu_kernel, dim3(grid_for(n)), dim3(kThreads), 0, stream, x, xt, out, rows, f);
}

void launch_elementwise(OpCode op, const void* a, DType at, Strides as, const void* b, DType bt, Strides bs,
                        bool has_b, double scalar, void* out, DType ot, const Shape& shape, cudaStream_t stream) {
  EwParams p{op, a, at, as, b, bt, bs, has_b, scalar, out, ot, shape, shape.numel()};
  if (p.n == 0) return;
  launch(elementwise_kernel, dim3(grid_for(p.n)), dim3(kThreads), 0, stream, p);
}

}  // namespace kernels
}  // namespace int4_cuda
