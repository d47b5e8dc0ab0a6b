// Memory planner: one device arena for every activation (non-constant value) of a graph, sized for
// the symbols' max_value, so execute() allocates nothing.
//
// Two values share bytes only if their lifetimes are disjoint. A value lives from the op that
// writes it (graph inputs: from before the first op) to the last op that reads it (graph outputs:
// to after the last op). Lifetimes are inclusive, so an op's output never overlaps any of its
// inputs: no kernel has to be safe in place.
//
// VIEW outputs are aliases: a reshape of a dense value is the same bytes, so the view gets no
// bytes of its own and reads its root's (the first non-view value up the chain, possibly a
// constant); the root's lifetime is stretched over every use of its aliases. No op writes into
// its input, so sharing bytes with a live alias is safe.
#pragma once

#include <cstdint>
#include <vector>

#include "graph.h"

namespace int4_cuda {

// Offsets inside the arena are multiples of this (int4_plain_mm needs 16 B for x; 256 B keeps every
// tensor on its own cache-line/sector boundary).
constexpr int64_t kArenaAlignment = 256;

struct MemoryPlan {
  int64_t arena_bytes = 0;
  // Per value id: byte offset in the arena, or -1 (constant, or never materialized).
  std::vector<int64_t> offset;
  // Per value id: bytes reserved (max over the symbols' ranges), 0 for constants and aliases.
  std::vector<int64_t> bytes;
  // Per value id: the value whose bytes it shares (a VIEW's root), or -1.
  std::vector<int32_t> alias;
};

// Plans `g` (verified). Returns false only if a size overflows (message in *error).
bool plan_memory(const Graph& g, MemoryPlan* plan, std::string* error);

}  // namespace int4_cuda
