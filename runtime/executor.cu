#include "executor.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include <executorch/runtime/platform/log.h>

#include "int4_plain_mm.h"
#include "last_error.h"

namespace int4_cuda {
namespace {

using kernels::Shape;
using kernels::Strides;

Error cuda_fail(cudaError_t e, const char* what) {
  return reportf(Error::Internal, "int4_cuda: CUDA error during %s: %s (%s)", what, cudaGetErrorName(e),
                 cudaGetErrorString(e));
}

int64_t nbytes(const Shape& s, DType t) { return s.numel() * static_cast<int64_t>(dtype_size(t)); }

Strides contiguous(const Shape& s) {
  Strides st;
  int64_t acc = 1;
  for (int d = s.ndim - 1; d >= 0; --d) {
    st.s[d] = acc;
    acc *= s.size[d];
  }
  return st;
}

// Strides that read `in` broadcast (numpy rules, right-aligned) to `out`; false if incompatible.
bool broadcast_strides(const Shape& in, const Shape& out, Strides* st) {
  if (in.ndim > out.ndim) return false;
  const Strides cs = contiguous(in);
  const int lead = out.ndim - in.ndim;
  for (int d = 0; d < out.ndim; ++d) {
    if (d < lead) { st->s[d] = 0; continue; }
    const int64_t sz = in.size[d - lead];
    if (sz == out.size[d]) st->s[d] = cs.s[d - lead];
    else if (sz == 1) st->s[d] = 0;
    else return false;
  }
  return true;
}

std::string shape_text(const Shape& s) {
  std::string t = "[";
  for (int d = 0; d < s.ndim; ++d) t += (d ? ", " : "") + std::to_string(s.size[d]);
  return t + "]";
}

std::atomic<int64_t> g_captures{0}, g_replays{0};

}  // namespace

int64_t cuda_graph_captures() { return g_captures.load(); }
int64_t cuda_graph_replays() { return g_replays.load(); }

Error Executor::create(Graph graph, const ConstantSource& constants, std::unique_ptr<Executor>* out) {
  std::unique_ptr<Executor> ex(new Executor());
  ex->g_ = std::move(graph);
  const Graph& g = ex->g_;
  const size_t nv = g.values.size();
  ex->value_ptr_.assign(nv, nullptr);
  ex->shapes_.assign(nv, Shape{});
  ex->sym_.assign(g.symbols.size(), 0);
  ex->in_src_.assign(g.inputs.size(), nullptr);

  cudaError_t e = cudaStreamCreateWithFlags(&ex->stream_, cudaStreamNonBlocking);
  if (e != cudaSuccess) return cuda_fail(e, "stream creation");
  if ((e = cudaMalloc(&ex->err_dev_, sizeof(int))) != cudaSuccess) return cuda_fail(e, "allocation of the error flag");
  if ((e = cudaMallocHost(&ex->err_host_, sizeof(int))) != cudaSuccess)
    return cuda_fail(e, "allocation of the pinned error flag");
  *ex->err_host_ = 0;

  // Constants: one device arena, one slot per distinct key (keys are content hashes: identical
  // bytes share a slot). Static shapes, so their Shape is fixed here.
  std::map<std::string, int64_t> key_offset;
  int64_t total = 0;
  for (size_t v = 0; v < nv; ++v) {
    const Value& t = g.values[v];
    if (!t.is_constant() || key_offset.count(t.constant_key)) continue;
    key_offset[t.constant_key] = total;
    const int64_t b = max_nbytes(t, g.symbols);
    total += (b + kArenaAlignment - 1) / kArenaAlignment * kArenaAlignment;
  }
  ex->const_bytes_ = total;

  // Everything this program will hold on the GPU, checked against free memory before the first
  // byte is allocated, so a model that does not fit fails with the numbers instead of half-loading.
  std::string msg;
  if (!plan_memory(g, &ex->plan_, &msg)) return report(Error::InvalidProgram, msg);
  int64_t kv_bytes = 0, scratch_floats = 0, counters = 0;
  {
    std::map<int, bool> seen;
    for (const Op& op : g.ops) {
      int64_t hkv = 0, d = 0;
      DType dtype = DType::FLOAT32;
      if (!kv_cache_shape(g, op, &hkv, &d, &dtype)) continue;
      const int64_t h = op.code == OpCode::QKV_ATTENTION ? op.arg.n_heads : g.values[op.inputs[0]].dims[2].offset;
      scratch_floats = std::max(scratch_floats, kernels::kv_attention_scratch_floats(h, hkv, d, op.arg.max_seq_len));
      counters = std::max(counters, kernels::kv_attention_counters(hkv));
      if (seen[op.arg.layer]) continue;
      seen[op.arg.layer] = true;
      kv_bytes += 2 * op.arg.max_seq_len * hkv * d * static_cast<int64_t>(dtype_size(dtype));
    }
  }
  const int64_t attn_bytes = scratch_floats * static_cast<int64_t>(sizeof(float)) + counters * static_cast<int64_t>(sizeof(int));
  // int4_plain_mm's workspace (stream-K; shims/int4_plain_mm.h), one for every int4 op of the stream.
  const bool any_mm = std::any_of(g.ops.begin(), g.ops.end(), [](const Op& op) { return op.code == OpCode::INT4_PLAIN_MM; });
  const int64_t mm_ws_bytes = any_mm ? INT4_CUDA_PLAIN_MM_WORKSPACE_BYTES : 0;
  const int64_t need = total + ex->plan_.arena_bytes + kv_bytes + attn_bytes + mm_ws_bytes;
  size_t free_b = 0, total_b = 0;
  if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess && need > static_cast<int64_t>(free_b))
    return reportf(Error::MemoryAllocationFailed, "int4_cuda: this program needs %lld bytes of GPU memory "
                   "(weights %lld, activations %lld, KV cache %lld) but only %zu of %zu are free; use a GPU "
                   "with more free memory or export with a smaller --max_seq_length",
                   static_cast<long long>(need), static_cast<long long>(total),
                   static_cast<long long>(ex->plan_.arena_bytes), static_cast<long long>(kv_bytes), free_b, total_b);

