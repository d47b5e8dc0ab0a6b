// EMBEDDING and ROPE. Positions (start_pos) and ids are read on the device, never on the host, so
// a step can later be captured in a CUDA graph and replayed with new inputs.
#include "common.cuh"

namespace int4_cuda {
namespace kernels {
namespace {

__global__ void embedding_kernel(const void* table, DType tt, const void* ids, DType idt, void* out, int64_t n_ids,
                                 int64_t vocab, int64_t d, int* err) {
  pdl_wait();  // before any global access (shims/pdl.cuh)
  pdl_trigger();
  const int64_t n = n_ids * d;
  const int es = elem_size(tt);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / d, c = i % d;
    const int64_t id = load_i(ids, r, idt);
    if (id < 0 || id >= vocab) {
      set_error(err, kErrEmbeddingIndex);
      store_f(out, i, tt, 0.f);
      continue;
    }
    const int64_t src = id * d + c;
    if (es == 4) static_cast<uint32_t*>(out)[i] = static_cast<const uint32_t*>(table)[src];
    else if (es == 2) static_cast<uint16_t*>(out)[i] = static_cast<const uint16_t*>(table)[src];
    else if (es == 8) static_cast<uint64_t*>(out)[i] = static_cast<const uint64_t*>(table)[src];
    else static_cast<uint8_t*>(out)[i] = static_cast<const uint8_t*>(table)[src];
  }
}

__global__ void rope_kernel(const void* x, DType xt, const float* cos, const float* sin, const int64_t* start_pos,
                            void* out, int64_t B, int64_t T, int64_t H, int64_t D, int64_t P, bool interleaved,
                            int* err) {
  pdl_wait();  // before any global access (shims/pdl.cuh)
  pdl_trigger();
  const int64_t half = D / 2;
  const int64_t n = B * T * H * half;
  const int64_t sp = *start_pos;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t pair = i % half;
    const int64_t row = i / half;            // (b, t, h) flattened
    const int64_t t = (row / H) % T;
    const int64_t pos = sp + t;
    const int64_t base = row * D;
    const int64_t ia = interleaved ? base + 2 * pair : base + pair;
    const int64_t ib = interleaved ? ia + 1 : base + pair + half;
    if (pos < 0 || pos >= P) {
      set_error(err, kErrRopePosition);
      store_f(out, ia, xt, 0.f);
      store_f(out, ib, xt, 0.f);
      continue;
    }
    const float c = cos[pos * half + pair], s = sin[pos * half + pair];
    const float a = load_f(x, ia, xt), b = load_f(x, ib, xt);
    store_f(out, ia, xt, a * c - b * s);
    store_f(out, ib, xt, b * c + a * s);
  }
}

}  // namespace

const char* error_code_text(int code) {
  switch (code) {
    case kErrNone: return "no error";
    case kErrEmbeddingIndex: return "an EMBEDDING id is outside the table";
    case kErrRopePosition: return "a ROPE position (start_pos + t) is outside the cos/sin table";
    case kErrKvPosition: return "KV_ATTENTION positions start_pos .. start_pos + T - 1 do not fit the KV cache";
  }
  return "unknown device error";
}

void launch_embedding(const void* table, DType tt, const void* ids, DType idt, void* out, int64_t n_ids,
                      int64_t vocab, int64_t d, int* err, cudaStream_t stream) {
  const int64_t n = n_ids * d;
  if (n == 0) return;
  launch(embedding_kernel, dim3(grid_for(n)), dim3(kThreads), 0, stream, table, tt, ids, idt, out, n_ids, vocab, d, err);
}

void launch_rope(const void* x, DType xt, const float* cos, const float* sin, const int64_t* start_pos, void* out,
                 int64_t B, int64_t T, int64_t H, int64_t D, int64_t P, bool interleaved, int* err,
                 cudaStream_t stream) {
  const int64_t n = B * T * H * (D / 2);
  if (n == 0) return;
  launch(rope_kernel, dim3(grid_for(n)), dim3(kThreads), 0, stream, x, xt, cos, sin, start_pos, out, B, T, H, D, P, interleaved,
                                                    err);
}

}  // namespace kernels
}  // namespace int4_cuda
