#include "graph.h"

#include <algorithm>

namespace int4_cuda {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::FLOAT32: return 4;
    case DType::BFLOAT16: return 2;
    case DType::FLOAT16: return 2;
    case DType::INT64: return 8;
    case DType::INT32: return 4;
    case DType::UINT8: return 1;
    case DType::INT8: return 1;
    case DType::BOOL: return 1;
  }
  return 0;
}

const char* dtype_name(DType dtype) {
  const char* name = int4_cuda_fb::EnumNameDType(dtype);
  return (name && *name) ? name : "UNKNOWN";
}

const char* op_name(OpCode code) {
  const char* name = int4_cuda_fb::EnumNameOpCode(code);
  return (name && *name) ? name : "UNKNOWN";
}

bool kv_cache_shape(const Graph& g, const Op& op, int64_t* hkv, int64_t* d, DType* dtype) {
  if (op.code == OpCode::KV_ATTENTION) {  // k [1, T, Hkv, D]
    const Value& k = g.values[op.inputs[1]];
    if (k.dims.size() != 4) return false;
    *hkv = k.dims[2].offset;
    *d = k.dims[3].offset;
    *dtype = k.dtype;
    return true;
  }
  if (op.code == OpCode::QKV_ATTENTION) {  // qkv [1, T, (H + 2 Hkv) * D]
    const Value& qkv = g.values[op.inputs[0]];
    const int64_t heads = static_cast<int64_t>(op.arg.n_heads) + 2 * static_cast<int64_t>(op.arg.n_kv_heads);
    if (qkv.dims.size() != 3 || heads <= 0) return false;
    *hkv = op.arg.n_kv_heads;
    *d = qkv.dims[2].offset / heads;
    *dtype = qkv.dtype;
    return true;
  }
  return false;
}

bool is_float(DType dtype) {
  return dtype == DType::FLOAT32 || dtype == DType::BFLOAT16 || dtype == DType::FLOAT16;
}

int64_t max_dim_size(const Dim& d, const std::vector<Symbol>& symbols) {
  if (d.symbol < 0) return d.offset;
  const Symbol& s = symbols[d.symbol];
  return std::max(d.offset + d.coeff * s.min_value, d.offset + d.coeff * s.max_value);
}

int64_t max_nbytes(const Value& v, const std::vector<Symbol>& symbols) {
  constexpr int64_t kLimit = int64_t(1) << 62;
  int64_t n = static_cast<int64_t>(dtype_size(v.dtype));
  for (const Dim& d : v.dims) {
    const int64_t s = std::max<int64_t>(0, max_dim_size(d, symbols));
    if (s != 0 && n > kLimit / s) return -1;
    n *= s;
  }
  return n;
}

}  // namespace int4_cuda
