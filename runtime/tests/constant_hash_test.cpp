// Host-side test of runtime/constant_hash (no GPU): FIPS 180-2 vectors, the parallel path against
// the one-thread path, a flipped byte among many constants reported by key on the calling thread.
// tests/runtime/test_constant_hash.py compares the check against Python's hashlib.
//
//   int4_cuda_constant_hash_test            the tests (exit 0 = pass)
//   int4_cuda_constant_hash_test --bench MB hash throughput over MB of constants (1 and N threads)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <executorch/runtime/platform/runtime.h>

#include "constant_hash.h"
#include "last_error.h"
#include "test_blobs.h"  // CHECK / g_failures

using executorch::runtime::Error;
using int4_cuda::ConstantBytes;

namespace {

using int4_cuda::testing::g_failures;

const std::string kEmpty = "i4cu.e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const std::string kAbc = "i4cu.ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
const std::string kAbc448 =  // "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
    "i4cu.248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1";

std::vector<unsigned char> random_bytes(std::mt19937_64& rng, size_t n) {
  std::vector<unsigned char> b(n);
  for (size_t i = 0; i < n; i += 8) {
    const uint64_t r = rng();
    std::memcpy(b.data() + i, &r, std::min<size_t>(8, n - i));
  }
  return b;
}

// Known answers (FIPS 180-2); tests/runtime/test_constant_hash.py checks random bytes against hashlib.
void test_vectors() {
  CHECK(int4_cuda::check_constant_hash(kEmpty, "", 0) == Error::Ok);
  CHECK(int4_cuda::check_constant_hash(kAbc, "abc", 3) == Error::Ok);
  const char* m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  CHECK(int4_cuda::check_constant_hash(kAbc448, m, std::strlen(m)) == Error::Ok);
  // One bit off: refused, reported once, naming the key.
  int4_cuda::clear_last_error();
  CHECK(int4_cuda::check_constant_hash(kAbc, "abb", 3) == Error::InvalidExternalData);
  CHECK(int4_cuda::last_error().find(kAbc.substr(0, 17)) != std::string::npos);
  CHECK(int4_cuda::last_error().find("does not match its content hash") != std::string::npos);
  CHECK(int4_cuda::last_error().find('\n') == std::string::npos);
  // Malformed keys.
  for (const std::string& k : {std::string("abc"), kAbc.substr(0, 60), "I4CU" + kAbc.substr(4),
                               kAbc.substr(0, 10) + "A" + kAbc.substr(11), kAbc + "0", std::string()})
    CHECK(int4_cuda::check_constant_hash(k, "abc", 3) == Error::InvalidExternalData);
}

// Many constants, one flipped: the parallel path (forced, and automatic on > 32 MB) agrees with
// one thread and reports the flipped one on this thread.
void test_parallel() {
  std::mt19937_64 rng(std::random_device{}());
  // Valid constants: the known-answer vectors, repeated.
  std::vector<std::string> keep = {"", "abc", "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"};
  const std::string keys[] = {kEmpty, kAbc, kAbc448};
  std::vector<ConstantBytes> cs;
  for (int i = 0; i < 60; ++i) cs.push_back({keys[i % 3], keep[i % 3].data(), keep[i % 3].size()});
  for (unsigned t : {1u, 2u, 7u, 0u}) CHECK(int4_cuda::check_constant_hashes(cs, t) == Error::Ok);

  // A big random constant whose key is wrong (all zeros) among valid ones: > 32 MB in total, so
  // the automatic thread count is used.
  std::vector<unsigned char> big = random_bytes(rng, size_t{40} << 20);
  cs.insert(cs.begin() + 17, {"i4cu." + std::string(64, '0'), big.data(), big.size()});
  for (unsigned t : {1u, 3u, 0u}) {
    int4_cuda::clear_last_error();
    CHECK(int4_cuda::check_constant_hashes(cs, t) == Error::InvalidExternalData);
    CHECK(int4_cuda::last_error().find("i4cu.000000000000") != std::string::npos);
    CHECK(int4_cuda::last_error().find(std::to_string(big.size()) + " bytes") != std::string::npos);
  }
  // Two bad ones: the first in the given order is reported.
  std::string flipped = "abd";
  cs.insert(cs.begin() + 3, {kAbc, flipped.data(), flipped.size()});
  int4_cuda::clear_last_error();
  CHECK(int4_cuda::check_constant_hashes(cs, 0) == Error::InvalidExternalData);
  CHECK(int4_cuda::last_error().find(kAbc.substr(0, 17)) != std::string::npos);
  CHECK(int4_cuda::check_constant_hashes({}, 0) == Error::Ok);
}

int bench(double mb) {
  std::mt19937_64 rng(1);
  // SmolLM2-135M-like mix: one large embedding plus many layer-sized constants.
  const size_t total = static_cast<size_t>(mb * (1 << 20));
  std::vector<std::vector<unsigned char>> data;
  size_t left = total;
  data.push_back(random_bytes(rng, std::min(left, total * 45 / 100)));
  left -= data.back().size();
  while (left > 0) {
    data.push_back(random_bytes(rng, std::min<size_t>(left, 1179648)));  // 576x1536 int4 + change
    left -= data.back().size();
  }
  std::vector<ConstantBytes> cs;
  for (const auto& d : data) cs.push_back({"i4cu." + std::string(64, '0'), d.data(), d.size()});
  std::printf("%zu constants, %.1f MB; hardware threads %u\n", cs.size(), total / 1048576.0,
              std::thread::hardware_concurrency());
  for (unsigned t : {1u, 2u, 4u, 8u, 0u}) {
    double best = 1e9;
    for (int rep = 0; rep < 3; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      (void)int4_cuda::check_constant_hashes(cs, t);  // every key is wrong: all hashed, one report
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::printf("threads=%-5s %7.1f ms  %6.2f GB/s\n", t ? std::to_string(t).c_str() : "auto", best * 1e3,
                total / best / 1e9);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  executorch::runtime::runtime_init();
  if (argc == 3 && std::strcmp(argv[1], "--bench") == 0) return bench(std::atof(argv[2]));
  test_vectors();
  test_parallel();
  if (g_failures) {
    std::fprintf(stderr, "%d check(s) failed\n", g_failures);
    return 1;
  }
  std::printf("constant_hash: all checks passed\n");
  return 0;
}
