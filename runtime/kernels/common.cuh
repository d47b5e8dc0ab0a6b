// Device helpers shared by the kernels: dtype-generic loads/stores and index decoding.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels.h"
#include "pdl.cuh"

namespace int4_cuda {
namespace kernels {

constexpr int kThreads = 256;

inline unsigned grid_for(int64_t n, int threads = kThreads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 65535 * 16 ? (blocks > 0 ? blocks : 1) : 65535 * 16);
}

__host__ __device__ __forceinline__ int elem_size(DType t) {
  switch (t) {
    case DType::FLOAT32: case DType::INT32: return 4;
    case DType::BFLOAT16: case DType::FLOAT16: return 2;
    case DType::INT64: return 8;
    default: return 1;
  }
}

__device__ __forceinline__ float load_f(const void* p, int64_t i, DType t) {
  switch (t) {
    case DType::FLOAT32: return static_cast<const float*>(p)[i];
    case DType::BFLOAT16: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    case DType::FLOAT16: return __half2float(static_cast<const __half*>(p)[i]);
    case DType::INT64: return static_cast<float>(static_cast<const int64_t*>(p)[i]);
    case DType::INT32: return static_cast<float>(static_cast<const int32_t*>(p)[i]);
    case DType::UINT8: return static_cast<float>(static_cast<const uint8_t*>(p)[i]);
    case DType::INT8: return static_cast<float>(static_cast<const int8_t*>(p)[i]);
    case DType::BOOL: return static_cast<const uint8_t*>(p)[i] ? 1.f : 0.f;
  }
  return 0.f;
}

__device__ __forceinline__ void store_f(void* p, int64_t i, DType t, float v) {
  switch (t) {
    case DType::FLOAT32: static_cast<float*>(p)[i] = v; break;
    case DType::BFLOAT16: static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16(v); break;
    case DType::FLOAT16: static_cast<__half*>(p)[i] = __float2half(v); break;
    case DType::INT64: static_cast<int64_t*>(p)[i] = static_cast<int64_t>(v); break;
    case DType::INT32: static_cast<int32_t*>(p)[i] = static_cast<int32_t>(v); break;
    case DType::UINT8: static_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(v); break;
    case DType::INT8: static_cast<int8_t*>(p)[i] = static_cast<int8_t>(v); break;
    case DType::BOOL: static_cast<uint8_t*>(p)[i] = v != 0.f; break;
  }
}

// v rounded to dtype t and back (the rounding a store to a t tensor does); floats only.
__device__ __forceinline__ float round_to(float v, DType t) {
  switch (t) {
    case DType::BFLOAT16: return __bfloat162float(__float2bfloat16(v));
    case DType::FLOAT16: return __half2float(__float2half(v));
    default: return v;
  }
}

// Eight bf16 packed in one 16-byte vector -> f32 (the weight/K-row loads of the matvec kernels).
__device__ __forceinline__ void bf16x8_to_f32(const uint4& u, float* out) {
  const __nv_bfloat162* h2 = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const float2 f = __bfloat1622float2(h2[e]);
    out[2 * e] = f.x;
    out[2 * e + 1] = f.y;
  }
}

// Exact path for integers (int64 values beyond 2^24 survive); floats go through double.
__device__ __forceinline__ double load_d(const void* p, int64_t i, DType t) {
  switch (t) {
    case DType::INT64: return static_cast<double>(static_cast<const int64_t*>(p)[i]);
    case DType::INT32: return static_cast<double>(static_cast<const int32_t*>(p)[i]);
    default: return static_cast<double>(load_f(p, i, t));
  }
}

__device__ __forceinline__ int64_t load_i(const void* p, int64_t i, DType t) {
  switch (t) {
    case DType::INT64: return static_cast<const int64_t*>(p)[i];
    case DType::INT32: return static_cast<const int32_t*>(p)[i];
    case DType::UINT8: case DType::BOOL: return static_cast<const uint8_t*>(p)[i];
    case DType::INT8: return static_cast<const int8_t*>(p)[i];
    default: return static_cast<int64_t>(load_f(p, i, t));
  }
}

__device__ __forceinline__ void store_i(void* p, int64_t i, DType t, int64_t v) {
  switch (t) {
    case DType::INT64: static_cast<int64_t*>(p)[i] = v; break;
    case DType::INT32: static_cast<int32_t*>(p)[i] = static_cast<int32_t>(v); break;
    case DType::UINT8: static_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(v); break;
    case DType::INT8: static_cast<int8_t*>(p)[i] = static_cast<int8_t>(v); break;
    case DType::BOOL: static_cast<uint8_t*>(p)[i] = v != 0; break;
    default: store_f(p, i, t, static_cast<float>(v)); break;
  }
}

// Element i of a row-major index space of `ndim` dims (sizes `size`) -> its offsets in two strided
// views of it (strides in elements; 0 on broadcast dims). The copy, elementwise and batched-matmul
// kernels all address their operands this way.
__device__ __forceinline__ void strided_offsets(int64_t i, int ndim, const int64_t* size, const int64_t* s1,
                                                const int64_t* s2, int64_t* o1, int64_t* o2) {
  int64_t a = 0, b = 0;
  for (int d = ndim - 1; d >= 0; --d) {
    const int64_t c = i % size[d];
    i /= size[d];
    a += c * s1[d];
    b += c * s2[d];
  }
  *o1 += a;
  *o2 += b;
}

__device__ __forceinline__ bool is_int(DType t) {
  return t == DType::INT64 || t == DType::INT32 || t == DType::UINT8 || t == DType::INT8 || t == DType::BOOL;
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Block-wide reductions over blockDim.x (a multiple of 32, <= 1024); every thread gets the result.
__device__ __forceinline__ float block_sum(float v, float* smem32) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) smem32[warp] = v;
  __syncthreads();
  v = lane < nw ? smem32[lane] : 0.f;
  return warp_sum(v);
}
__device__ __forceinline__ float block_max(float v, float* smem32) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) smem32[warp] = v;
  __syncthreads();
  v = lane < nw ? smem32[lane] : -INFINITY;
  return warp_max(v);
}

__device__ __forceinline__ void set_error(int* err, int code) {
  if (err) atomicCAS(err, 0, code);
}

}  // namespace kernels
}  // namespace int4_cuda
