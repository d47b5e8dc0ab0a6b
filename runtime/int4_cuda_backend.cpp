// Backend glue: registers "Int4CudaBackend" with ExecuTorch (at load time of this library) and
// adapts ExecuTorch's init/execute/destroy to the verifier (blob_verifier.h) and the CUDA
// executor (executor.h).
//
// init():    verify the blob (identifier, version, every index, layouts, shapes, named-data sizes)
//            -> free the blob -> check each constant's sha256 against its key (constant_hash.h)
//            -> upload constants (host copies freed one by one) -> plan the arena -> allocate KV
//            caches. Any failure: an Error + one log line; nothing aborts.
// execute(): CPU tensors in, CPU tensors out; SymInt arguments (graph input id -1) are ignored.
//
// Backend option (ExecuTorch's runtime::set_option("Int4CudaBackend", ...)): bool "cuda_graph"
// turns CUDA-graph capture/replay of repeated step shapes on or off (executor.h says how). The
// default is off, or the environment variable INT4_CUDA_GRAPH=1 at load time turns it on.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <executorch/runtime/backend/interface.h>
#include <executorch/runtime/backend/options.h>
#include <executorch/runtime/core/error.h>
#include <executorch/runtime/core/evalue.h>
#include <executorch/runtime/core/exec_aten/util/tensor_util.h>
#include <executorch/runtime/platform/log.h>

#include "blob_verifier.h"
#include "constant_hash.h"
#include "cuda_device.h"
#include "executor.h"
#include "last_error.h"

namespace int4_cuda {
namespace {

using executorch::aten::ScalarType;
using executorch::aten::SizesType;
using executorch::aten::Tensor;
using executorch::runtime::ArrayRef;
using executorch::runtime::BackendExecutionContext;
using executorch::runtime::BackendInitContext;
using executorch::runtime::BackendInterface;
using executorch::runtime::BackendOption;
using executorch::runtime::BackendOptionContext;
using executorch::runtime::CompileSpec;
using executorch::runtime::DelegateHandle;
using executorch::runtime::Error;
using executorch::runtime::EValue;
using executorch::runtime::FreeableBuffer;
using executorch::runtime::NamedDataMap;
using executorch::runtime::Result;
using executorch::runtime::Span;

constexpr const char* kBackendName = "Int4CudaBackend";
constexpr const char* kCudaGraphOption = "cuda_graph";

bool cuda_graph_default() {
  const char* v = std::getenv("INT4_CUDA_GRAPH");
  return v != nullptr && v[0] == '1';
}

// ExecuTorch ScalarType <-> schema DType (the subset the schema has).
bool to_dtype(ScalarType t, DType* out) {
  switch (t) {
    case ScalarType::Float: *out = DType::FLOAT32; return true;
    case ScalarType::BFloat16: *out = DType::BFLOAT16; return true;
    case ScalarType::Half: *out = DType::FLOAT16; return true;
    case ScalarType::Long: *out = DType::INT64; return true;
    case ScalarType::Int: *out = DType::INT32; return true;
    case ScalarType::Byte: *out = DType::UINT8; return true;
    case ScalarType::Char: *out = DType::INT8; return true;
    case ScalarType::Bool: *out = DType::BOOL; return true;
    default: return false;
  }
}

// What init() returns as the DelegateHandle: the executor plus per-step host scratch sized once.
struct Delegate {
  std::unique_ptr<Executor> executor;
  std::vector<HostTensor> inputs;
  std::vector<void*> outputs;
};

class Int4CudaBackend final : public BackendInterface {
 public:
  bool is_available() const override {
    std::string reason;
    if (cuda_device_usable(&reason)) return true;
    report(Error::NotSupported, reason);
    return false;
  }

  Result<DelegateHandle*> init(BackendInitContext& context, FreeableBuffer* processed,
                               ArrayRef<CompileSpec> /*compile_specs*/) const override {
    clear_last_error();
    const NamedDataMap* named = context.get_named_data_map();
    // Named data read while verifying is kept for the upload, then freed key by key.
    std::map<std::string, FreeableBuffer> loaded;
    const NamedDataSize named_size = [&](const std::string& key) -> int64_t {
      auto it = loaded.find(key);
      if (it != loaded.end()) return static_cast<int64_t>(it->second.size());
      if (named == nullptr) return -1;
      Result<FreeableBuffer> r = named->get_data(key);
      if (!r.ok() || !r->data_safe().ok()) return -1;
      const int64_t size = static_cast<int64_t>(r->size());
      loaded.emplace(key, std::move(*r));
      return size;
    };

    Result<const void*> blob = processed->data_safe();
    if (!blob.ok()) return report(Error::InvalidProgram, "int4_cuda: the delegate blob is not addressable");
    const void* data = *blob;
    std::vector<uint32_t> aligned;  // flatbuffers needs 4-byte alignment
    if (reinterpret_cast<uintptr_t>(data) % 4 != 0) {
      aligned.resize((processed->size() + 3) / 4);
      std::memcpy(aligned.data(), data, processed->size());
      data = aligned.data();
    }
    Graph graph;
    std::string message;
    const Error e = verify_blob(data, processed->size(), named_size, &graph, &message);
    if (e != Error::Ok) return report(e, message);
    processed->Free();

    // Every constant against its content-hash key (constant_hash.h) before the first GPU
    // allocation: a flipped weight byte is an error here, not silent garbage. Here rather than in
    // fetch() below: Executor::create turns a failed fetch into its own "could not be read" message,
    // and all the bytes are already in `loaded` (the verifier read them), so they hash in parallel.
    {
      std::vector<ConstantBytes> constants;
      constants.reserve(loaded.size());
      for (const auto& [key, buffer] : loaded) constants.push_back({key, *buffer.data_safe(), buffer.size()});
      const Error he = check_constant_hashes(constants);
      if (he != Error::Ok) return he;  // reported, naming the key
    }

    ConstantSource source;
    source.fetch = [&](const std::string& key, const void** bytes, size_t* size) {
      // Every constant the executor asks for was read by the verifier and hashed above; bytes read
      // only now (a key fetched again after release) are hashed here, so none reach the GPU unchecked.
      const bool fresh = loaded.count(key) == 0;
      if (named_size(key) < 0) return false;
      const FreeableBuffer& b = loaded.at(key);
      if (fresh && check_constant_hash(key, *b.data_safe(), b.size()) != Error::Ok) return false;
      *bytes = *b.data_safe();
      *size = b.size();
      return true;
    };
    source.release = [&](const std::string& key) { loaded.erase(key); };

    auto delegate = std::make_unique<Delegate>();
    const Error ce = Executor::create(std::move(graph), source, &delegate->executor);
    if (ce != Error::Ok) return ce;  // create() reported it
    delegate->inputs.resize(delegate->executor->graph().inputs.size());
    delegate->outputs.resize(delegate->executor->graph().outputs.size());
    return delegate.release();
  }

