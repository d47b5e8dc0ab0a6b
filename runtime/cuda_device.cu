#include "cuda_device.h"

#include <cuda_runtime.h>

#include <cstdio>

namespace int4_cuda {

bool cuda_device_usable(std::string* reason) {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    if (reason)
      *reason = std::string("int4_cuda: no CUDA GPU available (") +
                (e != cudaSuccess ? cudaGetErrorString(e) : "0 devices") +
                "); Int4CudaBackend needs an NVIDIA GPU with compute capability >= 8.0";
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return false;
  }
  int dev = 0;
  cudaGetDevice(&dev);
  cudaDeviceProp prop{};
  e = cudaGetDeviceProperties(&prop, dev);
  if (e != cudaSuccess) {
    if (reason) *reason = std::string("int4_cuda: cannot query CUDA device: ") + cudaGetErrorString(e);
    return false;
  }
  if (prop.major < kMinComputeMajor) {
    char buf[256];
    snprintf(buf, sizeof(buf),
             "int4_cuda: GPU %d (%s) has compute capability %d.%d; Int4CudaBackend needs >= %d.0 (A100, H100 or newer)",
             dev, prop.name, prop.major, prop.minor, kMinComputeMajor);
    if (reason) *reason = buf;
    return false;
  }
  if (reason) {
    char buf[256];
    snprintf(buf, sizeof(buf), "%s (sm_%d%d)", prop.name, prop.major, prop.minor);
    *reason = buf;
  }
  return true;
}

}  // namespace int4_cuda
