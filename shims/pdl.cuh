// Programmatic dependent launch (PDL, sm_90+), shared by the shims and the runtime's kernels.
//
// launch() starts a kernel with cudaLaunchAttributeProgrammaticStreamSerialization, so the GPU may
// launch it while the previous kernel in the stream is still finishing (also inside a CUDA graph,
// where capture turns it into a programmatic edge). That hides most of the per-kernel launch gap
// of a decode step, which is hundreds of small kernels.
//
// Invariant that makes it safe: every kernel started by launch() calls pdl_wait() before it
// touches global memory. griddepcontrol.wait returns once the previous grid has completed and its
// writes are visible, so reads see the producer's results and writes cannot race a consumer still
// reading a reused buffer. pdl_trigger() right after lets the next kernel launch early (its blocks
// park in their own pdl_wait()). Kernels that fill every SM streaming weights (int4_plain_mm) do
// not trigger early, so parked blocks do not take the slots they need: the Hopper prefill triggers
// right after its wait only where its grid is split over K and fits in one wave (sm90_trigger_early
// in int4_plain_mm.cu), and its decode kernel only on its last row tile, and only where it
// overlaps (decode_overlap in int4_plain_mm.cu: before pdl_wait() it may issue L2 prefetches of its
// constant weights, the one global access allowed there, since L2 is coherent). On GPUs below
// sm_90, or with INT4_CUDA_PDL=0 in the environment (for A/B timing), launch() is a plain launch and
// both device calls are no-ops.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace int4_cuda {

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Whether the current device takes PDL launches (cached per device; 16 devices at most).
inline bool pdl_enabled() {
  static std::atomic<int> cache[16];  // 0 unknown, 1 off, 2 on
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 16) return false;
  int c = cache[dev].load(std::memory_order_relaxed);
  if (c == 0) {
    int major = 0;
    const char* env = std::getenv("INT4_CUDA_PDL");
    const bool off = env && std::strcmp(env, "0") == 0;
    c = (!off && cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
         major >= 9) ? 2 : 1;
    cache[dev].store(c, std::memory_order_relaxed);
  }
  return c == 2;
}

// cluster_x > 1: thread-block clusters of cluster_x blocks along x (sm_90+; grid.x a multiple of it).
template <typename... Params, typename... Args>
inline cudaError_t launch_clusters(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                                   unsigned cluster_x, Args... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[2];
  unsigned n = 0;
  if (pdl_enabled()) {
    attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[n++].val.programmaticStreamSerializationAllowed = 1;
  }
  if (cluster_x > 1) {
    attr[n].id = cudaLaunchAttributeClusterDimension;
    attr[n].val.clusterDim.x = cluster_x;
    attr[n].val.clusterDim.y = 1;
    attr[n++].val.clusterDim.z = 1;
  }
  cfg.attrs = n > 0 ? attr : nullptr;
  cfg.numAttrs = n;
  return cudaLaunchKernelEx(&cfg, kernel, static_cast<Params>(args)...);
}

template <typename... Params, typename... Args>
inline cudaError_t launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                          Args... args) {
  return launch_clusters(kernel, grid, block, smem, stream, 1u, args...);
}

}  // namespace int4_cuda
