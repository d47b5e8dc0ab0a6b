// The host-only half of c_api.h, exported by libint4_cuda_backend.so: availability, the blob
// verifier for ctypes tests and fuzzers, the shared legacy-layout text, the last error.
#include "c_api.h"

#include <cuda_runtime.h>

#include <cstring>
#include <string>
#include <vector>

#include "blob_verifier.h"
#include "cuda_device.h"
#include "last_error.h"

namespace int4_cuda {
int64_t cuda_graph_captures();  // executor.cu
int64_t cuda_graph_replays();
}  // namespace int4_cuda

extern "C" {

int int4_cuda_available(char* reason, size_t reason_len) {
  std::string why;
  const bool ok = int4_cuda::cuda_device_usable(&why);
  int4_cuda::copy_to_c_buffer(why, reason, reason_len);
  return ok ? 1 : 0;
}

int int4_cuda_verify_blob(const void* blob, size_t blob_len, int4_cuda_named_size_fn named_size, void* ctx,
                          char* message, size_t message_len) {
  // The verifier needs 4-byte alignment; callers (ctypes buffers) may not provide it.
  std::vector<uint64_t> copy(blob_len / 8 + 1);
  if (blob != nullptr && blob_len > 0) std::memcpy(copy.data(), blob, blob_len);
  std::string msg;
  int4_cuda::Graph graph;
  const auto fn = [&](const std::string& key) -> int64_t { return named_size ? named_size(ctx, key.c_str()) : -1; };
  const auto e = int4_cuda::verify_blob(blob ? static_cast<const void*>(copy.data()) : nullptr, blob_len, fn,
                                        &graph, &msg);
  int4_cuda::copy_to_c_buffer(msg, message, message_len);
  return static_cast<int>(e);
}

void int4_cuda_legacy_layout_message(const char* weight, char* out, size_t out_len) {
  int4_cuda::copy_to_c_buffer(int4_cuda::legacy_layout_message(weight ? weight : ""), out, out_len);
}

const char* int4_cuda_last_error(void) { return int4_cuda::last_error().c_str(); }

int int4_cuda_gpu_memory(int64_t* free_bytes, int64_t* total_bytes) {
  size_t f = 0, t = 0;
  if (cudaMemGetInfo(&f, &t) != cudaSuccess) {
    cudaGetLastError();
    if (free_bytes) *free_bytes = 0;
    if (total_bytes) *total_bytes = 0;
    return -1;
  }
  if (free_bytes) *free_bytes = static_cast<int64_t>(f);
  if (total_bytes) *total_bytes = static_cast<int64_t>(t);
  return 0;
}

void int4_cuda_graph_counters(int64_t* captures, int64_t* replays) {
  if (captures) *captures = int4_cuda::cuda_graph_captures();
  if (replays) *replays = int4_cuda::cuda_graph_replays();
}

}  // extern "C"