  if (total > 0 && (e = cudaMalloc(&ex->const_arena_, total)) != cudaSuccess) {
    (void)cudaGetLastError();  // a failed cudaMalloc leaves its error to be read by the next check
    return reportf(Error::MemoryAllocationFailed, "int4_cuda: cannot allocate %lld bytes of GPU memory for the "
                   "weights (%s); use a GPU with more free memory", static_cast<long long>(total),
                   cudaGetErrorString(e));
  }
  for (const auto& [key, off] : key_offset) {
    const void* data = nullptr;
    size_t size = 0;
    if (!constants.fetch(key, &data, &size))
      return reportf(Error::InvalidExternalData, "int4_cuda: constant %.20s… could not be read from the "
                     ".pte/.ptd; check the files are complete", key.c_str());
    e = cudaMemcpy(static_cast<char*>(ex->const_arena_) + off, data, size, cudaMemcpyHostToDevice);
    constants.release(key);  // the host copy is not needed again
    if (e != cudaSuccess) return cuda_fail(e, "weight upload");
  }
  for (size_t v = 0; v < nv; ++v) {
    const Value& t = g.values[v];
    if (!t.is_constant()) continue;
    ex->value_ptr_[v] = static_cast<char*>(ex->const_arena_) + key_offset[t.constant_key];
    Shape& s = ex->shapes_[v];
    s.ndim = static_cast<int>(t.dims.size());
    for (int d = 0; d < s.ndim; ++d) s.size[d] = t.dims[d].offset;
  }

  // Activations: the planned arena.
  if (ex->plan_.arena_bytes > 0 && (e = cudaMalloc(&ex->act_arena_, ex->plan_.arena_bytes)) != cudaSuccess)
    return (void)cudaGetLastError(), reportf(Error::MemoryAllocationFailed, "int4_cuda: cannot allocate %lld bytes of GPU memory for "
                   "activations (%s); export with a smaller max sequence length",
                   static_cast<long long>(ex->plan_.arena_bytes), cudaGetErrorString(e));
  for (size_t v = 0; v < nv; ++v)
    if (ex->plan_.offset[v] >= 0) ex->value_ptr_[v] = static_cast<char*>(ex->act_arena_) + ex->plan_.offset[v];
  for (size_t v = 0; v < nv; ++v)  // VIEW aliases read their root's bytes (the VIEW op then copies nothing)
    if (ex->plan_.alias[v] >= 0) ex->value_ptr_[v] = ex->value_ptr_[ex->plan_.alias[v]];

  if (counters > 0) {
    if ((e = cudaMalloc(&ex->attn_scratch_, scratch_floats * sizeof(float))) != cudaSuccess ||
        (e = cudaMalloc(&ex->attn_counters_, counters * sizeof(int))) != cudaSuccess)
      return (void)cudaGetLastError(), reportf(Error::MemoryAllocationFailed, "int4_cuda: cannot allocate %lld "
                     "bytes of GPU memory for attention scratch (%s)", static_cast<long long>(attn_bytes),
                     cudaGetErrorString(e));
    cudaMemsetAsync(ex->attn_counters_, 0, counters * sizeof(int), ex->stream_);
  }
  if (mm_ws_bytes > 0) {
    if ((e = cudaMalloc(&ex->mm_workspace_, mm_ws_bytes)) != cudaSuccess)
      return (void)cudaGetLastError(), reportf(Error::MemoryAllocationFailed, "int4_cuda: cannot allocate %lld "
                     "bytes of GPU memory for the int4_plain_mm workspace (%s)", static_cast<long long>(mm_ws_bytes),
                     cudaGetErrorString(e));
    cudaMemsetAsync(ex->mm_workspace_, 0, mm_ws_bytes, ex->stream_);  // zero before first use (the contract)
  }
  // KV caches, one pair per layer, zeroed (positions not yet written are never read).
  for (const Op& op : g.ops) {
    KvCache c;
    DType dtype = DType::FLOAT32;
    if (!kv_cache_shape(g, op, &c.hkv, &c.d, &dtype) || ex->kv_.count(op.arg.layer)) continue;
    c.max_seq_len = op.arg.max_seq_len;
    const size_t bytes = static_cast<size_t>(c.max_seq_len * c.hkv * c.d) * dtype_size(dtype);
    if ((e = cudaMalloc(&c.k, bytes)) != cudaSuccess || (e = cudaMalloc(&c.v, bytes)) != cudaSuccess) {
      (void)cudaGetLastError();
      ex->kv_[op.arg.layer] = c;  // freed by the destructor
      return reportf(Error::MemoryAllocationFailed, "int4_cuda: cannot allocate the KV cache of layer %d "
                     "(2 x %zu bytes: %s); export with a smaller max_seq_len", op.arg.layer, bytes,
                     cudaGetErrorString(e));
    }
    cudaMemsetAsync(c.k, 0, bytes, ex->stream_);
    cudaMemsetAsync(c.v, 0, bytes, ex->stream_);
    ex->kv_[op.arg.layer] = c;
  }
  // Pinned staging for CUDA-graph steps: fixed host addresses, each at its value's largest size.
  ex->pinned_in_.assign(g.inputs.size(), nullptr);
  ex->pinned_out_.assign(g.outputs.size(), nullptr);
  auto pin = [&](uint32_t v, void** p) -> Error {
    const int64_t b = std::max<int64_t>(max_nbytes(g.values[v], g.symbols), 1);
    const cudaError_t pe = cudaMallocHost(p, b);
    return pe == cudaSuccess ? Error::Ok : cuda_fail(pe, "allocation of pinned staging buffers");
  };
  for (size_t i = 0; i < g.inputs.size(); ++i)
    if (g.inputs[i] >= 0) {
      const Error pe = pin(g.inputs[i], &ex->pinned_in_[i]);
      if (pe != Error::Ok) return pe;
    }
  for (size_t i = 0; i < g.outputs.size(); ++i) {
    const Error pe = pin(g.outputs[i], &ex->pinned_out_[i]);
    if (pe != Error::Ok) return pe;
  }
  if ((e = cudaStreamSynchronize(ex->stream_)) != cudaSuccess) return cuda_fail(e, "initialization");
  *out = std::move(ex);
  return Error::Ok;
}

