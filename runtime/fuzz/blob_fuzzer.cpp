// libFuzzer target over the host-side blob loader: verify_blob() (runtime/blob_verifier.h), then,
// for a blob it accepts, plan_memory() (what the delegate's init() runs next, before any CUDA call).
//
// Input format (tests/fixtures/make_fuzz_corpus.py writes seeds from real exports in it):
//   u16 LE  table_len
//   table   table_len bytes of entries: u8 key_len, key bytes, i64 LE byte size
//   blob    the rest: one int4_cuda delegate blob
// The table is the NamedDataMap the blob's constants are looked up in (a key absent from it is
// "not in the .pte/.ptd"), so mutations reach both the missing-constant and the size-mismatch
// paths, and a seed with the right sizes reaches the weight, op and memory-planner checks.
//
// Besides ASan/UBSan findings, the target traps when the verifier breaks its own contract:
// a failure must come with exactly one non-empty message line; success must leave no message.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "blob_verifier.h"
#include "memory_planner.h"

namespace {

[[noreturn]] void contract_broken(const char* what, const std::string& detail) {
  std::fprintf(stderr, "int4_cuda_blob_fuzzer: contract broken: %s: %s\n", what, detail.c_str());
  __builtin_trap();
}

std::map<std::string, int64_t> parse_table(const uint8_t* p, size_t n) {
  std::map<std::string, int64_t> table;
  size_t i = 0;
  while (i < n) {
    const size_t klen = p[i++];
    if (klen > n - i) break;
    std::string key(reinterpret_cast<const char*>(p + i), klen);
    i += klen;
    if (n - i < 8) break;
    uint64_t v = 0;
    for (int b = 0; b < 8; ++b) v |= static_cast<uint64_t>(p[i + b]) << (8 * b);
    i += 8;
    table.emplace(std::move(key), static_cast<int64_t>(v));
  }
  return table;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  size_t table_len = static_cast<size_t>(data[0]) | (static_cast<size_t>(data[1]) << 8);
  if (table_len > size - 2) table_len = size - 2;
  const std::map<std::string, int64_t> table = parse_table(data + 2, table_len);
  const uint8_t* blob = data + 2 + table_len;
  const size_t blob_len = size - 2 - table_len;

  // Exactly blob_len bytes on the heap (so ASan sees any read past the end), 8-byte aligned as
  // ExecuTorch hands delegate data to init().
  std::vector<uint8_t> heap(blob, blob + blob_len);
  const int4_cuda::NamedDataSize named = [&](const std::string& key) -> int64_t {
    auto it = table.find(key);
    return it == table.end() ? -1 : it->second;
  };

  std::string message;
  int4_cuda::Graph graph;
  const auto e = int4_cuda::verify_blob(heap.empty() ? nullptr : heap.data(), heap.size(), named, &graph, &message);
  if (e != executorch::runtime::Error::Ok) {
    if (message.empty() || message.find('\n') != std::string::npos)
      contract_broken("a failure must give one non-empty message line", message);
    return 0;
  }
  if (!message.empty()) contract_broken("success with a message", message);

  int4_cuda::MemoryPlan plan;
  std::string plan_error;
  if (!int4_cuda::plan_memory(graph, &plan, &plan_error)) {
    if (plan_error.empty()) contract_broken("plan_memory failed without a message", "");
    return 0;
  }
  if (plan.arena_bytes < 0 || plan.offset.size() != graph.values.size() || plan.bytes.size() != graph.values.size())
    contract_broken("memory plan malformed", std::to_string(plan.arena_bytes));
  for (size_t v = 0; v < graph.values.size(); ++v)
    if (plan.offset[v] >= 0 && plan.offset[v] + plan.bytes[v] > plan.arena_bytes)
      contract_broken("value outside the arena", graph.values[v].name);
  return 0;
}
