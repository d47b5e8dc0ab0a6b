// Strided gather/scatter with dtype conversion: the one data-movement kernel behind VIEW, PERMUTE,
// EXPAND, SLICE, CAT and COPY. Same-dtype copies move raw bytes (exact for every dtype).
#include "common.cuh"

namespace int4_cuda {
namespace kernels {
namespace {

struct CopyParams {
  const void* in; DType it; int64_t in_offset; Strides is;
  void* out; DType ot; int64_t out_offset; Strides os;
  Shape shape;
  int64_t n;
};

template <typename T>
__global__ void copy_same_kernel(CopyParams p) {
  pdl_wait();  // before any global access (shims/pdl.cuh)
  pdl_trigger();
  const T* in = static_cast<const T*>(p.in) + p.in_offset;
  T* out = static_cast<T*>(p.out) + p.out_offset;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < p.n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t io = 0, oo = 0;
    strided_offsets(i, p.shape.ndim, p.shape.size, p.is.s, p.os.s, &io, &oo);
    out[oo] = in[io];
  }
}

__global__ void copy_convert_kernel(CopyParams p) {
  pdl_wait();  // before any global access (shims/pdl.cuh)
  pdl_trigger();
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < p.n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t io = p.in_offset, oo = p.out_offset;
    strided_offsets(i, p.shape.ndim, p.shape.size, p.is.s, p.os.s, &io, &oo);
    if (is_int(p.ot) && is_int(p.it)) {
      store_i(p.out, oo, p.ot, load_i(p.in, io, p.it));
    } else if (is_int(p.ot)) {
      // float -> int truncates toward zero like torch's .to(int); bool is "!= 0".
      const double v = load_d(p.in, io, p.it);
      if (p.ot == DType::BOOL) store_i(p.out, oo, p.ot, v != 0.0);
      else store_i(p.out, oo, p.ot, static_cast<int64_t>(v));
    } else {
      const double v = load_d(p.in, io, p.it);
      if (p.ot == DType::FLOAT32) static_cast<float*>(p.out)[oo] = static_cast<float>(v);
      else if (p.ot == DType::BFLOAT16) static_cast<__nv_bfloat16*>(p.out)[oo] = __double2bfloat16(v);
      else static_cast<__half*>(p.out)[oo] = __double2half(v);
    }
  }
}

}  // namespace

void launch_strided_copy(const void* in, DType it, int64_t in_offset, Strides in_strides, void* out, DType ot,
                         int64_t out_offset, Strides out_strides, const Shape& shape, cudaStream_t stream) {
  CopyParams p{in, it, in_offset, in_strides, out, ot, out_offset, out_strides, shape, shape.numel()};
  if (p.n == 0) return;
  const unsigned g = grid_for(p.n);
  if (it == ot) {
    switch (dtype_size(it)) {
      case 1: launch(copy_same_kernel<uint8_t>, dim3(g), dim3(kThreads), 0, stream, p); return;
      case 2: launch(copy_same_kernel<uint16_t>, dim3(g), dim3(kThreads), 0, stream, p); return;
      case 4: launch(copy_same_kernel<uint32_t>, dim3(g), dim3(kThreads), 0, stream, p); return;
      case 8: launch(copy_same_kernel<uint64_t>, dim3(g), dim3(kThreads), 0, stream, p); return;
      default: break;
    }
  }
  launch(copy_convert_kernel, dim3(g), dim3(kThreads), 0, stream, p);
}

}  // namespace kernels
}  // namespace int4_cuda
