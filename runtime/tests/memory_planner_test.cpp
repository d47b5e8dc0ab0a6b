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

void test_view_aliases() {
  // x -> mm -> view1 -> view2 -> silu(view2) -> silu2 (output); plus a view of the constant scale.
  // The views take no bytes and resolve to mm; mm's bytes stay reserved until silu reads view2, so
  // silu's output never lands on them.
  Graph g = sample_graph(64, 256, 32);
  auto add_value = [&](const Value& like, const std::string& name) {
    Value v = like;
    v.name = name;
    v.constant_key.clear();
    g.values.push_back(v);
    return static_cast<int32_t>(g.values.size() - 1);
  };
  auto add_op = [&](OpCode code, int32_t in, int32_t out) {
    Op op;
    op.code = code;
    op.inputs = {in};
    op.output = static_cast<uint32_t>(out);
    g.ops.push_back(op);
  };
  g.ops.pop_back();  // drop the sample's silu (value 5 is re-used as the final output below)
  const int32_t v1 = add_value(g.values[4], "view1"), v2 = add_value(g.values[4], "view2");
  const int32_t s1 = add_value(g.values[4], "silu1");
  Value cview = g.values[2];
  cview.name = "scale_view";
  const int32_t cv = add_value(cview, "scale_view");
  add_op(OpCode::VIEW, 4, v1);
  add_op(OpCode::VIEW, v1, v2);
  add_op(OpCode::VIEW, 2, cv);
  add_op(OpCode::SILU, v2, s1);
  add_op(OpCode::SILU, s1, 5);
  MemoryPlan p;
  std::string err;
  CHECK(plan_memory(g, &p, &err));
  CHECK(p.alias[v1] == 4 && p.alias[v2] == 4);  // chains resolve to the root
  CHECK(p.alias[cv] == 2);                     // a view of a constant reads the constant
  CHECK(p.offset[v1] == -1 && p.offset[v2] == -1 && p.bytes[v1] == 0);
  CHECK(p.alias[4] == -1 && p.alias[s1] == -1 && p.alias[5] == -1);
  auto disjoint = [&](int a, int b) {
    return p.offset[a] + p.bytes[a] <= p.offset[b] || p.offset[b] + p.bytes[b] <= p.offset[a];
  };
  CHECK(disjoint(4, s1));  // silu1 is written while view2 (= mm's bytes) is read
  // A view whose dtype differs from its input's is not an alias (it keeps a buffer of its own).
  g.values[v1].dtype = DType::FLOAT32;
  CHECK(plan_memory(g, &p, &err));
  CHECK(p.alias[v1] == -1 && p.offset[v1] >= 0 && p.alias[v2] == -1);
}

}  // namespace

int main() {
  test_sample();
  test_chain_reuse();
  test_view_aliases();
  std::printf("memory_planner_test: %s (%d failures)\n", g_failures ? "FAILED" : "ok", g_failures);
  return g_failures ? 1 : 0;
}
