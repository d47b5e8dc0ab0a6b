// The program half of c_api.h (libint4_cuda_runtime.so): a .pte (+ .ptd) loaded with ExecuTorch's
// Module API, methods run on CPU tensors. This is how Python reaches the GPU runtime on hosts
// where ExecuTorch's own Python runtime bindings do not work.
#include "c_api.h"

#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor_ptr.h>
#include <executorch/runtime/core/evalue.h>

#include "last_error.h"

using executorch::aten::ScalarType;
using executorch::aten::SizesType;
using executorch::extension::TensorPtr;
using executorch::extension::module::Module;
using executorch::runtime::Error;
using executorch::runtime::EValue;

struct int4_cuda_program {
  std::unique_ptr<Module> module;
  std::string pte;
  std::vector<EValue> outputs;  // of the last run; tensors point into the method's memory
};

namespace {

// "what failed: ExecuTorch error 0x.. (Name)" + the delegate's own message when it logged one.
int fail(Error e, const std::string& what, char* err, size_t err_len) {
  char code[64];
  snprintf(code, sizeof(code), " (ExecuTorch error 0x%x)", static_cast<unsigned>(e));
  std::string msg = what + code;
  if (!int4_cuda::last_error().empty()) msg += ": " + int4_cuda::last_error();
  int4_cuda::copy_to_c_buffer(msg, err, err_len);
  return static_cast<int>(e == Error::Ok ? Error::Internal : e);
}

}  // namespace

extern "C" {

int4_cuda_program* int4_cuda_program_load(const char* pte, const char* ptd, char* err, size_t err_len) {
  try {
    int4_cuda::clear_last_error();
    if (pte == nullptr) {
      int4_cuda::copy_to_c_buffer("int4_cuda: no .pte path given", err, err_len);
      return nullptr;
    }
    auto p = std::make_unique<int4_cuda_program>();
    p->pte = pte;
    p->module = (ptd != nullptr && *ptd) ? std::make_unique<Module>(pte, ptd, Module::LoadMode::File)
                                         : std::make_unique<Module>(pte, Module::LoadMode::File);
    // Full flatbuffer verification: the default (minimal) lets a damaged .pte crash the loader.
    const Error e = p->module->load(executorch::runtime::Program::Verification::InternalConsistency);
    if (e != Error::Ok) {
      fail(e, std::string(pte) + ": cannot load the program" + (ptd ? std::string(" with ") + ptd : ""), err, err_len);
      return nullptr;
    }
    return p.release();
  } catch (const std::exception& ex) {
    int4_cuda::copy_to_c_buffer(std::string("int4_cuda: ") + ex.what(), err, err_len);
  } catch (...) {
    int4_cuda::copy_to_c_buffer("int4_cuda: unknown C++ exception while loading", err, err_len);
  }
  return nullptr;
}

int int4_cuda_program_load_method(int4_cuda_program* p, const char* method, char* err, size_t err_len) {
  if (p == nullptr || method == nullptr) return fail(Error::InvalidArgument, "int4_cuda: null program or method", err, err_len);
  try {
    int4_cuda::clear_last_error();
    const Error e = p->module->load_method(method);
    if (e != Error::Ok) return fail(e, p->pte + ": cannot load method '" + method + "'", err, err_len);
    return 0;
  } catch (const std::exception& ex) {
    return fail(Error::Internal, std::string("int4_cuda: ") + ex.what(), err, err_len);
  }
}

int int4_cuda_program_run(int4_cuda_program* p, const char* method, const int4_cuda_tensor* inputs, size_t n_inputs,
                          char* err, size_t err_len) {
  if (p == nullptr || method == nullptr) return fail(Error::InvalidArgument, "int4_cuda: null program or method", err, err_len);
  try {
    const int rc = int4_cuda_program_load_method(p, method, err, err_len);
    if (rc != 0) return rc;
    int4_cuda::clear_last_error();
    p->outputs.clear();
    std::vector<TensorPtr> keep;
    std::vector<EValue> values;
    for (size_t i = 0; i < n_inputs; ++i) {
      const int4_cuda_tensor& t = inputs[i];
      if (t.ndim == -1) {
        values.emplace_back(static_cast<int64_t>(t.sizes[0]));
        continue;
      }
      if (t.ndim < 0 || t.ndim > INT4_CUDA_MAX_DIMS)
        return fail(Error::InvalidArgument, "int4_cuda: input " + std::to_string(i) + " has a bad rank", err, err_len);
      std::vector<SizesType> sizes(t.sizes, t.sizes + t.ndim);
      keep.push_back(executorch::extension::make_tensor_ptr(std::move(sizes), t.data, static_cast<ScalarType>(t.dtype)));
      values.emplace_back(*keep.back());
    }
    auto r = p->module->execute(method, values);
    if (!r.ok()) return fail(r.error(), p->pte + ": method '" + method + "' failed", err, err_len);
    p->outputs = std::move(*r);
    return 0;
  } catch (const std::exception& ex) {
    return fail(Error::Internal, std::string("int4_cuda: ") + ex.what(), err, err_len);
  }
}

size_t int4_cuda_program_num_outputs(const int4_cuda_program* p) { return p ? p->outputs.size() : 0; }

int int4_cuda_program_output(const int4_cuda_program* p, size_t i, int4_cuda_tensor* out) {
  if (p == nullptr || out == nullptr || i >= p->outputs.size()) return static_cast<int>(Error::InvalidArgument);
  const EValue& v = p->outputs[i];
  std::memset(out, 0, sizeof(*out));
  if (v.isInt()) {
    out->ndim = -1;
    out->sizes[0] = v.toInt();
    return 0;
  }
  if (!v.isTensor()) return static_cast<int>(Error::InvalidType);
  const auto& t = v.toTensor();
  if (t.dim() > INT4_CUDA_MAX_DIMS) return static_cast<int>(Error::NotSupported);
  out->data = const_cast<void*>(t.const_data_ptr());
  out->dtype = static_cast<int32_t>(t.scalar_type());
  out->ndim = static_cast<int32_t>(t.dim());
  for (int d = 0; d < out->ndim; ++d) out->sizes[d] = t.size(d);
  return 0;
}

void int4_cuda_program_free(int4_cuda_program* p) { delete p; }

}  // extern "C"