Executor::~Executor() {
  if (stream_) cudaStreamSynchronize(stream_);
  for (CapturedGraph& cg : graphs_) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(cg.exec));
  for (void* p : pinned_in_) if (p) cudaFreeHost(p);
  for (void* p : pinned_out_) if (p) cudaFreeHost(p);
  for (auto& [layer, c] : kv_) {
    cudaFree(c.k);
    cudaFree(c.v);
  }
  cudaFree(attn_scratch_);
  cudaFree(attn_counters_);
  cudaFree(mm_workspace_);
  cudaFree(act_arena_);
  cudaFree(const_arena_);
  cudaFree(err_dev_);
  if (err_host_) cudaFreeHost(err_host_);
  if (stream_) cudaStreamDestroy(stream_);
}

Error Executor::bind(const HostTensor* inputs, size_t n_inputs) {
  const Graph& g = g_;
  if (n_inputs != g.inputs.size())
    return reportf(Error::InvalidArgument, "int4_cuda: the delegate takes %zu inputs, got %zu", g.inputs.size(),
                   n_inputs);
  for (size_t i = 0; i < n_inputs; ++i) {
    const int32_t v = g.inputs[i];
    if (v < 0) continue;
    const Value& t = g.values[v];
    if (inputs[i].dtype != t.dtype || inputs[i].ndim != static_cast<int>(t.dims.size()))
      return reportf(Error::InvalidArgument, "int4_cuda: input %s must be a %zu-D %s tensor, got %d-D %s",
                     t.name.c_str(), t.dims.size(), dtype_name(t.dtype), inputs[i].ndim, dtype_name(inputs[i].dtype));
  }
  for (size_t s = 0; s < g.symbols.size(); ++s) {
    const Symbol& b = g.symbols[s];
    size_t slot = 0;
    while (g.inputs[slot] != static_cast<int32_t>(b.value)) ++slot;  // verified: the value is an input
    const int64_t val = inputs[slot].sizes[b.dim];
    if (val < b.min_value || val > b.max_value)
      return reportf(Error::InvalidArgument, "int4_cuda: input %s dim %u is %lld; the program was exported for "
                     "%lld..%lld", g.values[b.value].name.c_str(), b.dim, static_cast<long long>(val),
                     static_cast<long long>(b.min_value), static_cast<long long>(b.max_value));
    sym_[s] = val;
  }
  for (size_t v = 0; v < g.values.size(); ++v) {
    const Value& t = g.values[v];
    if (t.is_constant()) continue;
    Shape& s = shapes_[v];
    s.ndim = static_cast<int>(t.dims.size());
    for (int d = 0; d < s.ndim; ++d) {
      s.size[d] = dim_size(t.dims[d], sym_.data());
      if (s.size[d] < 0)
        return reportf(Error::InvalidArgument, "int4_cuda: value %s gets a negative size for these inputs",
                       t.name.c_str());
    }
  }
  for (size_t i = 0; i < n_inputs; ++i) {
    const int32_t v = g.inputs[i];
    if (v < 0) continue;
    for (int d = 0; d < inputs[i].ndim; ++d)
      if (inputs[i].sizes[d] != shapes_[v].size[d]) {
        Shape got;
        got.ndim = inputs[i].ndim;
        std::copy(inputs[i].sizes, inputs[i].sizes + got.ndim, got.size);
        return reportf(Error::InvalidArgument, "int4_cuda: input %s has shape %s, expected %s",
                       g.values[v].name.c_str(), shape_text(got).c_str(), shape_text(shapes_[v]).c_str());
      }
  }
  return Error::Ok;
}

