// The host-only half of c_api.h, exported by libint4_cuda_backend.so: availability, the blob
// verifier and the constants' content-hash check (what init() runs, for ctypes tests and
// fuzzers), the shared legacy-layout text, the last error.
#include "c_api.h"

#include <cuda_runtime.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "blob_verifier.h"
#include "constant_hash.h"
#include "cuda_device.h"
#include "last_error.h"

namespace int4_cuda {
int64_t cuda_graph_captures();  // executor.cu
int64_t cuda_graph_replays();
using executorch::runtime::Error;

namespace {
// verify_blob on a caller's buffer: the verifier needs 4-byte alignment; callers (ctypes buffers)
// may not provide it.
Error verify(const void* blob, size_t blob_len, const NamedDataSize& named_size, std::string* msg) {
  std::vector<uint64_t> copy(blob_len / 8 + 1);
  if (blob != nullptr && blob_len > 0) std::memcpy(copy.data(), blob, blob_len);
  Graph graph;
  return verify_blob(blob ? static_cast<const void*>(copy.data()) : nullptr, blob_len, named_size, &graph, msg);
}
}  // namespace
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
  const auto fn = [&](const std::string& key) -> int64_t { return named_size ? named_size(ctx, key.c_str()) : -1; };
  std::string msg;
  const auto e = int4_cuda::verify(blob, blob_len, fn, &msg);
  int4_cuda::copy_to_c_buffer(msg, message, message_len);
  return static_cast<int>(e);
}

int int4_cuda_verify_blob_data(const void* blob, size_t blob_len, int4_cuda_named_data_fn named_data, void* ctx,
                               char* message, size_t message_len) {
  // What init() does: the verifier reads each constant (here through the callback, kept by key),
  // then all of them are hashed.
  std::map<std::string, int4_cuda::ConstantBytes> seen;
  const auto size_of = [&](const std::string& key) -> int64_t {
    auto it = seen.find(key);
    if (it != seen.end()) return static_cast<int64_t>(it->second.size);
    const void* data = nullptr;
    const int64_t n = named_data ? named_data(ctx, key.c_str(), &data) : -1;
    if (n < 0 || (data == nullptr && n > 0)) return -1;
    seen[key] = {key, data, static_cast<size_t>(n)};
    return n;
  };
  std::string msg;
  auto e = int4_cuda::verify(blob, blob_len, size_of, &msg);
  if (e == int4_cuda::Error::Ok) {
    std::vector<int4_cuda::ConstantBytes> constants;
    for (const auto& kv : seen) constants.push_back(kv.second);
    int4_cuda::clear_last_error();
    e = int4_cuda::check_constant_hashes(constants);
    if (e != int4_cuda::Error::Ok) msg = int4_cuda::last_error();
  }
  int4_cuda::copy_to_c_buffer(msg, message, message_len);
  return static_cast<int>(e);
}

int int4_cuda_check_constant(const char* key, const void* data, size_t size, char* message, size_t message_len) {
  int4_cuda::clear_last_error();
  const auto e = int4_cuda::check_constant_hash(key ? key : "", data, size);
  int4_cuda::copy_to_c_buffer(int4_cuda::last_error(), message, message_len);
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
