// Which GPU the delegate runs on, and whether it can: is_available() needs a CUDA device of
// compute capability >= 8.0 (bf16 tensor cores, cp.async: what the kernels are built for).
#pragma once

#include <string>

namespace int4_cuda {

constexpr int kMinComputeMajor = 8;

// True if the current CUDA device is usable; otherwise false and *reason says why (no driver,
// no device, compute capability too low). Never aborts; safe on machines without a GPU.
bool cuda_device_usable(std::string* reason);

}  // namespace int4_cuda