Error Executor::enqueue(const void* const* in_src, void* const* out_dst) {
  const Graph& g = g_;
  cudaError_t e = cudaMemsetAsync(err_dev_, 0, sizeof(int), stream_);
  for (size_t i = 0; i < g.inputs.size() && e == cudaSuccess; ++i) {
    const int32_t v = g.inputs[i];
    if (v < 0) continue;
    const int64_t b = nbytes(shapes_[v], g.values[v].dtype);
    if (b > 0) e = cudaMemcpyAsync(ptr(v), in_src[i], b, cudaMemcpyHostToDevice, stream_);
  }
  if (e != cudaSuccess) return cuda_fail(e, "input copy");
  for (const Op& op : g.ops) {
    const Error err = run_op(op);
    if (err != Error::Ok) return err;
  }
  if ((e = cudaGetLastError()) != cudaSuccess) return cuda_fail(e, "kernel launch");
  for (size_t i = 0; i < g.outputs.size() && e == cudaSuccess; ++i) {
    const uint32_t v = g.outputs[i];
    const int64_t b = nbytes(shapes_[v], g.values[v].dtype);
    if (b > 0) e = cudaMemcpyAsync(out_dst[i], ptr(v), b, cudaMemcpyDeviceToHost, stream_);
  }
  if (e == cudaSuccess) e = cudaMemcpyAsync(err_host_, err_dev_, sizeof(int), cudaMemcpyDeviceToHost, stream_);
  if (e != cudaSuccess) return cuda_fail(e, "output copy");
  return Error::Ok;
}

Error Executor::finish() {
  const cudaError_t e = cudaStreamSynchronize(stream_);  // the step's only host sync
  if (e != cudaSuccess) return cuda_fail(e, "execution");
  if (*err_host_ != kernels::kErrNone)
    return reportf(Error::InvalidArgument, "int4_cuda: %s; check the inputs (token ids, start_pos) against the "
                   "exported limits", kernels::error_code_text(*err_host_));
  return Error::Ok;
}

Error Executor::run(const HostTensor* inputs, void* const* outputs, bool use_graph) {
  if (use_graph && !graph_broken_) {
    const bool repeat = sym_ == last_sym_;
    last_sym_ = sym_;
    for (const CapturedGraph& cg : graphs_)
      if (cg.sym == sym_) return run_graph(inputs, outputs);
    if (repeat && graphs_.size() < kMaxGraphs) {
      // Capture this shape once (recorded, not executed), then replay it for this step.
      cudaError_t e = cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal);
      if (e != cudaSuccess) return cuda_fail(e, "CUDA graph capture start");
      const Error qe = enqueue(const_cast<const void* const*>(pinned_in_.data()), pinned_out_.data());
      cudaGraph_t graph = nullptr;
      e = cudaStreamEndCapture(stream_, &graph);
      cudaGraphExec_t exec = nullptr;
      if (qe == Error::Ok && e == cudaSuccess) e = cudaGraphInstantiate(&exec, graph, 0);
      if (graph) cudaGraphDestroy(graph);
      if (qe != Error::Ok || e != cudaSuccess) {
        // Eager from now on; this step runs eagerly below (a genuine input error shows up there).
        cudaGetLastError();
        graph_broken_ = true;
        ET_LOG(Info, "int4_cuda: CUDA graph capture failed (%s); running eagerly from now on",
               qe != Error::Ok ? "an op could not be captured" : cudaGetErrorString(e));
      } else {
        graphs_.push_back({sym_, exec});
        g_captures.fetch_add(1);
        return run_graph(inputs, outputs);
      }
    }
  } else {
    last_sym_.clear();
  }
  for (size_t i = 0; i < g_.inputs.size(); ++i) in_src_[i] = inputs[i].data;
  const Error qe = enqueue(in_src_.data(), outputs);
  if (qe != Error::Ok) {
    cudaStreamSynchronize(stream_);
    return qe;
  }
  return finish();
}

Error Executor::run_graph(const HostTensor* inputs, void* const* outputs) {
  const Graph& g = g_;
  cudaGraphExec_t exec = nullptr;
  for (const CapturedGraph& cg : graphs_)
    if (cg.sym == sym_) exec = static_cast<cudaGraphExec_t>(cg.exec);
  for (size_t i = 0; i < g.inputs.size(); ++i) {
    const int32_t v = g.inputs[i];
    if (v < 0) continue;
    const int64_t b = nbytes(shapes_[v], g.values[v].dtype);
    if (b > 0) std::memcpy(pinned_in_[i], inputs[i].data, b);
  }
  const cudaError_t e = cudaGraphLaunch(exec, stream_);
  if (e != cudaSuccess) return cuda_fail(e, "CUDA graph launch");
  const Error fe = finish();
  if (fe != Error::Ok) return fe;
  g_replays.fetch_add(1);
  for (size_t i = 0; i < g.outputs.size(); ++i) {
    const uint32_t v = g.outputs[i];
    const int64_t b = nbytes(shapes_[v], g.values[v].dtype);
    if (b > 0) std::memcpy(outputs[i], pinned_out_[i], b);
  }
  return Error::Ok;
}

