// Host-side tests of verify_blob (no GPU): a valid blob decodes; every malformed case returns an
// error with one message line and never crashes. Run by ctest and by tests/runtime/ (pytest).
#include <cstring>
#include <random>
#include <string>

#include "blob_verifier.h"
#include "test_blobs.h"

using executorch::runtime::Error;
using namespace int4_cuda;
using namespace int4_cuda::testing;

namespace {

struct Outcome {
  Error error;
  std::string message;
  Graph graph;
};

Outcome verify(const std::vector<uint8_t>& blob, std::map<std::string, int64_t> sizes) {
  // Copy into 8-aligned storage as ExecuTorch would hand it over.
  std::vector<uint64_t> storage((blob.size() + 7) / 8 + 1);
  if (!blob.empty()) std::memcpy(storage.data(), blob.data(), blob.size());
  Outcome o;
  o.error = verify_blob(storage.data(), blob.size(), [&](const std::string& k) -> int64_t {
    auto it = sizes.find(k);
    return it == sizes.end() ? -1 : it->second;
  }, &o.graph, &o.message);
  return o;
}

Outcome verify(const Graph& g) { return verify(build_blob(g), sample_named_sizes(g)); }

bool one_line(const std::string& s) { return !s.empty() && s.find('\n') == std::string::npos; }
bool has(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

void test_valid() {
  Graph g = sample_graph();
  Outcome o = verify(g);
  CHECK(o.error == Error::Ok);
  CHECK(o.graph.values.size() == 6 && o.graph.ops.size() == 2 && o.graph.weights.size() == 1);
  CHECK(o.graph.ops[0].code == OpCode::INT4_PLAIN_MM && o.graph.ops[0].output == 4);
  CHECK(o.graph.inputs.size() == 2 && o.graph.inputs[1] == -1);
  CHECK(o.graph.symbols.size() == 1 && o.graph.symbols[0].max_value == 16);
}

void test_add_rms_norm_two_outputs() {
  // sample: x -> mm (4) -> silu (5). Append sum = x2 + x2 and its norm: ADD_RMS_NORM(5, 5, -1) ->
  // (6, 7). Two outputs decode; one output, or an output that is already defined, is refused.
  Graph g = sample_graph();
  g.values.push_back(g.values[5]);
  g.values.back().name = "sum";
  g.values.push_back(g.values[5]);
  g.values.back().name = "normed";
  Op op;
  op.code = OpCode::ADD_RMS_NORM;
  op.inputs = {5, 5, -1};
  op.output = 6;
  op.output2 = 7;
  op.arg_type = OpArg::NormArg;
  op.arg.eps = 1e-5;
  op.name = "add_norm";
  g.ops.push_back(op);
  g.outputs = {6, 7};
  Outcome o = verify(g);
  CHECK(o.error == Error::Ok);
  CHECK(o.graph.ops.size() == 3 && o.graph.ops[2].output == 6 && o.graph.ops[2].output2 == 7);
  g.ops[2].output2 = UINT32_MAX;  // serialized with one output
  g.outputs = {6};
  o = verify(g);
  CHECK(o.error != Error::Ok && has(o.message, "exactly 2 output") && one_line(o.message));
  g.ops[2].output2 = 5;  // silu's output, written twice
  o = verify(g);
  CHECK(o.error != Error::Ok && has(o.message, "another op's output"));
}

void test_truncated() {
  const std::vector<uint8_t> blob = build_blob(sample_graph());
  for (size_t n = 0; n < blob.size(); ++n) {
    Outcome o = verify(std::vector<uint8_t>(blob.begin(), blob.begin() + n), sample_named_sizes(sample_graph()));
    CHECK(o.error != Error::Ok);
    CHECK(one_line(o.message));
  }
}

void test_wrong_identifier() {
  Outcome o = verify(build_blob(sample_graph(), "XXXX"), sample_named_sizes(sample_graph()));
  CHECK(o.error == Error::InvalidProgram);
  CHECK(has(o.message, "not an int4_cuda delegate blob") && has(o.message, "'XXXX'"));
  std::vector<uint8_t> zeros(64, 0);
  CHECK(verify(zeros, {}).error == Error::InvalidProgram);
}

void test_wrong_version() {
  Graph g = sample_graph();
  g.version += 1;
  Outcome o = verify(g);
  CHECK(o.error == Error::DelegateInvalidCompatibility);
  CHECK(has(o.message, "format version 2, but this build reads version 1"));
}

void test_legacy_square() {
  // N == n_groups: [n_groups, N] and [N, n_groups] have the same shape, so only the field tells.
  Graph g = sample_graph(/*n=*/2, /*k=*/64, /*group_size=*/32);
  g.weights[0].layout = WeightLayout::LEGACY_GROUPS_N;
  Outcome o = verify(g);
  CHECK(o.error == Error::DelegateInvalidCompatibility);
  CHECK(o.message == legacy_layout_message("layers.0.w"));
  CHECK(o.message ==
        "int4_cuda: weight 'layers.0.w' stores scale/zero in the legacy [n_groups, N] layout (LEGACY_GROUPS_N); "
        "this runtime needs COALESCED_N_GROUPS ([N, n_groups]). Re-export the model, or convert the file: "
        "int4-cuda upgrade OLD.pte NEW.pte");
  g.weights[0].layout = static_cast<WeightLayout>(7);
  CHECK(verify(g).error == Error::DelegateInvalidCompatibility);
}

void test_sizes() {
  Graph g = sample_graph();
  auto sizes = sample_named_sizes(g);
  sizes["s"] += 2;
  Outcome o = verify(build_blob(g), sizes);
  CHECK(o.error == Error::InvalidExternalData && has(o.message, "bytes, but its shape"));
  sizes = sample_named_sizes(g);
  sizes.erase("z");
  o = verify(build_blob(g), sizes);
  CHECK(o.error == Error::InvalidExternalData && has(o.message, "is in neither the .pte nor its .ptd"));
}

void test_weight_shapes() {
  Graph g = sample_graph();
  g.weights[0].n += 1;  // disagrees with qdata/scale/zero and with the op's output
  CHECK(verify(g).error != Error::Ok);
  g = sample_graph();
  g.values[2].dims[0].offset = 2;  // scale [2, 2] for N=4
  g.values[2].constant_key = "s2";
  auto sizes = sample_named_sizes(g);
  Outcome o = verify(build_blob(g), sizes);
  CHECK(o.error == Error::InvalidProgram && has(o.message, "scale must be a constant BFLOAT16 [4, 2]"));
  g = sample_graph();
  g.weights[0].group_size = 16;
  o = verify(g);
  CHECK(o.error == Error::NotSupported && has(o.message, "group size 16"));
  g = sample_graph();
  g.values[1].dtype = DType::INT8;  // qdata must be UINT8
  CHECK(verify(g).error == Error::InvalidProgram);
  g = sample_graph();
  g.values[0].dtype = DType::FLOAT32;  // f32 x with a bf16 output: no kernel does that
  o = verify(g);
  CHECK(o.error == Error::NotSupported && has(o.message, "FLOAT32 -> BFLOAT16") && has(o.message, "--dtype"));
  g.values[4].dtype = DType::FLOAT32;  // f32 -> f32: int4_cuda_int4_plain_mm_f32
  CHECK(verify(g).error == Error::Ok);
  g.values[0].dtype = g.values[4].dtype = DType::FLOAT16;  // no f16 kernel
  CHECK(verify(g).error == Error::NotSupported);
}

void test_out_of_range() {
  auto expect_bad = [](Graph g, const char* what) {
    Outcome o = verify(g);
    if (o.error == Error::Ok) std::fprintf(stderr, "accepted: %s\n", what);
    CHECK(o.error != Error::Ok);
    CHECK(one_line(o.message));
  };
  Graph g = sample_graph();
  g.ops[1].inputs[0] = 99;
  expect_bad(g, "op input");
  g = sample_graph();
  g.ops[1].output = 99;
  expect_bad(g, "op output");
  g = sample_graph();
  g.outputs[0] = 6;
  expect_bad(g, "graph output");
  g = sample_graph();
  g.inputs[0] = 42;
  expect_bad(g, "graph input");
  g = sample_graph();
  g.ops[0].arg.weight = 5;
  expect_bad(g, "weight index");
  g = sample_graph();
  g.weights[0].scale = 77;
  expect_bad(g, "weight value");
  g = sample_graph();
  g.values[4].dims[0].symbol = 3;
  expect_bad(g, "symbol");
  g = sample_graph();
  g.symbols[0].value = 9;
  expect_bad(g, "symbol value");
  g = sample_graph();
  g.symbols[0].dim = 5;
  expect_bad(g, "symbol dim");
  g = sample_graph();
  g.ops[1].inputs.push_back(0);  // SILU with two inputs
  expect_bad(g, "arity");
  g = sample_graph();
  g.ops[0].code = static_cast<OpCode>(999);
  expect_bad(g, "opcode");
  g = sample_graph();
  std::swap(g.ops[0], g.ops[1]);  // SILU reads mm before it is computed
  expect_bad(g, "order");
  g = sample_graph();
  g.ops[1].output = 1;  // overwrites a constant
  expect_bad(g, "writes constant");
}

void test_random_corruption() {
  // Byte flips anywhere in a valid blob: any result is fine, as long as nothing crashes and a
  // failure has one message line.
  const std::vector<uint8_t> blob = build_blob(sample_graph());
  const auto sizes = sample_named_sizes(sample_graph());
  std::mt19937 rng(1234);
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<uint8_t> b = blob;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) b[rng() % b.size()] ^= static_cast<uint8_t>(1 + rng() % 255);
    Outcome o = verify(b, sizes);
    if (o.error != Error::Ok) CHECK(one_line(o.message));
  }
}

}  // namespace

int main() {
  test_valid();
  test_add_rms_norm_two_outputs();
  test_truncated();
  test_wrong_identifier();
  test_wrong_version();
  test_legacy_square();
  test_sizes();
  test_weight_shapes();
  test_out_of_range();
  test_random_corruption();
  std::printf("blob_verifier_test: %s (%d failures)\n", g_failures ? "FAILED" : "ok", g_failures);
  return g_failures ? 1 : 0;
}
