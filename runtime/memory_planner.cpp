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
  plan->arena_bytes = 0;

  // Lifetimes in op steps: graph inputs are written at step -1, graph outputs read at step n_ops.
  std::vector<int64_t> first(nv, INT64_MAX), last(nv, INT64_MIN);
  for (int32_t i : g.inputs)
    if (i >= 0) first[i] = -1, last[i] = std::max<int64_t>(last[i], -1);
  for (int64_t s = 0; s < n_ops; ++s) {
    const Op& op = g.ops[s];
    for (int32_t i : op.inputs)
      if (i >= 0) last[i] = std::max(last[i], s);
    first[op.output] = std::min(first[op.output], s);
    last[op.output] = std::max(last[op.output], s);
  }
  for (uint32_t o : g.outputs) last[o] = n_ops;

  std::vector<size_t> order;
  for (size_t v = 0; v < nv; ++v) {
    if (g.values[v].is_constant() || first[v] == INT64_MAX) continue;
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
