// Host-side tests of plan_memory: sizes at the symbols' max, alignment, and no two values whose
// lifetimes overlap share bytes.
#include <string>

#include "memory_planner.h"
#include "test_blobs.h"

using namespace int4_cuda;
using namespace int4_cuda::testing;

namespace {

void test_sample() {
  Graph g = sample_graph(/*n=*/64, /*k=*/256, /*group_size=*/32);
  MemoryPlan p;
  std::string err;
  CHECK(plan_memory(g, &p, &err));
  // x: 16 x 256 bf16 = 8192 bytes at the symbol's max.
  CHECK(p.bytes[0] == 8192);
  CHECK(p.offset[1] == -1 && p.offset[2] == -1 && p.offset[3] == -1);  // constants: not in the arena
  // x (live -1..0), mm (0..1), silu (1..2): x/mm overlap, mm/silu overlap, x/silu may share.
  auto disjoint = [&](int a, int b) {
    return p.offset[a] + p.bytes[a] <= p.offset[b] || p.offset[b] + p.bytes[b] <= p.offset[a];
  };
  CHECK(disjoint(0, 4));
  CHECK(disjoint(4, 5));
  for (size_t v = 0; v < p.offset.size(); ++v)
    if (p.offset[v] >= 0) CHECK(p.offset[v] % kArenaAlignment == 0 && p.offset[v] + p.bytes[v] <= p.arena_bytes);
  CHECK(p.arena_bytes <= 8192 + 2048);  // silu reuses x's bytes
}

void test_chain_reuse() {
  // A long chain of SILUs needs only two live buffers at a time.
  Graph g = sample_graph(64, 256, 32);
  for (int i = 0; i < 20; ++i) {
    Value v = g.values.back();
    v.name = "silu" + std::to_string(i);
    g.values.push_back(v);
    Op op;
    op.code = OpCode::SILU;
    op.inputs = {static_cast<int32_t>(g.values.size() - 2)};
    op.output = static_cast<uint32_t>(g.values.size() - 1);
    g.ops.push_back(op);
  }
  g.outputs = {static_cast<uint32_t>(g.values.size() - 1)};
  MemoryPlan p;
  std::string err;
  CHECK(plan_memory(g, &p, &err));
  CHECK(p.arena_bytes <= 3 * 8192);
}

}  // namespace

int main() {
  test_sample();
  test_chain_reuse();
  std::printf("memory_planner_test: %s (%d failures)\n", g_failures ? "FAILED" : "ok", g_failures);
  return g_failures ? 1 : 0;
}
