/* C API of the int4_cuda runtime, for Python (ctypes: int4_cuda/cuda_runtime.py) and C programs.
 *
 * Two libraries export it:
 *   libint4_cuda_backend.so  the delegate (registers "Int4CudaBackend" when loaded) and the
 *                            host-only entries: int4_cuda_available, int4_cuda_verify_blob(_data),
 *                            int4_cuda_check_constant, int4_cuda_legacy_layout_message,
 *                            int4_cuda_last_error.
 *   libint4_cuda_runtime.so  adds the program API (int4_cuda_program_*): load a .pte (+ .ptd) with
 *                            ExecuTorch's Module API and run a method on CPU tensors. It links the
 *                            delegate and ExecuTorch's CPU kernels (for non-delegated ops).
 *
 * Status codes are ExecuTorch Error values (0 = Ok). Messages go into caller buffers (always
 * NUL-terminated, truncated to fit). Nothing here aborts or throws.
 */
#ifndef INT4_CUDA_RUNTIME_C_API_H_
#define INT4_CUDA_RUNTIME_C_API_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define INT4_CUDA_MAX_DIMS 8

/* A dense, row-major CPU tensor. dtype is an ExecuTorch ScalarType code (6 float, 15 bfloat16,
 * 4 int64, ...). ndim == -1 marks a scalar int argument whose value is sizes[0]. */
typedef struct int4_cuda_tensor {
  void* data;
  int32_t dtype;
  int32_t ndim;
  int64_t sizes[INT4_CUDA_MAX_DIMS];
} int4_cuda_tensor;

/* --- libint4_cuda_backend.so --------------------------------------------------------------- */

/* 1 if a usable GPU (sm_80+) is present, else 0; `reason` gets the device name or why not. */
int int4_cuda_available(char* reason, size_t reason_len);

/* Byte size of the named data under `key`, or -1 if absent. */
typedef int64_t (*int4_cuda_named_size_fn)(void* ctx, const char* key);

/* Verifies one delegate blob exactly as init() does (host only, no GPU). Returns the Error code;
 * on failure `message` gets the one-line message init() would log. */
int int4_cuda_verify_blob(const void* blob, size_t blob_len, int4_cuda_named_size_fn named_size, void* ctx,
                          char* message, size_t message_len);

/* Bytes of the named data under `key`: sets *data and returns the byte size, or -1 if absent.
 * *data must stay valid until int4_cuda_verify_blob_data returns (the hashing comes last). */
typedef int64_t (*int4_cuda_named_data_fn)(void* ctx, const char* key, const void** data);

/* int4_cuda_verify_blob on the constants' bytes, then every constant against its content-hash key
 * (sha256, as init() checks before the upload; host only, no GPU). Returns the Error code; on
 * failure `message` gets the one-line message init() would log. */
int int4_cuda_verify_blob_data(const void* blob, size_t blob_len, int4_cuda_named_data_fn named_data, void* ctx,
                               char* message, size_t message_len);

/* One constant against its key ("i4cu." + lowercase hex sha256 of the bytes): 0, or
 * InvalidExternalData with init()'s one-line message (naming the key) in `message`. */
int int4_cuda_check_constant(const char* key, const void* data, size_t size, char* message, size_t message_len);

/* The text logged for a legacy-layout weight (same as int4_cuda.errors.LEGACY_LAYOUT_MESSAGE). */
void int4_cuda_legacy_layout_message(const char* weight, char* out, size_t out_len);

/* The last error message the runtime logged on this thread ("" if none). Never NULL. */
const char* int4_cuda_last_error(void);

/* GPU memory of the current device in bytes (cudaMemGetInfo); 0 on success, else -1 (no GPU). */
int int4_cuda_gpu_memory(int64_t* free_bytes, int64_t* total_bytes);

/* CUDA graphs captured and replayed by this process's executors so far (runner statistics). */
void int4_cuda_graph_counters(int64_t* captures, int64_t* replays);

/* --- libint4_cuda_runtime.so --------------------------------------------------------------- */

typedef struct int4_cuda_program int4_cuda_program;

/* Loads `pte` (and `ptd`, or NULL when weights are in the .pte). NULL on failure (message in err). */
int4_cuda_program* int4_cuda_program_load(const char* pte, const char* ptd, char* err, size_t err_len);

/* Runs `method` (loading it on first use: that is when the delegate's init() runs). The outputs
 * stay owned by the program until the next run or free. Returns an Error code. */
int int4_cuda_program_run(int4_cuda_program* program, const char* method, const int4_cuda_tensor* inputs,
                          size_t n_inputs, char* err, size_t err_len);

/* Loads `method` without running it (surfaces init() errors: legacy layout, missing weights). */
int int4_cuda_program_load_method(int4_cuda_program* program, const char* method, char* err, size_t err_len);

/* Outputs of the last run: count, and output i as a tensor view (data valid until the next run). */
size_t int4_cuda_program_num_outputs(const int4_cuda_program* program);
int int4_cuda_program_output(const int4_cuda_program* program, size_t i, int4_cuda_tensor* out);

void int4_cuda_program_free(int4_cuda_program* program);

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif  /* INT4_CUDA_RUNTIME_C_API_H_ */
