// The decoded, verified int4_cuda delegate graph: plain C++ values copied out of the flatbuffer
// (schema/int4_cuda.fbs) by verify_blob(), so the blob itself may be freed after init().
//
// Invariant: a Graph returned by verify_blob() has every value/op/weight/symbol index in range,
// every op's arity, argument and dtypes checked, and every value defined (constant, graph input or
// an earlier op's output) before it is read. Code downstream indexes without checking.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "int4_cuda_generated.h"

namespace int4_cuda {

using int4_cuda_fb::DType;
using int4_cuda_fb::OpArg;
using int4_cuda_fb::OpCode;
using int4_cuda_fb::WeightLayout;

// Largest tensor rank the kernels index (fixed-size shape arrays in kernel parameters).
constexpr int kMaxDims = 8;

// size = offset + coeff * symbol value (symbol < 0: static, size = offset).
struct Dim {
  int64_t offset = 0;
  int64_t coeff = 0;
  int32_t symbol = -1;
};

struct Value {
  DType dtype = DType::FLOAT32;
  std::vector<Dim> dims;
  std::string constant_key;  // non-empty: a constant from the NamedDataMap
  std::string name;
  bool is_constant() const { return !constant_key.empty(); }
};

// The union OpArg flattened: only the fields of `Op::arg_type` are meaningful.
struct OpArgs {
  double scalar = 0.0;                   // ScalarArg
  std::vector<int64_t> dims;             // DimsArg
  bool keepdim = false;                  // DimsArg
  int64_t slice_dim = 0, slice_start = 0, slice_end = 0, slice_step = 1;  // SliceArg
  double eps = 0.0;                      // NormArg
  bool is_causal = false;                // SdpaArg
  double scale = 0.0;                    // SdpaArg, KvAttentionArg (0: 1/sqrt(head dim))
  uint32_t weight = 0;                   // Int4MatMul
  bool interleaved = false;              // RopeArg
  int32_t layer = 0;                     // KvAttentionArg, QkvAttentionArg
  int64_t max_seq_len = 0;               // KvAttentionArg, QkvAttentionArg
  int32_t n_heads = 0, n_kv_heads = 0;   // QkvAttentionArg (interleaved: its RoPE convention)
};

struct Op {
  OpCode code = OpCode::INT4_PLAIN_MM;
  std::vector<int32_t> inputs;  // -1: absent optional input
  uint32_t output = 0;          // every op has one output (checked) ...
  uint32_t output2 = UINT32_MAX;  // ... ADD_RMS_NORM a second one (its normed output; checked)
  OpArg arg_type = OpArg::NONE;
  OpArgs arg;
  std::string name;
};

struct Int4Weight {
  std::string name;
  WeightLayout layout = WeightLayout::COALESCED_N_GROUPS;
  int64_t n = 0, k = 0;
  int32_t group_size = 0;
  uint32_t qdata = 0, scale = 0, zero = 0;
};

struct Symbol {
  uint32_t value = 0, dim = 0;
  int64_t min_value = 0, max_value = 0;
};

struct Graph {
  uint32_t version = 0;
  std::vector<Value> values;
  std::vector<int32_t> inputs;  // -1: scalar (SymInt) argument, ignored
  std::vector<uint32_t> outputs;
  std::vector<Op> ops;
  std::vector<Int4Weight> weights;
  std::vector<Symbol> symbols;
};

// KV_ATTENTION / QKV_ATTENTION: the shape of the layer's caches, [max_seq_len, hkv, d] in `dtype`.
// False for other ops. On a verified graph both ops of a layer agree (blob_verifier checks).
bool kv_cache_shape(const Graph& g, const Op& op, int64_t* hkv, int64_t* d, DType* dtype);

// Bytes of one element; 0 for a dtype outside the schema.
size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);
const char* op_name(OpCode code);
bool is_float(DType dtype);

// Size of one dim for the given symbol values (sym[i] = value of symbol i).
inline int64_t dim_size(const Dim& d, const int64_t* sym) {
  return d.symbol < 0 ? d.offset : d.offset + d.coeff * sym[d.symbol];
}

// Largest size a dim can take over the symbols' declared ranges (memory planning).
int64_t max_dim_size(const Dim& d, const std::vector<Symbol>& symbols);

// Largest byte size of a value over the symbols' ranges (product of max_dim_size * dtype size).
// Returns -1 on overflow past 2^62.
int64_t max_nbytes(const Value& v, const std::vector<Symbol>& symbols);

}  // namespace int4_cuda
