#include "memory_planner.h"

#include <algorithm>
#include <numeric>
#include <string>

namespace int4_cuda {

bool plan_memory(const Graph& g, MemoryPlan* plan, std::string* error) {
  const size_t nv = g.values.size();
  const int64_t n_ops = static_cast<int64_t>(g.ops.size());
  plan->offset.assign(nv, -1);
  plan->bytes.assign(nv, 0);
  plan->alias.assign(nv, -1);
  plan->arena_bytes = 0;

  // VIEW aliases: same dtype, and never more bytes than the root can hold at the symbols' max (a
  // verified graph always satisfies both; a view that doesn't simply keeps its own buffer and copy).
  auto root = [&](int32_t v) { return plan->alias[v] >= 0 ? plan->alias[v] : v; };
  for (const Op& op : g.ops) {
    if (op.code != OpCode::VIEW || op.inputs.empty() || op.inputs[0] < 0) continue;
    const int32_t r = root(op.inputs[0]);
    const Value& out = g.values[op.output];
    if (out.dtype != g.values[r].dtype) continue;
    const int64_t ob = max_nbytes(out, g.symbols), rb = max_nbytes(g.values[r], g.symbols);
    if (ob < 0 || rb < 0 || ob > rb) continue;
    plan->alias[op.output] = r;
  }

  // Lifetimes in op steps: graph inputs are written at step -1, graph outputs read at step n_ops.
  std::vector<int64_t> first(nv, INT64_MAX), last(nv, INT64_MIN);
  // Uses and definitions of an alias count for its root.
  for (int32_t i : g.inputs)
    if (i >= 0) first[i] = -1, last[i] = std::max<int64_t>(last[i], -1);
  for (int64_t s = 0; s < n_ops; ++s) {
    const Op& op = g.ops[s];
    for (int32_t i : op.inputs)
      if (i >= 0) last[root(i)] = std::max(last[root(i)], s);
    for (uint32_t out : {op.output, op.output2}) {
      if (out == UINT32_MAX) continue;
      const int32_t o = root(static_cast<int32_t>(out));
      first[o] = std::min(first[o], s);
      last[o] = std::max(last[o], s);
    }
  }
  for (uint32_t o : g.outputs) last[root(static_cast<int32_t>(o))] = n_ops;

  std::vector<size_t> order;
  for (size_t v = 0; v < nv; ++v) {
    if (g.values[v].is_constant() || plan->alias[v] >= 0 || first[v] == INT64_MAX) continue;
    const int64_t b = max_nbytes(g.values[v], g.symbols);
    if (b < 0) {
      if (error) *error = "int4_cuda: value " + g.values[v].name + " is too large to plan (size overflow)";
      return false;
    }
    plan->bytes[v] = (b + kArenaAlignment - 1) / kArenaAlignment * kArenaAlignment;
    if (plan->bytes[v] == 0) plan->bytes[v] = kArenaAlignment;  // distinct, valid pointers for empty tensors
    order.push_back(v);
  }
  // Largest first, then by birth: the usual greedy-by-size heuristic.
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return plan->bytes[a] != plan->bytes[b] ? plan->bytes[a] > plan->bytes[b] : first[a] < first[b];
  });
  std::vector<size_t> placed;
  for (size_t v : order) {
    // Busy ranges of already-placed values whose lifetimes overlap v's, sorted by offset.
    std::vector<std::pair<int64_t, int64_t>> busy;
    for (size_t u : placed)
      if (!(last[u] < first[v] || last[v] < first[u]))
        busy.emplace_back(plan->offset[u], plan->offset[u] + plan->bytes[u]);
    std::sort(busy.begin(), busy.end());
    int64_t at = 0;
    for (const auto& r : busy) {
      if (at + plan->bytes[v] <= r.first) break;  // fits in the gap before r
      at = std::max(at, r.second);
    }
    // Offsets stay below 2^62 (no int64 overflow however many huge values a damaged blob holds).
    if (at > (int64_t(1) << 62) - plan->bytes[v]) {
      if (error) *error = "int4_cuda: activations need more than 2^62 bytes of arena (at " + g.values[v].name + ")";
      return false;
    }
    plan->offset[v] = at;
    plan->arena_bytes = std::max(plan->arena_bytes, at + plan->bytes[v]);
    placed.push_back(v);
  }
  return true;
}

}  // namespace int4_cuda
