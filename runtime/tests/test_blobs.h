// Builds int4_cuda delegate blobs in C++ for the host-side tests: a small valid graph and the
// serializer from graph.h's plain structs to flatbuffer bytes, so each test edits one field.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "graph.h"

namespace int4_cuda {
namespace testing {

// x bf16 [s, K] (s in 1..16) -> INT4_PLAIN_MM (weight N x K, group gs) -> SILU -> output.
// Inputs: [x, -1] (a SymInt argument). Constants: keys "q", "s", "z".
Graph sample_graph(int64_t n = 4, int64_t k = 64, int32_t group_size = 32);

// Named-data byte sizes matching sample_graph's constants.
std::map<std::string, int64_t> sample_named_sizes(const Graph& g);

// Graph -> flatbuffer blob with the given 4-character file identifier.
std::vector<uint8_t> build_blob(const Graph& g, const char* identifier = "I4CU");

// Minimal test harness: CHECK counts failures and keeps going; main returns failures != 0.
extern int g_failures;
#define CHECK(cond)                                                              \
  do {                                                                           \
    if (!(cond)) {                                                               \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++::int4_cuda::testing::g_failures;                                        \
    }                                                                            \
  } while (0)

}  // namespace testing
}  // namespace int4_cuda
