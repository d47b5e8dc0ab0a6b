// Content-hash check of constants (issue #8): int4_cuda names every constant "i4cu." + the
// lowercase hex sha256 of its bytes (backend/serialize.py constant_key), so recomputing the hash
// catches a damaged weight of the right size, or a .ptd from another export that reuses keys.
// The Python readers check the same (int4_cuda/blob.py verify_graph, check_hashes).
//
// sha256 is OpenSSL's libcrypto (EVP_Digest): hardware SHA extensions where the CPU has them.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <executorch/runtime/core/error.h>

namespace int4_cuda {

constexpr const char* kConstantKeyPrefix = "i4cu.";

// Why `key` does not name `data`: "" if it does (the key is "i4cu." + 64 lowercase hex digits and
// equals sha256(data)), else the one-line message (key abbreviated, cause, fix). Reports nothing;
// safe to call from any thread.
std::string constant_hash_mismatch(const std::string& key, const void* data, size_t size);

// Error::Ok, or Error::InvalidExternalData + one report() line (last_error.h) naming the key.
executorch::runtime::Error check_constant_hash(const std::string& key, const void* data, size_t size);

struct ConstantBytes {
  std::string key;
  const void* data = nullptr;
  size_t size = 0;
};

// check_constant_hash over all of `constants`, hashed on up to `max_threads` threads (0: one per
// core, at most 8) when the total is large. On failure reports the first mismatching constant in
// the order given (from the calling thread, so last_error() sees it) and returns its error.
executorch::runtime::Error check_constant_hashes(const std::vector<ConstantBytes>& constants,
                                                 unsigned max_threads = 0);

}  // namespace int4_cuda
