#include "constant_hash.h"

#include <openssl/evp.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <thread>

#include "last_error.h"

namespace int4_cuda {
namespace {

using executorch::runtime::Error;

constexpr size_t kHexDigits = 64;                   // sha256 = 32 bytes
constexpr size_t kParallelBytes = size_t{32} << 20;  // below this, one thread is as fast
constexpr unsigned kMaxThreads = 8;

const char* const kFix = "re-export the model, or download the .ptd again";

// The key as it can be printed on one line: at most `n` characters, odd bytes escaped.
std::string printable(const std::string& key, size_t n) {
  std::string out;
  for (size_t i = 0; i < key.size() && i < n; ++i) {
    const unsigned char c = static_cast<unsigned char>(key[i]);
    if (c >= 0x20 && c < 0x7f && c != '\'') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    }
  }
  if (key.size() > n) out += "…";
  return out;
}

bool well_formed(const std::string& key) {
  const size_t p = std::strlen(kConstantKeyPrefix);
  if (key.size() != p + kHexDigits || key.compare(0, p, kConstantKeyPrefix) != 0) return false;
  return std::all_of(key.begin() + p, key.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

}  // namespace

std::string constant_hash_mismatch(const std::string& key, const void* data, size_t size) {
  if (!well_formed(key))
    return "int4_cuda: constant key '" + printable(key, 24) + "' is not an int4_cuda content hash (\"" +
           kConstantKeyPrefix + "\" + 64 lowercase hex digits): the .ptd (or .pte) is damaged or was not "
           "written by int4_cuda's exporter; " + kFix;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  static const char kHex[] = "0123456789abcdef";
  if (data == nullptr && size > 0) return "int4_cuda: constant " + printable(key, 17) + " has no bytes; " + kFix;
  if (EVP_Digest(data, size, md, &md_len, EVP_sha256(), nullptr) != 1 || md_len * 2 != kHexDigits)
    return "int4_cuda: cannot compute the sha256 of constant " + printable(key, 17) +
           " (OpenSSL's EVP_Digest failed); the runtime's libcrypto is broken";
  std::string hex(kHexDigits, '0');
  for (unsigned i = 0; i < md_len; ++i) {
    hex[2 * i] = kHex[md[i] >> 4];
    hex[2 * i + 1] = kHex[md[i] & 15];
  }
  if (key.compare(std::strlen(kConstantKeyPrefix), kHexDigits, hex) == 0) return "";
  return "int4_cuda: constant " + printable(key, 17) + " does not match its content hash (the sha256 of its " +
         std::to_string(size) + " bytes is " + hex.substr(0, 12) + "…): the .ptd (or .pte) is damaged or "
         "belongs to another model; " + kFix;
}

Error check_constant_hash(const std::string& key, const void* data, size_t size) {
  const std::string why = constant_hash_mismatch(key, data, size);
  return why.empty() ? Error::Ok : report(Error::InvalidExternalData, why);
}

Error check_constant_hashes(const std::vector<ConstantBytes>& constants, unsigned max_threads) {
  const size_t n = constants.size();
  std::vector<std::string> why(n);
  // Largest first, so one big constant (the embedding) starts at once instead of last.
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return constants[a].size > constants[b].size; });
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < n;) {
      const ConstantBytes& c = constants[order[i]];
      why[order[i]] = constant_hash_mismatch(c.key, c.data, c.size);
    }
  };

  size_t total = 0;
  for (const ConstantBytes& c : constants) total += c.size;
  unsigned threads = max_threads ? max_threads : std::min(kMaxThreads, std::max(1u, std::thread::hardware_concurrency()));
  if (total < kParallelBytes) threads = 1;
  threads = static_cast<unsigned>(std::min<size_t>(threads, n));
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < threads; ++t) {
    try {
      pool.emplace_back(work);
    } catch (...) {
      break;  // no more threads: this one (below) hashes whatever is left
    }
  }
  work();
  for (std::thread& t : pool) t.join();

  // Reported here, on the caller's thread: last_error() is per thread.
  for (size_t i = 0; i < n; ++i)
    if (!why[i].empty()) return report(Error::InvalidExternalData, why[i]);
  return Error::Ok;
}

}  // namespace int4_cuda
