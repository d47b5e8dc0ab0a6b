// Host-side launchers of the executor's CUDA kernels (one .cu per family). All are asynchronous
// on `stream`, allocate nothing, and never synchronize. Shapes are validated by the caller
// (executor.cu); a kernel that meets a data-dependent error (an index or position out of range)
// skips the offending write and stores an ErrorCode in the device flag `err`, which the executor
// reads back with the step's final copy (no extra sync).
//
// Numerics: every kernel loads its inputs as fp32 (fp64 for integer paths and dtype copies),
// accumulates in fp32 and rounds once to the output dtype, like torch's CPU ops the reference
// executor uses.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "graph.h"

namespace int4_cuda {
namespace kernels {

// Codes stored in the device error flag (first error wins).
enum ErrorCode : int {
  kErrNone = 0,
  kErrEmbeddingIndex = 1,  // an id outside [0, V)
  kErrRopePosition = 2,    // start_pos + t outside the cos/sin table
  kErrKvPosition = 3,      // start_pos < 0 or start_pos + T > max_seq_len
};
const char* error_code_text(int code);

struct Shape {
  int ndim = 0;
  int64_t size[kMaxDims] = {};
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= size[i];
    return n;
  }
};

// Element strides (not bytes), one per dim of the Shape they go with.
struct Strides {
  int64_t s[kMaxDims] = {};
};

// out[i] = a[i] (op) b[i] with broadcast strides (0 on broadcast dims); b absent: (op) scalar.
// Unary codes (NEG, RSQRT, SILU, SIGMOID, POW) ignore b.
void launch_elementwise(OpCode op, const void* a, DType at, Strides as, const void* b, DType bt, Strides bs,
                        bool has_b, double scalar, void* out, DType ot, const Shape& shape, cudaStream_t stream);

// out[offset_out + Σ i_d * out_strides_d] = convert(in[offset_in + Σ i_d * in_strides_d]) over
// `shape`. Covers VIEW, PERMUTE, EXPAND, SLICE, CAT (one call per input) and COPY (dtype change).
void launch_strided_copy(const void* in, DType it, int64_t in_offset, Strides in_strides, void* out, DType ot,
                         int64_t out_offset, Strides out_strides, const Shape& shape, cudaStream_t stream);

// Mean over the dims set in `reduce_mask` of `in_shape`; out holds the kept dims in order.
void launch_mean(const void* in, DType it, const Shape& in_shape, uint32_t reduce_mask, void* out, DType ot,
                 cudaStream_t stream);

// out[r, :] = x[r, :] * rsqrt(mean(x[r, :]^2) + eps) * weight (weight may be null).
// With `delta` (ADD_RMS_NORM): sum[r, :] = x[r, :] + delta[r, :] is written in st, and the row
// normalized is that sum as written.
struct NormResidual {
  const void* delta = nullptr; DType dt = DType::FLOAT32;
  void* sum = nullptr; DType st = DType::FLOAT32;
};
constexpr int64_t kNormResidualMaxD = 8192;  // rows longer than this: ADD then RMS_NORM (two kernels)
void launch_rms_norm(const void* x, DType xt, const void* w, DType wt, void* out, DType ot, int64_t rows,
                     int64_t d, double eps, cudaStream_t stream, NormResidual res = {});

// Softmax along a dim of length `size`, the tensor viewed as [outer, size, inner].
void launch_softmax(const void* in, DType it, void* out, DType ot, int64_t outer, int64_t size, int64_t inner,
                    cudaStream_t stream);

// out[batch, M, N] = a[batch, M, K] @ b[batch, K, N] (+ bias); batch offsets per operand decoded from the
// output's batch shape with broadcast strides (elements).
struct MatmulBatch {
  int ndim = 0;                 // batch dims of the output
  int64_t size[kMaxDims] = {};
  int64_t a_stride[kMaxDims] = {}, b_stride[kMaxDims] = {};
};
// b_transposed: b is stored [N, K] (LINEAR's weight) and read as its transpose. bias (nullable):
// [N], added to every row in fp32 before the single rounding.
void launch_matmul(const void* a, DType at, const void* b, DType bt, void* out, DType ot, int64_t m, int64_t n,
                   int64_t k, const MatmulBatch& batch, cudaStream_t stream, bool b_transposed = false,
                   const void* bias = nullptr, DType bias_t = DType::FLOAT32);

// Attention of one query row per block with online softmax (fp32). SDPA: keys 0..S-1 of k/v
// (causal: j <= l). KV mode (start_pos != null): keys are cache positions 0..start_pos+l; there
// launch_kv_attention picks this kernel only for shapes the fast one does not cover.
struct AttentionParams {
  const void* q = nullptr; const void* k = nullptr; const void* v = nullptr; void* out = nullptr;
  DType dtype = DType::BFLOAT16;   // q, k, v
  DType out_dtype = DType::BFLOAT16;
  int64_t B = 0, H = 0, Hkv = 0, L = 0, S = 0, E = 0, Ev = 0;
  // Element strides: [b, h, l] for q/out, [b, h, s] for k/v (last dim contiguous).
  int64_t qs[3] = {}, ks[3] = {}, vs[3] = {}, os[3] = {};
  const void* mask = nullptr; DType mask_dtype = DType::BOOL;
  int64_t ms[4] = {};              // mask strides for [b, h, l, s] (0: broadcast)
  bool causal = false;
  float scale = 1.0f;
  const int64_t* start_pos = nullptr;  // device; KV mode
  int64_t max_seq_len = 0;             // KV mode: cache length (bound check)
  int* err = nullptr;
  // KV mode: RoPE applied to q as it is loaded (rounded to q's dtype, as OpCode.ROPE would):
  const float* cos = nullptr;          // null: q is used as is
  const float* sin = nullptr;
  int64_t rope_positions = 0;          // rows of cos/sin
  bool interleaved = false;
};
void launch_attention(const AttentionParams& p, cudaStream_t stream);

// KV_ATTENTION / QKV_ATTENTION over the layer's caches [max_seq_len, Hkv, D]. Query row t of head
// h is q[t * q_row + h * D + e]; output row t of head h goes to out[t * out_row + h * D + e].
// bf16 with D in {64, 128} and H / Hkv <= 8 runs the split-key kernel: for T <= kSplitMaxRows the
// keys are cut in `splits` ranges of keys_per_split (one block each, combined by the last block to
// finish, through `scratch` and `counters`); otherwise one block per (row, KV head).
struct KvAttentionParams {
  const void* q = nullptr; int64_t q_row = 0;
  const void* k_cache = nullptr; const void* v_cache = nullptr;
  void* out = nullptr; int64_t out_row = 0;
  DType dtype = DType::BFLOAT16;       // q, caches and out
  int64_t T = 0, H = 0, Hkv = 0, D = 0, max_seq_len = 0;
  float scale = 1.0f;
  const int64_t* start_pos = nullptr;  // device
  const float* cos = nullptr;          // RoPE on q (QKV_ATTENTION), or null
  const float* sin = nullptr;
  int64_t rope_positions = 0;
  bool interleaved = false;
  float* scratch = nullptr;            // kv_attention_scratch_floats() floats
  int* counters = nullptr;             // kv_attention_counters() ints, zero between launches
  // This step's rows, appended to the caches first (k RoPE'd when cos != null): row t, KV head h
  // at k_new[t * kv_row + h * D] (likewise v_new). A single-row step on the fast path appends in
  // the attention kernel itself (the block reading that cache row writes it); otherwise
  // launch_kv_append runs first.
  const void* k_new = nullptr; const void* v_new = nullptr; int64_t kv_row = 0;
};
constexpr int64_t kSplitMaxRows = 4;
bool kv_attention_fast(DType dtype, int64_t H, int64_t Hkv, int64_t D);
int64_t kv_attention_splits(int64_t max_seq_len);
int64_t kv_attention_scratch_floats(int64_t H, int64_t Hkv, int64_t D, int64_t max_seq_len);
int64_t kv_attention_counters(int64_t Hkv);
void launch_kv_attention(KvAttentionParams p, int* err, cudaStream_t stream);

// cache[start_pos + t, h, :] = k[t * k_row + h * D + :] (RoPE'd first when cos != null, rounded to
// the cache dtype) and likewise v (never rotated); caches [max_seq_len, Hkv, D]. Flags
// kErrKvPosition / kErrRopePosition and writes nothing when the positions do not fit.
void launch_kv_append(const void* k, int64_t k_row, const void* v, int64_t v_row, void* k_cache, void* v_cache,
                      DType dtype, int64_t T, int64_t hkv, int64_t d, int64_t max_seq_len, const int64_t* start_pos,
                      const float* cos, const float* sin, int64_t rope_positions, bool interleaved, int* err,
                      cudaStream_t stream);

// SWIGLU: out[r, i] = round(round(silu(x[r, i])) * x[r, F + i]) for r < rows, i < F.
void launch_swiglu(const void* x, DType xt, void* out, int64_t rows, int64_t f, cudaStream_t stream);

// out[i, :] = table[ids[i], :]
void launch_embedding(const void* table, DType tt, const void* ids, DType idt, void* out, int64_t n_ids,
                      int64_t vocab, int64_t d, int* err, cudaStream_t stream);

// schema OpCode.ROPE on x [B, T, H, D] with cos/sin [P, D/2] (fp32), start_pos device int64.
void launch_rope(const void* x, DType xt, const float* cos, const float* sin, const int64_t* start_pos,
                 void* out, int64_t B, int64_t T, int64_t H, int64_t D, int64_t P, bool interleaved, int* err,
                 cudaStream_t stream);

}  // namespace kernels
}  // namespace int4_cuda
