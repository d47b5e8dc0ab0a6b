// The CUDA executor of one verified delegate graph: device constants, the planned activation
// arena, per-layer KV caches, a stream and a device error flag — all made once in create(), so a
// step allocates nothing.
//
// A step is bind() (host only: symbols from the input shapes, every value's shape, checks) then
// run() (H2D of inputs, one launch sequence on the stream, D2H of outputs, one stream sync at the
// end). The executor knows nothing of ExecuTorch's tensor types; int4_cuda_backend.cpp adapts.
//
// CUDA graphs (run(..., use_graph=true)): a step's launch sequence depends only on its symbol
// values (shapes) and fixed device pointers — token ids and start_pos are read on the device — so
// it can be captured once per shape and replayed. Inputs are staged through pinned host buffers
// made in create() (fixed addresses the graph copies from), outputs likewise. A shape is captured
// on its second consecutive step (decode: T=1 every step; one-off prefill shapes never are); at
// most kMaxGraphs are kept. If capture fails, the executor logs once and runs eagerly from then on.
//
// Not thread-safe: one step at a time per Executor (as ExecuTorch runs a method).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <executorch/runtime/core/error.h>

#include "graph.h"
#include "kernels/kernels.h"
#include "memory_planner.h"

struct CUstream_st;

namespace int4_cuda {

using executorch::runtime::Error;

// A CPU tensor handed to or from a step: dense, row-major.
struct HostTensor {
  const void* data = nullptr;
  DType dtype = DType::FLOAT32;
  int ndim = 0;
  int64_t sizes[kMaxDims] = {};
};

// Host bytes of a named constant, valid until release(key) is called.
struct ConstantSource {
  std::function<bool(const std::string& key, const void** data, size_t* size)> fetch;
  std::function<void(const std::string& key)> release;
};

class Executor {
 public:
  // Uploads the constants (releasing each host copy right after), plans and allocates the arena,
  // allocates the KV caches. Reports (one log line) and returns an error on failure.
  static Error create(Graph graph, const ConstantSource& constants, std::unique_ptr<Executor>* out);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  const Graph& graph() const { return g_; }

  // `inputs` has one entry per graph input (entries of -1 ids are ignored). Host only.
  Error bind(const HostTensor* inputs, size_t n_inputs);
  // Valid after a successful bind().
  const kernels::Shape& shape(uint32_t value) const { return shapes_[value]; }

  // Runs the bound step: outputs[i] receives graph output i (dense, shape(outputs[i]) bytes).
  // use_graph: capture/replay this shape as a CUDA graph (see above); results are identical.
  Error run(const HostTensor* inputs, void* const* outputs, bool use_graph = false);

  static constexpr size_t kMaxGraphs = 4;

  int64_t arena_bytes() const { return plan_.arena_bytes; }
  int64_t constant_bytes() const { return const_bytes_; }

 private:
  Executor() = default;
  Error run_op(const Op& op);
  // Enqueues one step on stream_ (error-flag reset, H2D from in_src[i], ops, D2H to out_dst[i]
  // and of the error flag). No sync: the caller syncs (eager) or it is being captured.
  Error enqueue(const void* const* in_src, void* const* out_dst);
  Error finish();  // sync + device error flag check
  Error run_graph(const HostTensor* inputs, void* const* outputs);
  void* ptr(int32_t v) const { return value_ptr_[v]; }

  struct KvCache {
    void* k = nullptr;
    void* v = nullptr;
    int64_t max_seq_len = 0, hkv = 0, d = 0;
  };

  Graph g_;
  MemoryPlan plan_;
  CUstream_st* stream_ = nullptr;
  void* const_arena_ = nullptr;
  void* act_arena_ = nullptr;
  int64_t const_bytes_ = 0;
  int* err_dev_ = nullptr;   // device error flag (kernels::ErrorCode)
  int* err_host_ = nullptr;  // pinned mirror, read after the final sync
  std::vector<void*> value_ptr_;
  std::map<int32_t, KvCache> kv_;
  // Split-key attention: partials and arrival counters, shared by every attention op (the stream
  // runs them one after another; the kernel leaves the counters at zero).
  float* attn_scratch_ = nullptr;
  int* attn_counters_ = nullptr;
  // int4_plain_mm's workspace (stream-K pieces and their arrival counters; calls leave the counters
  // at zero), shared by every int4 op for the same reason.
  void* mm_workspace_ = nullptr;
  // Per-step host state, sized once in create() (no allocation in a step).
  std::vector<int64_t> sym_;
  std::vector<kernels::Shape> shapes_;
  std::vector<const void*> in_src_;
  // CUDA graphs: pinned staging (one slot per graph input / output, at its maximum size).
  std::vector<void*> pinned_in_, pinned_out_;
  std::vector<int64_t> last_sym_;
  struct CapturedGraph {
    std::vector<int64_t> sym;
    void* exec = nullptr;  // cudaGraphExec_t
  };
  std::vector<CapturedGraph> graphs_;
  bool graph_broken_ = false;
};

// Process-wide counters of CUDA-graph captures and replays (for runner statistics).
int64_t cuda_graph_captures();
int64_t cuda_graph_replays();

}  // namespace int4_cuda