  Error execute(BackendExecutionContext& /*context*/, DelegateHandle* handle, Span<EValue*> args) const override {
    auto* d = static_cast<Delegate*>(handle);
    if (d == nullptr) return report(Error::DelegateInvalidHandle, "int4_cuda: execute() without a delegate handle");
    Executor& ex = *d->executor;
    const Graph& g = ex.graph();
    const size_t n_in = g.inputs.size(), n_out = g.outputs.size();
    if (args.size() != n_in + n_out)
      return reportf(Error::InvalidArgument, "int4_cuda: the delegate takes %zu inputs and %zu outputs, got %zu "
                     "arguments", n_in, n_out, args.size());
    for (size_t i = 0; i < n_in; ++i) {
      if (g.inputs[i] < 0) continue;  // a SymInt: sizes are bound from the tensors
      if (args[i] == nullptr || !args[i]->isTensor())
        return reportf(Error::InvalidArgument, "int4_cuda: delegate argument %zu must be a tensor", i);
      const Tensor& t = args[i]->toTensor();
      HostTensor& h = d->inputs[i];
      if (!to_dtype(t.scalar_type(), &h.dtype) || t.dim() > kMaxDims)
        return reportf(Error::InvalidArgument, "int4_cuda: delegate input %zu has an unsupported dtype %d or "
                       "rank %zd", i, static_cast<int>(t.scalar_type()), static_cast<ssize_t>(t.dim()));
      h.data = t.const_data_ptr();
      h.ndim = static_cast<int>(t.dim());
      for (int k = 0; k < h.ndim; ++k) h.sizes[k] = t.size(k);
    }
    Error e = ex.bind(d->inputs.data(), n_in);
    if (e != Error::Ok) return e;
    for (size_t j = 0; j < n_out; ++j) {
      EValue* o = args[n_in + j];
      const uint32_t v = g.outputs[j];
      if (o == nullptr || !o->isTensor())
        return reportf(Error::InvalidArgument, "int4_cuda: delegate output %zu must be a tensor", j);
      Tensor& t = o->toTensor();
      DType dt;
      if (!to_dtype(t.scalar_type(), &dt) || dt != g.values[v].dtype)
        return reportf(Error::InvalidArgument, "int4_cuda: delegate output %zu is %d, the blob computes %s", j,
                       static_cast<int>(t.scalar_type()), dtype_name(g.values[v].dtype));
      const kernels::Shape& s = ex.shape(v);
      SizesType sizes[kMaxDims];
      for (int k = 0; k < s.ndim; ++k) sizes[k] = static_cast<SizesType>(s.size[k]);
      if (executorch::runtime::resize_tensor(t, ArrayRef<SizesType>(sizes, s.ndim)) != Error::Ok)
        return reportf(Error::InvalidArgument, "int4_cuda: cannot resize delegate output %zu to this step's "
                       "shape (above the exported upper bound?)", j);
      d->outputs[j] = t.mutable_data_ptr();
    }
    return ex.run(d->inputs.data(), d->outputs.data(), cuda_graph_.load());
  }

  Error set_option(BackendOptionContext& /*context*/, const Span<BackendOption>& options) override {
    for (const BackendOption& o : options) {
      if (std::strcmp(o.key, kCudaGraphOption) != 0)
        return reportf(Error::InvalidArgument, "int4_cuda: unknown backend option '%s' (known: %s)", o.key,
                       kCudaGraphOption);
      const bool* b = std::get_if<bool>(&o.value);
      if (b == nullptr) return reportf(Error::InvalidArgument, "int4_cuda: option '%s' takes a bool", o.key);
      cuda_graph_.store(*b);
    }
    return Error::Ok;
  }

  Error get_option(BackendOptionContext& /*context*/, Span<BackendOption>& options) override {
    for (BackendOption& o : options)
      if (std::strcmp(o.key, kCudaGraphOption) == 0) o.value = cuda_graph_.load();
    return Error::Ok;
  }

  void destroy(DelegateHandle* handle) const override { delete static_cast<Delegate*>(handle); }

 private:
  std::atomic<bool> cuda_graph_{cuda_graph_default()};
};

Int4CudaBackend g_backend;
const executorch::runtime::Backend g_entry{kBackendName, &g_backend};
// First registration of a name wins; a second copy of this library in one process is harmless.
const Error g_registered = executorch::runtime::register_backend(g_entry);

}  // namespace
}  // namespace int4_cuda