Error Executor::run_op(const Op& op) {
  const Graph& g = g_;
  const auto& in = op.inputs;
  const Shape& os = shapes_[op.output];
  const DType ot = g.values[op.output].dtype;
  void* out = ptr(op.output);
  cudaStream_t st = stream_;
  auto bad = [&](const std::string& what) {
    return reportf(Error::InvalidArgument, "int4_cuda: op %s (%s): %s", op.name.c_str(), op_name(op.code),
                   what.c_str());
  };
  auto dt = [&](int32_t v) { return g.values[v].dtype; };
  auto sh = [&](int32_t v) -> const Shape& { return shapes_[v]; };

  switch (op.code) {
    case OpCode::INT4_PLAIN_MM: {
      const Int4Weight& w = g.weights[op.arg.weight];
      const int64_t m = sh(in[0]).numel() / w.k;
      if (os.numel() != m * w.n) return bad("output " + shape_text(os) + " is not [M, N]");
      if (m == 0) return Error::Ok;
      // x and out share a dtype, bf16 or f32 (checked at init by the verifier).
      const auto s = reinterpret_cast<int4_cuda_stream_t>(st);
      const int rc = dt(in[0]) == DType::FLOAT32
                         ? int4_cuda_int4_plain_mm_f32(ptr(in[0]), ptr(w.qdata), ptr(w.scale), ptr(w.zero), out, m,
                                                       w.n, w.k, w.group_size, s)
                         : int4_cuda_int4_plain_mm_ws(ptr(in[0]), ptr(w.qdata), ptr(w.scale), ptr(w.zero), out, m,
                                                      w.n, w.k, w.group_size, mm_workspace_,
                                                      INT4_CUDA_PLAIN_MM_WORKSPACE_BYTES, s);
      if (rc != INT4_CUDA_OK)
        return reportf(Error::Internal, "int4_cuda: op %s (weight '%s'): int4_plain_mm failed: %s %s",
                       op.name.c_str(), w.name.c_str(), int4_cuda_status_string(rc), int4_cuda_last_cuda_error());
      return Error::Ok;
    }
    case OpCode::ADD: case OpCode::SUB: case OpCode::MUL: case OpCode::DIV:
    case OpCode::NEG: case OpCode::RSQRT: case OpCode::SILU: case OpCode::SIGMOID: case OpCode::POW: {
      Strides as, bs;
      if (!broadcast_strides(sh(in[0]), os, &as)) return bad("input " + shape_text(sh(in[0])) + " does not broadcast to " + shape_text(os));
      const bool has_b = in.size() > 1;
      if (has_b && !broadcast_strides(sh(in[1]), os, &bs))
        return bad("input " + shape_text(sh(in[1])) + " does not broadcast to " + shape_text(os));
      kernels::launch_elementwise(op.code, ptr(in[0]), dt(in[0]), as, has_b ? ptr(in[1]) : nullptr,
                                  has_b ? dt(in[1]) : DType::FLOAT32, bs, has_b, op.arg.scalar, out, ot, os, st);
      return Error::Ok;
    }
    case OpCode::MEAN: {
      const Shape& x = sh(in[0]);
      uint32_t mask = 0;
      for (int64_t d : op.arg.dims) mask |= 1u << d;
      if (op.arg.dims.empty()) mask = (1u << x.ndim) - 1;  // mean over everything
      int64_t kept = 1;
      for (int d = 0; d < x.ndim; ++d)
        if (!(mask & (1u << d))) kept *= x.size[d];
      if (kept != os.numel()) return bad("output " + shape_text(os) + " does not match the reduction");
      kernels::launch_mean(ptr(in[0]), dt(in[0]), x, mask, out, ot, st);
      return Error::Ok;
    }
    case OpCode::RMS_NORM: {
      const Shape& x = sh(in[0]);
      const int64_t d = x.size[x.ndim - 1];
      if (os.numel() != x.numel()) return bad("output shape differs from x");
      if (in[1] >= 0 && sh(in[1]).numel() != d) return bad("weight size differs from the last dim of x");
      const int64_t rows = d ? x.numel() / d : 0;
      if (rows > INT32_MAX) return bad("too many rows");
      kernels::launch_rms_norm(ptr(in[0]), dt(in[0]), in[1] >= 0 ? ptr(in[1]) : nullptr,
                               in[1] >= 0 ? dt(in[1]) : DType::FLOAT32, out, ot, rows, d, op.arg.eps, st);
      return Error::Ok;
    }
    case OpCode::ADD_RMS_NORM: {
      const Shape& x = sh(in[0]);
      const int64_t d = x.size[x.ndim - 1];
      const Shape& s2 = shapes_[op.output2];
      bool same = sh(in[1]).ndim == x.ndim && os.ndim == x.ndim && s2.ndim == x.ndim;
      for (int i = 0; same && i < x.ndim; ++i)
        same = sh(in[1]).size[i] == x.size[i] && os.size[i] == x.size[i] && s2.size[i] == x.size[i];
      if (!same) return bad("x, delta and both outputs must have one shape");
      if (in[2] >= 0 && sh(in[2]).numel() != d) return bad("weight size differs from the last dim of x");
      const int64_t rows = d ? x.numel() / d : 0;
      if (rows > INT32_MAX) return bad("too many rows");
      const void* w = in[2] >= 0 ? ptr(in[2]) : nullptr;
      const DType wt = in[2] >= 0 ? dt(in[2]) : DType::FLOAT32;
      if (d <= kernels::kNormResidualMaxD) {
        kernels::NormResidual res{ptr(in[1]), dt(in[1]), out, ot};
        kernels::launch_rms_norm(ptr(in[0]), dt(in[0]), w, wt, ptr(op.output2), dt(op.output2), rows, d, op.arg.eps,
                                 st, res);
      } else {  // rows too long to keep in registers: the unfused pair
        const Strides cs = contiguous(x);
        kernels::launch_elementwise(OpCode::ADD, ptr(in[0]), dt(in[0]), cs, ptr(in[1]), dt(in[1]), cs, true, 0.0, out,
                                    ot, x, st);
        kernels::launch_rms_norm(out, ot, w, wt, ptr(op.output2), dt(op.output2), rows, d, op.arg.eps, st);
      }
      return Error::Ok;
    }
    case OpCode::SOFTMAX: {
      const Shape& x = sh(in[0]);
      const int dim = static_cast<int>(op.arg.dims[0]);
      int64_t outer = 1, inner = 1;
      for (int d = 0; d < dim; ++d) outer *= x.size[d];
      for (int d = dim + 1; d < x.ndim; ++d) inner *= x.size[d];
      if (os.numel() != x.numel()) return bad("output shape differs from the input");
      kernels::launch_softmax(ptr(in[0]), dt(in[0]), out, ot, outer, x.size[dim], inner, st);
      return Error::Ok;
    }
    case OpCode::BMM: case OpCode::MATMUL: {
      const Shape& a = sh(in[0]);
      const Shape& b = sh(in[1]);
      const int64_t m = a.size[a.ndim - 2], k = a.size[a.ndim - 1], n = b.size[b.ndim - 1];
      if (b.size[b.ndim - 2] != k || os.size[os.ndim - 2] != m || os.size[os.ndim - 1] != n)
        return bad(shape_text(a) + " @ " + shape_text(b) + " -> " + shape_text(os) + " does not agree");
      kernels::MatmulBatch batch;
      batch.ndim = os.ndim - 2;
      int64_t nb = 1, as_acc = m * k, bs_acc = k * n;
      for (int d = batch.ndim - 1; d >= 0; --d) {
        batch.size[d] = os.size[d];
        nb *= os.size[d];
        const int da = d - (batch.ndim - (a.ndim - 2)), db = d - (batch.ndim - (b.ndim - 2));
        const int64_t sa = da >= 0 ? a.size[da] : 1, sb = db >= 0 ? b.size[db] : 1;
        if ((sa != os.size[d] && sa != 1) || (sb != os.size[d] && sb != 1)) return bad("batch dims do not broadcast");
        batch.a_stride[d] = sa == 1 ? 0 : as_acc;
        batch.b_stride[d] = sb == 1 ? 0 : bs_acc;
        as_acc *= sa;
        bs_acc *= sb;
      }
      if (nb > 65535 || (m + 15) / 16 > 65535) return bad("too many batches or rows for the matmul kernel");
      kernels::launch_matmul(ptr(in[0]), dt(in[0]), ptr(in[1]), dt(in[1]), out, ot, m, n, k, batch, st);
      return Error::Ok;
    }
    case OpCode::LINEAR: {
      const Shape& x = sh(in[0]);
      const Shape& w = sh(in[1]);
      const int64_t k = x.size[x.ndim - 1], n = w.size[0];
      const int64_t m = k ? x.numel() / k : 0;
      if (w.size[1] != k || os.numel() != m * n || os.size[os.ndim - 1] != n || (in[2] >= 0 && sh(in[2]).numel() != n))
        return bad("x " + shape_text(x) + ", weight " + shape_text(w) + " -> " + shape_text(os) + " do not agree");
      if ((m + 15) / 16 > 65535) return bad("too many rows for the linear kernel");
      kernels::launch_matmul(ptr(in[0]), dt(in[0]), ptr(in[1]), dt(in[1]), out, ot, m, n, k, kernels::MatmulBatch{}, st,
                             /*b_transposed=*/true, in[2] >= 0 ? ptr(in[2]) : nullptr,
                             in[2] >= 0 ? dt(in[2]) : DType::FLOAT32);
      return Error::Ok;
    }
    case OpCode::SDPA: {
      const Shape& q = sh(in[0]);
      const Shape& k = sh(in[1]);
      const Shape& v = sh(in[2]);
      kernels::AttentionParams p;
      p.B = q.size[0]; p.H = q.size[1]; p.L = q.size[2]; p.E = q.size[3];
      p.Hkv = k.size[1]; p.S = k.size[2]; p.Ev = v.size[3];
      if (k.size[0] != p.B || v.size[0] != p.B || k.size[3] != p.E || v.size[1] != p.Hkv || v.size[2] != p.S ||
          p.Hkv == 0 || p.H % p.Hkv || os.size[0] != p.B || os.size[1] != p.H || os.size[2] != p.L ||
          os.size[3] != p.Ev || dt(in[1]) != dt(in[0]) || dt(in[2]) != dt(in[0]))
        return bad("q " + shape_text(q) + ", k " + shape_text(k) + ", v " + shape_text(v) + " do not agree");
      if (p.H > 65535 || p.B > 65535) return bad("too many heads or batches");
      p.q = ptr(in[0]); p.k = ptr(in[1]); p.v = ptr(in[2]); p.out = out;
      p.dtype = dt(in[0]); p.out_dtype = ot;
      p.qs[0] = p.H * p.L * p.E; p.qs[1] = p.L * p.E; p.qs[2] = p.E;
      p.ks[0] = p.Hkv * p.S * p.E; p.ks[1] = p.S * p.E; p.ks[2] = p.E;
      p.vs[0] = p.Hkv * p.S * p.Ev; p.vs[1] = p.S * p.Ev; p.vs[2] = p.Ev;
      p.os[0] = p.H * p.L * p.Ev; p.os[1] = p.L * p.Ev; p.os[2] = p.Ev;
      if (in[3] >= 0) {
        Shape full;
        full.ndim = 4;
        full.size[0] = p.B; full.size[1] = p.H; full.size[2] = p.L; full.size[3] = p.S;
        Strides ms;
        if (!broadcast_strides(sh(in[3]), full, &ms)) return bad("mask does not broadcast to [B, H, L, S]");
        p.mask = ptr(in[3]);
        p.mask_dtype = dt(in[3]);
        std::copy(ms.s, ms.s + 4, p.ms);
      }
      p.causal = op.arg.is_causal;
      p.scale = static_cast<float>(op.arg.scale != 0.0 ? op.arg.scale : 1.0 / std::sqrt(static_cast<double>(p.E)));
      kernels::launch_attention(p, st);
      return Error::Ok;
    }
    case OpCode::VIEW: {
      if (os.numel() != sh(in[0]).numel()) return bad("view changes the number of elements");
      const int64_t b = nbytes(os, ot);
      if (b > 0 && out != ptr(in[0])) {
        const cudaError_t e = cudaMemcpyAsync(out, ptr(in[0]), b, cudaMemcpyDeviceToDevice, st);
        if (e != cudaSuccess) return cuda_fail(e, "view copy");
      }
      return Error::Ok;
    }
    case OpCode::PERMUTE: {
      const Shape& x = sh(in[0]);
      const Strides cs = contiguous(x);
      Strides is;
      for (int j = 0; j < os.ndim; ++j) {
        const int64_t src = op.arg.dims[j];
        if (x.size[src] != os.size[j]) return bad("output " + shape_text(os) + " is not the permuted input");
        is.s[j] = cs.s[src];
      }
      kernels::launch_strided_copy(ptr(in[0]), dt(in[0]), 0, is, out, ot, 0, contiguous(os), os, st);
      return Error::Ok;
    }
    case OpCode::EXPAND: {
      Strides is;
      if (!broadcast_strides(sh(in[0]), os, &is)) return bad("input does not expand to " + shape_text(os));
      kernels::launch_strided_copy(ptr(in[0]), dt(in[0]), 0, is, out, ot, 0, contiguous(os), os, st);
      return Error::Ok;
    }
    case OpCode::CAT: {
      const int dim = static_cast<int>(op.arg.dims[0]);
      const Strides ostr = contiguous(os);
      int64_t at = 0;
      for (int32_t i : in) {
        const Shape& x = sh(i);
        if (x.ndim == 1 && x.size[0] == 0 && os.ndim != 1) continue;  // torch.cat skips legacy empty tensors
        if (x.ndim != os.ndim) return bad("inputs differ in rank");
        for (int d = 0; d < os.ndim; ++d)
          if (d != dim && x.size[d] != os.size[d]) return bad("inputs differ outside the cat dim");
        kernels::launch_strided_copy(ptr(i), dt(i), 0, contiguous(x), out, ot, at * ostr.s[dim], ostr, x, st);
        at += x.size[dim];
      }
      if (at != os.size[dim]) return bad("inputs do not add up to the output");
      return Error::Ok;
    }
    case OpCode::SLICE: {
      const Shape& x = sh(in[0]);
      const int dim = static_cast<int>(op.arg.slice_dim);
      const int64_t size = x.size[dim];
      auto clamp = [&](int64_t b) { return std::max<int64_t>(0, std::min<int64_t>(size, b < 0 ? b + size : b)); };
      const int64_t start = clamp(op.arg.slice_start), end = clamp(op.arg.slice_end), step = op.arg.slice_step;
      const int64_t len = end > start ? (end - start + step - 1) / step : 0;
      Shape sliced = x;
      sliced.size[dim] = len;
      if (sliced.numel() != os.numel()) return bad("slice of " + shape_text(x) + " does not give " + shape_text(os));
      Strides is = contiguous(x);
      const int64_t offset = start * is.s[dim];
      is.s[dim] *= step;
      kernels::launch_strided_copy(ptr(in[0]), dt(in[0]), offset, is, out, ot, 0, contiguous(sliced), sliced, st);
      return Error::Ok;
    }
    case OpCode::COPY: {
      const Shape& x = sh(in[0]);
      if (x.numel() != os.numel()) return bad("copy changes the number of elements");
      kernels::launch_strided_copy(ptr(in[0]), dt(in[0]), 0, contiguous(x), out, ot, 0, contiguous(x), x, st);
      return Error::Ok;
    }
    case OpCode::EMBEDDING: {
      const Shape& table = sh(in[0]);
      const int64_t n_ids = sh(in[1]).numel(), d = table.size[1];
      if (os.numel() != n_ids * d) return bad("output " + shape_text(os) + " is not [ids..., D]");
      kernels::launch_embedding(ptr(in[0]), dt(in[0]), ptr(in[1]), dt(in[1]), out, n_ids, table.size[0], d,
                                err_dev_, st);
      return Error::Ok;
    }
    case OpCode::ROPE: {
      const Shape& x = sh(in[0]);
      const Shape& c = sh(in[1]);
      if (sh(in[2]).size[0] != c.size[0] || sh(in[2]).size[1] != c.size[1] || sh(in[3]).numel() < 1 ||
          os.numel() != x.numel())
        return bad("cos/sin/start_pos/output shapes do not agree");
      kernels::launch_rope(ptr(in[0]), dt(in[0]), static_cast<const float*>(ptr(in[1])),
                           static_cast<const float*>(ptr(in[2])), static_cast<const int64_t*>(ptr(in[3])), out,
                           x.size[0], x.size[1], x.size[2], x.size[3], c.size[0], op.arg.interleaved, err_dev_, st);
      return Error::Ok;
    }
    case OpCode::KV_ATTENTION: case OpCode::QKV_ATTENTION: {
      // Both: append this step's k/v rows to the layer's cache, then attend (launch_kv_attention). KV_ATTENTION takes
      // q [1,T,H,D], k/v [1,T,Hkv,D]; QKV_ATTENTION one qkv [1,T,(H+2Hkv)D] and RoPEs q and k itself.
      KvCache& c = kv_[op.arg.layer];
      const Shape& q = sh(in[0]);
      const bool fused = op.code == OpCode::QKV_ATTENTION;
      const int64_t t = q.size[1];
      const int64_t h = fused ? op.arg.n_heads : q.size[2];
      const int64_t width = fused ? (h + 2 * c.hkv) * c.d : h * c.d;  // elements per q (or qkv) row
      if (fused) {
        if (q.size[0] != 1 || q.size[2] != width || os.numel() != t * h * c.d)
          return bad("qkv " + shape_text(q) + " is not [1, T, (H + 2 Hkv) D] = [1, T, " + std::to_string(width) + "]");
      } else {
        const Shape& k = sh(in[1]);
        const Shape& v = sh(in[2]);
        if (q.size[0] != 1 || k.size[0] != 1 || v.size[0] != 1 || k.size[1] != t || v.size[1] != t ||
            v.size[2] != c.hkv || v.size[3] != c.d || k.size[2] != c.hkv || k.size[3] != c.d || os.numel() != q.numel())
          return bad("q " + shape_text(q) + ", k " + shape_text(k) + ", v " + shape_text(v) + " do not agree");
      }
      if (t > INT32_MAX || h > 65535) return bad("too many rows or heads");
      if (sh(in[3]).numel() < 1) return bad("start_pos is empty");
      const auto* start_pos = static_cast<const int64_t*>(ptr(in[3]));
      const DType qt = dt(in[0]);
      const int64_t es = static_cast<int64_t>(dtype_size(qt));
      const float* cos = fused ? static_cast<const float*>(ptr(in[1])) : nullptr;
      const float* sin = fused ? static_cast<const float*>(ptr(in[2])) : nullptr;
      const int64_t positions = fused ? sh(in[1]).size[0] : 0;
      if (fused && (sh(in[2]).size[0] != positions || sh(in[1]).size[1] != c.d / 2 || sh(in[2]).size[1] != c.d / 2))
        return bad("cos/sin tables are not [P, D/2]");
      const char* base = static_cast<const char*>(ptr(in[0]));
      const void* ksrc = fused ? base + h * c.d * es : ptr(in[1]);
      const void* vsrc = fused ? base + (h + c.hkv) * c.d * es : ptr(in[2]);
      const int64_t kv_row = fused ? width : c.hkv * c.d;
      kernels::KvAttentionParams p;
      p.q = ptr(in[0]); p.q_row = width;
      p.k_cache = c.k; p.v_cache = c.v;
      p.out = out; p.out_row = h * c.d;
      p.dtype = qt;
      p.T = t; p.H = h; p.Hkv = c.hkv; p.D = c.d; p.max_seq_len = c.max_seq_len;
      p.scale = static_cast<float>(op.arg.scale != 0.0 ? op.arg.scale : 1.0 / std::sqrt(static_cast<double>(c.d)));
      p.start_pos = start_pos;
      p.cos = cos; p.sin = sin; p.rope_positions = positions; p.interleaved = op.arg.interleaved;
      p.scratch = attn_scratch_; p.counters = attn_counters_;
      p.k_new = ksrc; p.v_new = vsrc; p.kv_row = kv_row;
      kernels::launch_kv_attention(p, err_dev_, st);
      return Error::Ok;
    }
    case OpCode::SWIGLU: {
      const Shape& x = sh(in[0]);
      const int64_t f = x.size[x.ndim - 1] / 2;
      if (os.numel() * 2 != x.numel() || os.size[os.ndim - 1] != f) return bad("output is not [..., F] of x [..., 2F]");
      kernels::launch_swiglu(ptr(in[0]), dt(in[0]), out, f ? os.numel() / f : 0, f, st);
      return Error::Ok;
    }
  }
  return bad("opcode not implemented");
}

}  // namespace int4_cuda
