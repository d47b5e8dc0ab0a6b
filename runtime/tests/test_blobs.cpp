#include "test_blobs.h"

#include <flatbuffers/flatbuffers.h>

namespace int4_cuda {
namespace testing {

int g_failures = 0;
namespace fb = int4_cuda_fb;

static Value tensor(DType dtype, std::vector<Dim> dims, std::string name, std::string key = "") {
  Value v;
  v.dtype = dtype;
  v.dims = std::move(dims);
  v.name = std::move(name);
  v.constant_key = std::move(key);
  return v;
}

static Dim fixed(int64_t n) { return Dim{n, 0, -1}; }

Graph sample_graph(int64_t n, int64_t k, int32_t group_size) {
  Graph g;
  g.version = static_cast<uint32_t>(fb::FormatVersion::CURRENT);
  const Dim s{0, 1, 0};
  g.values.push_back(tensor(DType::BFLOAT16, {s, fixed(k)}, "x"));                               // 0
  g.values.push_back(tensor(DType::UINT8, {fixed(n), fixed(k / 2)}, "w.qdata", "q"));             // 1
  g.values.push_back(tensor(DType::BFLOAT16, {fixed(n), fixed(k / group_size)}, "w.scale", "s")); // 2
  g.values.push_back(tensor(DType::BFLOAT16, {fixed(n), fixed(k / group_size)}, "w.zero", "z"));  // 3
  g.values.push_back(tensor(DType::BFLOAT16, {s, fixed(n)}, "mm"));                              // 4
  g.values.push_back(tensor(DType::BFLOAT16, {s, fixed(n)}, "silu"));                            // 5
  g.inputs = {0, -1};
  g.outputs = {5};
  Op mm;
  mm.code = OpCode::INT4_PLAIN_MM;
  mm.inputs = {0};
  mm.output = 4;
  mm.arg_type = OpArg::Int4MatMul;
  mm.arg.weight = 0;
  mm.name = "int4_plain_mm";
  Op act;
  act.code = OpCode::SILU;
  act.inputs = {4};
  act.output = 5;
  act.name = "silu";
  g.ops = {mm, act};
  Int4Weight w;
  w.name = "layers.0.w";
  w.layout = WeightLayout::COALESCED_N_GROUPS;
  w.n = n;
  w.k = k;
  w.group_size = group_size;
  w.qdata = 1;
  w.scale = 2;
  w.zero = 3;
  g.weights = {w};
  g.symbols = {Symbol{0, 0, 1, 16}};
  return g;
}

std::map<std::string, int64_t> sample_named_sizes(const Graph& g) {
  std::map<std::string, int64_t> out;
  for (const Value& v : g.values) {
    if (!v.is_constant()) continue;
    int64_t b = static_cast<int64_t>(dtype_size(v.dtype));
    for (const Dim& d : v.dims) b *= d.offset;
    out[v.constant_key] = b;
  }
  return out;
}

std::vector<uint8_t> build_blob(const Graph& g, const char* identifier) {
  flatbuffers::FlatBufferBuilder b(1024);
  std::vector<flatbuffers::Offset<fb::Tensor>> values;
  for (const Value& v : g.values) {
    std::vector<fb::Dim> dims;
    for (const Dim& d : v.dims) dims.emplace_back(d.offset, d.coeff, d.symbol);
    values.push_back(fb::CreateTensorDirect(b, v.dtype, &dims, v.constant_key.empty() ? nullptr : v.constant_key.c_str(),
                                            v.name.c_str()));
  }
  std::vector<flatbuffers::Offset<fb::Op>> ops;
  for (const Op& op : g.ops) {
    flatbuffers::Offset<void> arg;
    const OpArgs& a = op.arg;
    switch (op.arg_type) {
      case OpArg::ScalarArg: arg = fb::CreateScalarArg(b, a.scalar).Union(); break;
      case OpArg::DimsArg: arg = fb::CreateDimsArgDirect(b, &a.dims, a.keepdim).Union(); break;
      case OpArg::SliceArg: arg = fb::CreateSliceArg(b, a.slice_dim, a.slice_start, a.slice_end, a.slice_step).Union(); break;
      case OpArg::NormArg: arg = fb::CreateNormArg(b, a.eps).Union(); break;
      case OpArg::SdpaArg: arg = fb::CreateSdpaArg(b, a.is_causal, a.scale).Union(); break;
      case OpArg::Int4MatMul: arg = fb::CreateInt4MatMul(b, a.weight).Union(); break;
      case OpArg::RopeArg: arg = fb::CreateRopeArg(b, a.interleaved).Union(); break;
      case OpArg::KvAttentionArg: arg = fb::CreateKvAttentionArg(b, a.layer, a.max_seq_len, a.scale).Union(); break;
      default: break;
    }
    std::vector<uint32_t> outs = {op.output};
    if (op.output2 != UINT32_MAX) outs.push_back(op.output2);
    ops.push_back(fb::CreateOpDirect(b, op.code, &op.inputs, &outs, op.arg_type, arg, op.name.c_str()));
  }
  std::vector<flatbuffers::Offset<fb::Int4Weight>> weights;
  for (const Int4Weight& w : g.weights)
    weights.push_back(fb::CreateInt4WeightDirect(b, w.name.c_str(), w.layout, w.n, w.k, w.group_size, w.qdata,
                                                 w.scale, w.zero));
  std::vector<flatbuffers::Offset<fb::SymbolBinding>> symbols;
  for (const Symbol& s : g.symbols)
    symbols.push_back(fb::CreateSymbolBinding(b, s.value, s.dim, s.min_value, s.max_value));
  auto root = fb::CreateGraphDirect(b, g.version, &values, &g.inputs, &g.outputs, &ops, &weights, &symbols);
  b.Finish(root, identifier);
  return std::vector<uint8_t>(b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize());
}

}  // namespace testing
}  // namespace int4_cuda
