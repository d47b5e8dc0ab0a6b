#include "blob_verifier.h"

#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <map>
#include <utility>
#include <vector>

#include <flatbuffers/flatbuffers.h>

namespace int4_cuda {
namespace {

using executorch::runtime::Error;
namespace fb = int4_cuda_fb;

// The delegate blob's limits: beyond these something is corrupt or not meant for this runtime.
constexpr size_t kMaxFlatbufferDepth = 64;
constexpr size_t kMaxFlatbufferTables = 10'000'000;

// Group sizes the int4_plain_mm kernels take (shims/int4_plain_mm.h; Python SUPPORTED_GROUP_SIZES).
constexpr int32_t kGroupSizes[] = {32, 64, 128, 256};

std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  return buf;
}

std::string dims_text(const std::vector<int64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

// Names and keys come from the blob: a damaged one may hold control bytes (a newline would split the
// one-line message; issue #8 fuzzer). Those are written as \xNN.
std::string one_line(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (unsigned char ch : text) {
    if (ch < 0x20 || ch == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", ch);
      out += buf;
    } else {
      out += static_cast<char>(ch);
    }
  }
  return out;
}

// Collects the first failure; later checks are skipped once one failed.
class Checker {
 public:
  explicit Checker(std::string* message) : message_(message) {}
  bool ok() const { return error_ == Error::Ok; }
  Error error() const { return error_; }
  bool fail(Error e, std::string text) {
    if (ok()) {
      error_ = e;
      if (message_) *message_ = one_line(text);
    }
    return false;
  }

 private:
  Error error_ = Error::Ok;
  std::string* message_;
};

// --- decoding (after flatbuffers::Verifier accepted the buffer) ----------------------------------
void decode(const fb::Graph& g, Graph* out) {
  out->version = g.version();
  if (auto* values = g.values()) {
    for (const fb::Tensor* t : *values) {
      Value v;
      v.dtype = t->dtype();
      if (t->dims())
        for (const fb::Dim* d : *t->dims()) v.dims.push_back(Dim{d->offset(), d->coeff(), d->symbol()});
      if (t->constant_key()) v.constant_key = t->constant_key()->str();
      if (t->name()) v.name = t->name()->str();
      out->values.push_back(std::move(v));
    }
  }
  if (g.inputs()) out->inputs.assign(g.inputs()->begin(), g.inputs()->end());
  if (g.outputs()) out->outputs.assign(g.outputs()->begin(), g.outputs()->end());
  if (auto* ops = g.ops()) {
    for (const fb::Op* o : *ops) {
      Op op;
      op.code = o->code();
      if (o->inputs()) op.inputs.assign(o->inputs()->begin(), o->inputs()->end());
      // Outputs are checked below to be exactly one (two for ADD_RMS_NORM); a wrong count is kept
      // as the sentinel UINT32_MAX in `output`.
      const size_t n_out = op.code == OpCode::ADD_RMS_NORM ? 2 : 1;
      op.output = (o->outputs() && o->outputs()->size() == n_out) ? o->outputs()->Get(0) : UINT32_MAX;
      if (n_out == 2 && op.output != UINT32_MAX) op.output2 = o->outputs()->Get(1);
      // A union may carry a type with no table (the Verifier accepts it): treat it as absent, so
      // the per-op rule reports the missing argument instead of dereferencing null.
      op.arg_type = o->arg() != nullptr ? o->arg_type() : OpArg::NONE;
      if (o->name()) op.name = o->name()->str();
      OpArgs& a = op.arg;
      switch (op.arg_type) {
        case OpArg::ScalarArg: a.scalar = o->arg_as_ScalarArg()->value(); break;
        case OpArg::DimsArg:
          if (auto* d = o->arg_as_DimsArg()->dims()) a.dims.assign(d->begin(), d->end());
          a.keepdim = o->arg_as_DimsArg()->keepdim();
          break;
        case OpArg::SliceArg: {
          auto* s = o->arg_as_SliceArg();
          a.slice_dim = s->dim(); a.slice_start = s->start(); a.slice_end = s->end(); a.slice_step = s->step();
          break;
        }
        case OpArg::NormArg: a.eps = o->arg_as_NormArg()->eps(); break;
        case OpArg::SdpaArg: a.is_causal = o->arg_as_SdpaArg()->is_causal(); a.scale = o->arg_as_SdpaArg()->scale(); break;
        case OpArg::Int4MatMul: a.weight = o->arg_as_Int4MatMul()->weight(); break;
        case OpArg::RopeArg: a.interleaved = o->arg_as_RopeArg()->interleaved(); break;
        case OpArg::KvAttentionArg: {
          auto* k = o->arg_as_KvAttentionArg();
          a.layer = k->layer(); a.max_seq_len = k->max_seq_len(); a.scale = k->scale();
          break;
        }
        case OpArg::QkvAttentionArg: {
          auto* k = o->arg_as_QkvAttentionArg();
          a.layer = k->layer(); a.max_seq_len = k->max_seq_len(); a.scale = k->scale();
          a.n_heads = k->n_heads(); a.n_kv_heads = k->n_kv_heads(); a.interleaved = k->interleaved();
          break;
        }
        default: break;
      }
      out->ops.push_back(std::move(op));
    }
  }
  if (auto* ws = g.int4_weights()) {
    for (const fb::Int4Weight* w : *ws) {
      Int4Weight x;
      if (w->name()) x.name = w->name()->str();
      x.layout = w->layout(); x.n = w->n(); x.k = w->k(); x.group_size = w->group_size();
      x.qdata = w->qdata(); x.scale = w->scale(); x.zero = w->zero();
      out->weights.push_back(std::move(x));
    }
  }
  if (auto* ss = g.symbols()) {
    for (const fb::SymbolBinding* s : *ss)
      out->symbols.push_back(Symbol{s->value(), s->dim(), s->min_value(), s->max_value()});
  }
}

// flatbuffers 2.0.8's Verifier checks a vector's length prefix for 4-byte alignment but not its
// elements: a damaged blob can place [Dim] (8-byte struct) or [long] elements at 4 mod 8, and
// reading them in place is undefined behaviour (found by the fuzzer, UBSan). The builder always
// aligns them, so a blob that is not aligned is corrupt. Offsets are relative to the buffer start,
// as the Verifier's own alignment checks are.
template <typename V>
bool aligned_elements(const V* vec, const uint8_t* base, size_t align) {
  return vec == nullptr || (reinterpret_cast<const uint8_t*>(vec->Data()) - base) % align == 0;
}

bool vectors_aligned(const fb::Graph& g, const uint8_t* base) {
  if (auto* values = g.values())
    for (const fb::Tensor* t : *values)
      if (!aligned_elements(t->dims(), base, alignof(fb::Dim))) return false;
  if (auto* ops = g.ops())
    for (const fb::Op* o : *ops)
      if (o->arg() != nullptr && o->arg_type() == OpArg::DimsArg &&
          !aligned_elements(o->arg_as_DimsArg()->dims(), base, alignof(int64_t)))
        return false;
  return true;
}

// --- per-op rules --------------------------------------------------------------------------------
struct OpRule {
  int min_inputs, max_inputs;  // max -1: unbounded (CAT)
  OpArg arg;                   // required arg type (NONE: none)
  bool arg_optional;           // binary ops: ScalarArg iff one input
};

OpRule rule_of(OpCode c) {
  switch (c) {
    case OpCode::INT4_PLAIN_MM: return {1, 1, OpArg::Int4MatMul, false};
    case OpCode::ADD: case OpCode::SUB: case OpCode::MUL: case OpCode::DIV:
      return {1, 2, OpArg::ScalarArg, true};
    case OpCode::NEG: case OpCode::RSQRT: case OpCode::SILU: case OpCode::SIGMOID:
      return {1, 1, OpArg::NONE, false};
    case OpCode::POW: return {1, 1, OpArg::ScalarArg, false};
    case OpCode::MEAN: return {1, 1, OpArg::DimsArg, false};
    case OpCode::RMS_NORM: return {2, 2, OpArg::NormArg, false};
    case OpCode::SOFTMAX: return {1, 1, OpArg::DimsArg, false};
    case OpCode::BMM: case OpCode::MATMUL: return {2, 2, OpArg::NONE, false};
    case OpCode::LINEAR: return {3, 3, OpArg::NONE, false};
    case OpCode::SDPA: return {4, 4, OpArg::SdpaArg, false};
    case OpCode::VIEW: case OpCode::EXPAND: case OpCode::COPY: return {1, 1, OpArg::NONE, false};
    case OpCode::PERMUTE: return {1, 1, OpArg::DimsArg, false};
    case OpCode::CAT: return {1, -1, OpArg::DimsArg, false};
    case OpCode::SLICE: return {1, 1, OpArg::SliceArg, false};
    case OpCode::EMBEDDING: return {2, 2, OpArg::NONE, false};
    case OpCode::ROPE: return {4, 4, OpArg::RopeArg, false};
    case OpCode::KV_ATTENTION: return {4, 4, OpArg::KvAttentionArg, false};
    case OpCode::SWIGLU: return {1, 1, OpArg::NONE, false};
    case OpCode::QKV_ATTENTION: return {4, 4, OpArg::QkvAttentionArg, false};
    case OpCode::ADD_RMS_NORM: return {3, 3, OpArg::NormArg, false};
  }
  return {-1, -1, OpArg::NONE, false};
}

// Which input slots may be -1 (absent optional input).
bool optional_input(OpCode c, size_t slot) {
  return (c == OpCode::RMS_NORM && slot == 1) || (c == OpCode::ADD_RMS_NORM && slot == 2) || (c == OpCode::SDPA && slot == 3) || (c == OpCode::LINEAR && slot == 2);
}

class Verifier {
 public:
  Verifier(const Graph& g, const NamedDataSize& named_size, std::string* message)
      : g_(g), named_size_(named_size), c_(message) {}

  Error run() {
    values() && references() && ops() && constants() && weights() && kv_layers();
    return c_.error();
  }

 private:
  const Graph& g_;
  const NamedDataSize& named_size_;
  Checker c_;

  size_t nv() const { return g_.values.size(); }
  const std::string& vname(size_t v) const { return g_.values[v].name; }

  bool vid(int64_t i, const std::string& what, bool optional = false) {
    if ((optional && i == -1) || (i >= 0 && static_cast<size_t>(i) < nv())) return true;
    return c_.fail(Error::InvalidProgram,
                   format("int4_cuda: %s refers to value %lld, but the blob has %zu values; the blob is "
                          "corrupt: re-export the model",
                          what.c_str(), static_cast<long long>(i), nv()));
  }

  bool values() {
    for (const Value& v : g_.values) {
      if (dtype_size(v.dtype) == 0)
        return c_.fail(Error::InvalidProgram,
                       format("int4_cuda: value %s has unknown dtype %d; re-export the model with this "
                              "version of int4_cuda", v.name.c_str(), static_cast<int>(v.dtype)));
      if (v.dims.size() > static_cast<size_t>(kMaxDims))
        return c_.fail(Error::NotSupported,
                       format("int4_cuda: value %s has %zu dims; the CUDA kernels handle at most %d",
                              v.name.c_str(), v.dims.size(), kMaxDims));
      for (const Dim& d : v.dims) {
        if (d.symbol >= static_cast<int64_t>(g_.symbols.size()))
          return c_.fail(Error::InvalidProgram,
                         format("int4_cuda: value %s uses undeclared symbol %d (the blob declares %zu); "
                                "the blob is corrupt: re-export the model",
                                v.name.c_str(), d.symbol, g_.symbols.size()));
        if (d.symbol < -1 || (d.symbol < 0 && d.offset < 0))
          return c_.fail(Error::InvalidProgram,
                         format("int4_cuda: value %s has a negative static dimension %lld; the blob is "
                                "corrupt: re-export the model", v.name.c_str(), static_cast<long long>(d.offset)));
      }
    }
    return true;
  }

  bool references() {
    for (int32_t i : g_.inputs)
      if (!vid(i, "a graph input", true)) return false;
    for (uint32_t i : g_.outputs)
      if (!vid(i, "a graph output")) return false;
    for (const Symbol& s : g_.symbols) {
      if (!vid(s.value, "a symbol binding")) return false;
      if (s.dim >= g_.values[s.value].dims.size())
        return c_.fail(Error::InvalidProgram,
                       format("int4_cuda: a symbol binds to dim %u of %s, which has fewer dims; the blob "
                              "is corrupt: re-export the model", s.dim, vname(s.value).c_str()));
      bool is_input = false;
      for (int32_t i : g_.inputs) is_input |= (i == static_cast<int64_t>(s.value));
      if (!is_input)
        return c_.fail(Error::InvalidProgram,
                       format("int4_cuda: a symbol binds to %s, which is not a graph input; the blob is "
                              "corrupt: re-export the model", vname(s.value).c_str()));
      if (s.min_value < 0 || s.max_value < s.min_value)
        return c_.fail(Error::InvalidProgram,
                       format("int4_cuda: the symbol bound to %s dim %u has range %lld..%lld; re-export "
                              "with torch.export.Dim(min=..., max=...) bounds", vname(s.value).c_str(), s.dim,
                              static_cast<long long>(s.min_value), static_cast<long long>(s.max_value)));
    }
    return symbolic_dims();
  }

  // Every symbolic dim, offset + coeff * symbol, must stay in 0..2^62 over its symbol's range with
  // no int64 overflow: max_nbytes(), the memory planner and the executor compute it unchecked
  // (issue #8: the fuzzer found a signed overflow in max_dim_size with a damaged coeff).
  bool symbolic_dims() {
    constexpr int64_t kLimit = int64_t(1) << 62;
    for (const Value& v : g_.values) {
      for (size_t i = 0; i < v.dims.size(); ++i) {
        const Dim& d = v.dims[i];
        if (d.symbol < 0) continue;
        const Symbol& s = g_.symbols[d.symbol];
        for (int64_t x : {s.min_value, s.max_value}) {
          int64_t size = 0;
          if (__builtin_mul_overflow(d.coeff, x, &size) || __builtin_add_overflow(size, d.offset, &size) ||
              size < 0 || size > kLimit)
            return c_.fail(Error::InvalidProgram,
                           format("int4_cuda: value %s dim %zu (%lld + %lld * s%d) is out of range for symbol "
                                  "values %lld..%lld; the blob is corrupt: re-export the model",
                                  v.name.c_str(), i, static_cast<long long>(d.offset),
                                  static_cast<long long>(d.coeff), d.symbol, static_cast<long long>(s.min_value),
                                  static_cast<long long>(s.max_value)));
        }
      }
    }
    return true;
  }

  bool op_fail(const Op& op, const std::string& what) {
    return c_.fail(Error::NotSupported, format("int4_cuda: op %s (%s) %s", op.name.c_str(),
                                               op_name(op.code), what.c_str()));
  }

  DType dt(int32_t v) const { return g_.values[v].dtype; }
  size_t rank(int32_t v) const { return g_.values[v].dims.size(); }
  bool static_dim(int32_t v, size_t d, int64_t* size) const {
    const Dim& x = g_.values[v].dims[d];
    if (x.symbol >= 0) return false;
    *size = x.offset;
    return true;
  }

  bool ops() {
    std::vector<char> defined(nv(), 0);
    for (int32_t i : g_.inputs)
      if (i >= 0) defined[i] = 1;
    for (size_t v = 0; v < nv(); ++v)
      if (g_.values[v].is_constant()) defined[v] = 1;
    for (const Op& op : g_.ops) {
      const OpRule r = rule_of(op.code);
      if (r.min_inputs < 0)
        return c_.fail(Error::NotSupported,
                       format("int4_cuda: op %s has opcode %d, which this runtime does not know; use a "
                              "runtime as new as the exporter", op.name.c_str(), static_cast<int>(op.code)));
      for (size_t s = 0; s < op.inputs.size(); ++s)
        if (!vid(op.inputs[s], "op " + op.name + " input", optional_input(op.code, s))) return false;
      if (op.output == UINT32_MAX)
        return op_fail(op, format("must have exactly %d output(s); the blob is corrupt: re-export the model",
                                  op.code == OpCode::ADD_RMS_NORM ? 2 : 1));
      if (!vid(op.output, "op " + op.name + " output")) return false;
      if (op.code == OpCode::ADD_RMS_NORM) {
        if (!vid(op.output2, "op " + op.name + " output")) return false;
      }
      const int n_in = static_cast<int>(op.inputs.size());
      if (n_in < r.min_inputs || (r.max_inputs >= 0 && n_in > r.max_inputs))
        return op_fail(op, format("has %d inputs, expected %d..%d; the blob is corrupt: re-export the model",
                                  n_in, r.min_inputs, r.max_inputs));
      const OpArg want = (r.arg_optional && n_in == 2) ? OpArg::NONE : r.arg;
      if (want != OpArg::NONE && op.arg_type != want)
        return op_fail(op, format("needs a %s argument, found %s; the blob is corrupt: re-export the model",
                                  fb::EnumNameOpArg(want), fb::EnumNameOpArg(op.arg_type)));
      for (int32_t i : op.inputs)
        if (i >= 0 && !defined[i])
          return op_fail(op, format("reads %s before any op computes it; the blob is corrupt: re-export "
                                    "the model", vname(i).c_str()));
      if (defined[op.output])
        return op_fail(op, format("writes %s, which is a constant, a graph input or another op's output; "
                                  "the blob is corrupt: re-export the model", vname(op.output).c_str()));
      defined[op.output] = 1;
      if (op.output2 != UINT32_MAX) {
        if (defined[op.output2])
          return op_fail(op, format("writes %s, which is a constant, a graph input or another op's output; "
                                    "the blob is corrupt: re-export the model", vname(op.output2).c_str()));
        defined[op.output2] = 1;
      }
      if (!op_types(op)) return false;
    }
    for (uint32_t o : g_.outputs)
      if (!defined[o])
        return c_.fail(Error::InvalidProgram,
                       format("int4_cuda: graph output %s is never computed; the blob is corrupt: re-export "
                              "the model", vname(o).c_str()));
    return true;
  }

  // Dtypes, ranks and static sizes the kernels rely on (shape agreement of dynamic dims is checked
  // per step by the executor, on the host).
  bool op_types(const Op& op) {
    const auto& in = op.inputs;
    const DType out = dt(op.output);
    const OpArgs& a = op.arg;
    switch (op.code) {
      case OpCode::INT4_PLAIN_MM: {
        // The kernels: bf16 -> bf16 (int4_cuda_int4_plain_mm) or f32 -> f32 (..._f32).
        if (dt(in[0]) != out || (out != DType::BFLOAT16 && out != DType::FLOAT32))
          return op_fail(op, format("takes BFLOAT16 or FLOAT32 x and the same output dtype, found %s -> %s; "
                                    "export the model with --dtype bf16 or fp32",
                                    dtype_name(dt(in[0])), dtype_name(out)));
        if (a.weight >= g_.weights.size())
          return op_fail(op, format("refers to int4 weight %u of %zu; the blob is corrupt: re-export the model",
                                    a.weight, g_.weights.size()));
        const Int4Weight& w = g_.weights[a.weight];
        int64_t k = 0, n = 0;
        if (rank(in[0]) < 1 || !static_dim(in[0], rank(in[0]) - 1, &k) || k != w.k)
          return op_fail(op, format("x's last dim must be K=%lld of weight '%s'", static_cast<long long>(w.k),
                                    w.name.c_str()));
        if (rank(op.output) < 1 || !static_dim(op.output, rank(op.output) - 1, &n) || n != w.n)
          return op_fail(op, format("output's last dim must be N=%lld of weight '%s'",
                                    static_cast<long long>(w.n), w.name.c_str()));
        return true;
      }
      case OpCode::ADD: case OpCode::SUB: case OpCode::MUL: case OpCode::DIV:
        if (out == DType::BOOL) return op_fail(op, "with a BOOL output is not supported");
        return true;
      case OpCode::NEG: return out == DType::BOOL ? op_fail(op, "with a BOOL output is not supported") : true;
      case OpCode::RSQRT: case OpCode::SILU: case OpCode::SIGMOID: case OpCode::POW: case OpCode::MEAN:
      case OpCode::SOFTMAX:
        if (!is_float(out) || !is_float(dt(in[0])))
          return op_fail(op, format("needs floating-point tensors, found %s -> %s", dtype_name(dt(in[0])),
                                    dtype_name(out)));
        if (op.code == OpCode::MEAN || op.code == OpCode::SOFTMAX) {
          if (a.dims.empty() && op.code == OpCode::SOFTMAX) return op_fail(op, "has no dim");
          for (int64_t d : a.dims)
            if (d < 0 || d >= static_cast<int64_t>(rank(in[0])))
              return op_fail(op, format("reduces dim %lld of a rank-%zu tensor", static_cast<long long>(d),
                                        rank(in[0])));
        }
        return true;
      case OpCode::RMS_NORM:
        if (!is_float(out) || !is_float(dt(in[0])) || (in[1] >= 0 && !is_float(dt(in[1]))))
          return op_fail(op, "needs floating-point x, weight and output");
        if (rank(in[0]) < 1) return op_fail(op, "needs x of rank >= 1");
        return true;
      case OpCode::BMM: case OpCode::MATMUL:
        if (!is_float(out) || !is_float(dt(in[0])) || !is_float(dt(in[1])))
          return op_fail(op, "needs floating-point operands");
        if (rank(in[0]) < 2 || rank(in[1]) < 2 || rank(op.output) < 2)
          return op_fail(op, "needs operands of rank >= 2");
        return true;
      case OpCode::LINEAR: {
        if (!is_float(out) || !is_float(dt(in[0])) || !is_float(dt(in[1])) || (in[2] >= 0 && !is_float(dt(in[2]))))
          return op_fail(op, "needs floating-point x, weight, bias and output");
        int64_t k = 0, kw = 0;
        if (rank(in[0]) < 1 || rank(in[1]) != 2 || (in[2] >= 0 && rank(in[2]) != 1) || rank(op.output) < 1)
          return op_fail(op, "needs x [..., K], weight [N, K], bias [N]");
        if (static_dim(in[0], rank(in[0]) - 1, &k) && static_dim(in[1], 1, &kw) && k != kw)
          return op_fail(op, format("has x with K=%lld but a weight with K=%lld", static_cast<long long>(k),
                                    static_cast<long long>(kw)));
        return true;
      }
      case OpCode::SDPA:
        for (int s = 0; s < 3; ++s)
          if (!is_float(dt(in[s])) || rank(in[s]) != 4) return op_fail(op, "needs floating-point 4-D q, k, v");
        if (!is_float(out) || rank(op.output) != 4) return op_fail(op, "needs a floating-point 4-D output");
        if (in[3] >= 0 && !(is_float(dt(in[3])) || dt(in[3]) == DType::BOOL))
          return op_fail(op, "needs a BOOL or floating-point mask");
        if (in[3] >= 0 && rank(in[3]) > 4) return op_fail(op, "needs a mask of rank <= 4");
        return true;
      case OpCode::PERMUTE: {
        const size_t r = rank(in[0]);
        if (a.dims.size() != r) return op_fail(op, "has a permutation of the wrong length");
        std::vector<char> seen(r, 0);
        for (int64_t d : a.dims) {
          if (d < 0 || d >= static_cast<int64_t>(r) || seen[d]) return op_fail(op, "has an invalid permutation");
          seen[d] = 1;
        }
        return out == dt(in[0]) ? true : op_fail(op, "changes the dtype");
      }
      case OpCode::VIEW: case OpCode::EXPAND:
        return out == dt(in[0]) ? true : op_fail(op, "changes the dtype");
      case OpCode::CAT:
        if (a.dims.empty() || a.dims[0] < 0 || a.dims[0] >= static_cast<int64_t>(rank(op.output)))
          return op_fail(op, "has a dim outside its output's rank");
        for (int32_t i : in)
          if (dt(i) != out) return op_fail(op, "mixes dtypes");
        return true;
      case OpCode::SLICE:
        if (a.slice_step < 1) return op_fail(op, "has a step < 1");
        if (a.slice_dim < 0 || a.slice_dim >= static_cast<int64_t>(rank(in[0])))
          return op_fail(op, "slices a dim outside its input's rank");
        return out == dt(in[0]) ? true : op_fail(op, "changes the dtype");
      case OpCode::COPY: return true;
      case OpCode::EMBEDDING:
        if (dt(in[1]) != DType::INT64 && dt(in[1]) != DType::INT32) return op_fail(op, "needs INT64 or INT32 ids");
        if (rank(in[0]) != 2 || out != dt(in[0])) return op_fail(op, "needs a 2-D table of the output's dtype");
        return true;
      case OpCode::ROPE: {
        int64_t d = 0, half = 0;
        if (!is_float(dt(in[0])) || out != dt(in[0]) || rank(in[0]) != 4)
          return op_fail(op, "needs a floating-point x [B, T, H, D] and an output of its dtype");
        if (dt(in[1]) != DType::FLOAT32 || dt(in[2]) != DType::FLOAT32 || rank(in[1]) != 2 || rank(in[2]) != 2)
          return op_fail(op, "needs FLOAT32 cos/sin tables [P, D/2]");
        if (dt(in[3]) != DType::INT64) return op_fail(op, "needs an INT64 start_pos");
        if (!static_dim(in[0], 3, &d) || d % 2 || !static_dim(in[1], 1, &half) || half != d / 2)  // no half * 2: overflow (fuzzer)
          return op_fail(op, "needs a static even head dim D and cos/sin of width D/2");
        return true;
      }
      case OpCode::KV_ATTENTION: {
        int64_t h = 0, hkv = 0, d = 0, dk = 0;
        for (int s = 0; s < 3; ++s)
          if (dt(in[s]) != dt(in[0]) || !is_float(dt(in[s])) || rank(in[s]) != 4)
            return op_fail(op, "needs 4-D q, k, v of one floating-point dtype");
        if (out != dt(in[0])) return op_fail(op, "needs an output of q's dtype");
        if (dt(in[3]) != DType::INT64) return op_fail(op, "needs an INT64 start_pos");
        if (!static_dim(in[0], 2, &h) || !static_dim(in[1], 2, &hkv) || !static_dim(in[0], 3, &d) ||
            !static_dim(in[1], 3, &dk) || hkv <= 0 || h % hkv || d != dk)
          return op_fail(op, "needs static head counts H % Hkv == 0 and one static head dim");
        if (a.layer < 0 || a.max_seq_len <= 0)
          return op_fail(op, format("has layer %d and max_seq_len %lld; re-export the model", a.layer,
                                    static_cast<long long>(a.max_seq_len)));
        return true;
      }
      case OpCode::ADD_RMS_NORM: {
        if (!is_float(out) || !is_float(dt(op.output2)) || !is_float(dt(in[0])) || !is_float(dt(in[1])) ||
            (in[2] >= 0 && !is_float(dt(in[2]))))
          return op_fail(op, "needs floating-point x, delta, weight and outputs");
        if (rank(in[0]) < 1 || rank(in[1]) != rank(in[0]) || rank(op.output) != rank(in[0]) ||
            rank(op.output2) != rank(in[0]))
          return op_fail(op, "needs x, delta and both outputs of one rank >= 1");
        return true;
      }
      case OpCode::SWIGLU: {
        int64_t w = 0, f = 0;
        if (!is_float(dt(in[0])) || out != dt(in[0]) || rank(in[0]) < 1 || rank(op.output) != rank(in[0]))
          return op_fail(op, "needs a floating-point x [..., 2F] and an output [..., F] of its dtype");
        if (!static_dim(in[0], rank(in[0]) - 1, &w) || !static_dim(op.output, rank(op.output) - 1, &f) || w % 2 ||
            f != w / 2)
          return op_fail(op, "needs a static even last dim 2F in and F out");
        return true;
      }
      case OpCode::QKV_ATTENTION: {
        int64_t width = 0, half = 0, o = 0;
        if (a.n_heads <= 0 || a.n_kv_heads <= 0 || a.n_heads > 65535 || a.n_kv_heads > 65535 ||
            a.n_heads % a.n_kv_heads)
          return op_fail(op, format("has %d query and %d KV heads; needs H %% Hkv == 0; re-export the model",
                                    a.n_heads, a.n_kv_heads));
        const int64_t heads = static_cast<int64_t>(a.n_heads) + 2 * a.n_kv_heads;
        if (!is_float(dt(in[0])) || out != dt(in[0]) || rank(in[0]) != 3 || rank(op.output) != 3)
          return op_fail(op, "needs a floating-point qkv [1, T, (H + 2 Hkv) D] and an output of its dtype");
        if (!static_dim(in[0], 2, &width) || width % heads || (width / heads) % 2 || width / heads == 0)
          return op_fail(op, "needs a static qkv width (H + 2 Hkv) * D with D even");
        const int64_t d = width / heads;
        if (!static_dim(op.output, 2, &o) || o != a.n_heads * d)
          return op_fail(op, "needs an output [1, T, H * D]");
        if (dt(in[1]) != DType::FLOAT32 || dt(in[2]) != DType::FLOAT32 || rank(in[1]) != 2 || rank(in[2]) != 2 ||
            !static_dim(in[1], 1, &half) || half != d / 2)
          return op_fail(op, "needs FLOAT32 cos/sin tables [P, D/2]");
        if (dt(in[3]) != DType::INT64) return op_fail(op, "needs an INT64 start_pos");
        if (a.layer < 0 || a.max_seq_len <= 0)
          return op_fail(op, format("has layer %d and max_seq_len %lld; re-export the model", a.layer,
                                    static_cast<long long>(a.max_seq_len)));
        return true;
      }
    }
    return true;
  }

  std::vector<int64_t> static_dims(size_t v, bool* ok) const {
    std::vector<int64_t> out;
    *ok = true;
    for (const Dim& d : g_.values[v].dims) {
      if (d.symbol >= 0) *ok = false;
      out.push_back(d.offset);
    }
    return out;
  }

  bool constants() {
    for (size_t v = 0; v < nv(); ++v) {
      const Value& t = g_.values[v];
      if (!t.is_constant()) continue;
      bool is_static = false;
      const std::vector<int64_t> dims = static_dims(v, &is_static);
      if (!is_static)
        return c_.fail(Error::InvalidProgram,
                       format("int4_cuda: constant %s has a dynamic dimension; the blob is corrupt: re-export "
                              "the model", t.name.c_str()));
      const int64_t have = named_size_ ? named_size_(t.constant_key) : -1;
      if (have < 0)
        return c_.fail(Error::InvalidExternalData,
                       format("int4_cuda: constant %s (key %.20s…) is in neither the .pte nor its .ptd: the "
                              ".ptd belongs to another model or export; pass the .ptd written with this .pte, "
                              "or re-export", t.name.c_str(), t.constant_key.c_str()));
      const int64_t need = max_nbytes(t, g_.symbols);
      if (need < 0 || have != need)
        return c_.fail(Error::InvalidExternalData,
                       format("int4_cuda: constant %s holds %lld bytes, but its shape %s needs %lld; the "
                              ".ptd does not match this .pte: re-export", t.name.c_str(),
                              static_cast<long long>(have), dims_text(dims).c_str(), static_cast<long long>(need)));
    }
    return true;
  }

  bool weights() {
    for (const Int4Weight& w : g_.weights) {
      if (w.layout == WeightLayout::LEGACY_GROUPS_N)
        return c_.fail(Error::DelegateInvalidCompatibility, legacy_layout_message(w.name));
      if (w.layout != WeightLayout::COALESCED_N_GROUPS)
        return c_.fail(Error::DelegateInvalidCompatibility,
                       format("int4_cuda: weight '%s' has unknown layout %d; re-export the model",
                              w.name.c_str(), static_cast<int>(w.layout)));
      bool gs_ok = false;
      for (int32_t gs : kGroupSizes) gs_ok |= (w.group_size == gs);
      if (!gs_ok || w.k <= 0 || w.n <= 0 || w.k % w.group_size || w.k > INT32_MAX || w.n > INT32_MAX)
        return c_.fail(Error::NotSupported,
                       format("int4_cuda: weight '%s' has group size %d for K=%lld, N=%lld; supported: "
                              "(32, 64, 128, 256) dividing K; re-quantize with a supported group size",
                              w.name.c_str(), w.group_size, static_cast<long long>(w.k),
                              static_cast<long long>(w.n)));
      const struct { const char* what; uint32_t v; DType dtype; std::vector<int64_t> shape; } parts[] = {
          {"qdata", w.qdata, DType::UINT8, {w.n, w.k / 2}},
          {"scale", w.scale, DType::BFLOAT16, {w.n, w.k / w.group_size}},
          {"zero", w.zero, DType::BFLOAT16, {w.n, w.k / w.group_size}},
      };
      for (const auto& p : parts) {
        if (!vid(p.v, "weight '" + w.name + "' " + p.what)) return false;
        const Value& t = g_.values[p.v];
        bool is_static = false;
        const std::vector<int64_t> dims = static_dims(p.v, &is_static);
        if (!t.is_constant() || t.dtype != p.dtype || dims != p.shape)
          return c_.fail(Error::InvalidProgram,
                         format("int4_cuda: weight '%s' %s must be a constant %s %s, found %s %s; the blob does "
                                "not match its weights: re-export the model", w.name.c_str(), p.what,
                                dtype_name(p.dtype), dims_text(p.shape).c_str(),
                                t.is_constant() ? dtype_name(t.dtype) : "non-constant",
                                dims_text(dims).c_str()));
      }
    }
    return true;
  }

  // One KV cache per layer: every KV_ATTENTION op of a layer must agree on its shape.
  bool kv_layers() {
    std::map<int32_t, std::vector<int64_t>> seen;
    for (const Op& op : g_.ops) {
      int64_t hkv = 0, d = 0;
      DType dtype = DType::FLOAT32;
      if (!kv_cache_shape(g_, op, &hkv, &d, &dtype)) continue;
      std::vector<int64_t> key = {op.arg.max_seq_len, hkv, d, static_cast<int64_t>(dtype)};
      auto it = seen.find(op.arg.layer);
      if (it == seen.end()) {
        seen.emplace(op.arg.layer, key);
      } else if (it->second != key) {
        return op_fail(op, format("uses KV cache layer %d with a shape other ops of that layer do not; "
                                  "re-export the model", op.arg.layer));
      }
    }
    return true;
  }
};

}  // namespace

std::string legacy_layout_message(const std::string& weight) {
  // Keep identical to int4_cuda/errors.py LEGACY_LAYOUT_MESSAGE (tests compare the two).
  return "int4_cuda: weight '" + weight +
         "' stores scale/zero in the legacy [n_groups, N] layout (LEGACY_GROUPS_N); this runtime needs "
         "COALESCED_N_GROUPS ([N, n_groups]). Re-export the model, or convert the file: int4-cuda "
         "upgrade OLD.pte NEW.pte";
}

executorch::runtime::Error verify_blob(const void* data, size_t size, const NamedDataSize& named_size,
                                       Graph* graph, std::string* message) {
  Checker c(message);
  const auto* bytes = static_cast<const uint8_t*>(data);
  if (data == nullptr || size < 8 || !fb::GraphBufferHasIdentifier(bytes)) {
    std::string found = "none";
    if (data != nullptr && size >= 8) {
      found.clear();
      for (int i = 4; i < 8; ++i) {
        const char ch = static_cast<char>(bytes[i]);
        found += (ch >= 0x20 && ch < 0x7f) ? std::string(1, ch) : format("\\x%02x", bytes[i]);
      }
    }
    c.fail(Error::InvalidProgram,
           format("int4_cuda: not an int4_cuda delegate blob (identifier '%s', expected '%s'); the .pte was "
                  "not made by int4_cuda's exporter, or is damaged: re-export", found.c_str(),
                  fb::GraphIdentifier()));
    return c.error();
  }
  // flatbuffers::Verifier checks each field's alignment relative to the buffer start, so in-place
  // reads of the 8-byte fields (long, double, struct Dim) are aligned only if the buffer itself is
  // 8-byte aligned. A caller's buffer that is not (e.g. 4-aligned storage) is copied here
  // (issue #8: UBSan found misaligned reads in the fuzzer).
  std::vector<uint64_t> aligned;
  if (reinterpret_cast<uintptr_t>(data) % alignof(uint64_t) != 0) {
    aligned.resize(size / sizeof(uint64_t) + 1);
    std::memcpy(aligned.data(), data, size);
    bytes = reinterpret_cast<const uint8_t*>(aligned.data());
  }
  flatbuffers::Verifier v(bytes, size, kMaxFlatbufferDepth, kMaxFlatbufferTables);
  if (!fb::VerifyGraphBuffer(v) || !vectors_aligned(*fb::GetGraph(bytes), bytes)) {
    c.fail(Error::InvalidProgram,
           format("int4_cuda: corrupt int4_cuda delegate blob (%zu bytes fail flatbuffer verification); the "
                  ".pte is truncated or damaged: re-export", size));
    return c.error();
  }
  const fb::Graph* root = fb::GetGraph(bytes);
  if (root->version() != static_cast<uint32_t>(fb::FormatVersion::CURRENT)) {
    c.fail(Error::DelegateInvalidCompatibility,
           format("int4_cuda: int4_cuda blob format version %u, but this build reads version %u; re-export "
                  "the model with this version of int4_cuda", root->version(),
                  static_cast<uint32_t>(fb::FormatVersion::CURRENT)));
    return c.error();
  }
  Graph g;
  decode(*root, &g);
  const Error e = Verifier(g, named_size, message).run();
  if (e == Error::Ok && graph != nullptr) *graph = std::move(g);
  return e;
}

}  // namespace int4_cuda
