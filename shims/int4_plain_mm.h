/* int4_plain_mm: bf16 (or f32) activations x group-wise asymmetric int4 weights, CUDA, C ABI.
 *
 *   out[M, N] = x[M, K] @ W^T
 *   W[n, k]   = (u[n, k] - 8) * scale[n, k / gs] + zero[n, k / gs]
 *
 * This header is the kernel's contract with the Python packer and the C++ runtime.
 *
 * Layout (all tensors dense, row-major, no strides):
 *   x      bf16  [M, K]       row m starts at x + m*K.
 *   qdata  uint8 [N, K/2]     byte j of row n = u(n, 2j) | u(n, 2j+1) << 4, u in [0, 15].
 *                             u is torchao's signed code q in [-8, 7] plus 8 (u = q + 8, i.e. the
 *                             two's-complement nibble XOR 8).
 *   scale  bf16  [N, K/gs]    "coalesced" layout: row n holds the K/gs group scales of weight row n
 *                             (NOT torchao's [K/gs, N]).
 *   zero   bf16  [N, K/gs]    same layout; zero is in the float domain (torchao: w = q*scale + zero).
 *   out    bf16  [M, N]       every element is written.
 *
 * Numerics: q = u - 8 is exact; each weight is dequantized as one fused multiply-add
 * w = fma(q, scale, zero) rounded once to bf16 (the bf16 weight a bf16 GEMM on the dequantized
 * weight sees), products and sums in fp32 (tensor cores, fp32 accumulation), result rounded to bf16
 * (round-to-nearest-even). Relative error vs a float64 reference: about 2e-3 on random data.
 *
 * f32 activations (int4_cuda_int4_plain_mm_f32): x and out are float32 [M, K] / [M, N], the weights
 * the same bf16 values as above. Each x is split into bf16 parts hi = bf16(x), lo = bf16(x - hi)
 * (x - hi is exact), both go through the tensor cores with fp32 accumulation and the two sums are
 * added in fp32: 16 mantissa bits of x reach the products (|x - hi - lo| <= 2^-18 |x|), and the
 * result is never rounded to bf16. Against y = x @ W^T in float64 with those bf16 weights the
 * relative error is about 1e-5 on random data (fp32 accumulation over K). This is what keeps a
 * model's activations in f32 between layers (export_llm --dtype fp32). M <= 16 takes the decode
 * kernel (2M MMA columns; at M = 1 it splits x once per block into shared memory and costs about
 * the bf16 time on large shapes), larger M the prefill kernel at 64 tokens per block (twice the
 * MMAs of bf16) or, up to M = 48 with few weight rows, the decode kernel over chunks of 16 rows.
 * Inf x stays inf (lo = 0); NaN stays NaN.
 *
 * Arguments accepted:
 *   M, N, K > 0; M, N, K <= 2^30; group_size in {32, 64, 128, 256}; K % group_size == 0
 *   (K % 128 need NOT be 0: K = 576 with gs 32/64 works).
 * Alignment required (bytes): x 16, qdata 16, scale 2, zero 2, out 2 (f32 entry points: out 4).
 *   (Rows stay aligned on their own: K % 32 == 0 makes every x row 64-byte and every qdata row
 *   16-byte aligned relative to the base.)
 * stream: any CUDA stream (0 = legacy default); the call is asynchronous and may be captured in a
 * CUDA graph. No shared scratch (only per-device attributes cached in atomics): calls from several
 * threads/streams are safe.
 *
 * Workspace (int4_cuda_int4_plain_mm_ws only; optional, as cuBLASLt's): device memory the caller
 * owns, INT4_CUDA_PLAIN_MM_WORKSPACE_BYTES is enough on any GPU. With it, the TMA-ring decode
 * kernel (below) shares the row tiles past its last whole round among all its blocks by stages of
 * K and adds the pieces up through the workspace (stream-K), so no block streams a whole extra tile
 * alone at the end of the call. Results are deterministic either way (fixed summation order), and
 * equal to the no-workspace results within fp32 rounding of the sums.
 *   - 16-byte aligned (else INT4_CUDA_ERR_MISALIGNED_WORKSPACE); NULL or too small = not used.
 *   - All bytes zero before its first use (cudaMemset once). Every call that completes leaves the
 *     words it relies on at zero again, so one workspace serves any number of calls in sequence.
 *   - One call at a time: calls that may run concurrently (different streams, graph replays that
 *     overlap) need their own workspace, as with cuBLASLt.
 *
 * Kernel choice (by M only):
 *   M <= INT4_CUDA_PLAIN_MM_DECODE_MAX_M : decode kernel, tensor-core matvec; all M rows are fused
 *                                          so every weight byte is read once (M <= 8 costs about
 *                                          the same as M = 1).
 *   M == 1 on a compute-capability 9.0 : instead, the TMA-ring decode kernel
 *   GPU, in a library built with sm_90a, (int4_plain_mm_tma_decode.cuh: one producer thread
 *   K % 256 == 0, K <= 65536,            streams weights, scales and zeros into shared memory
 *   K / group_size % 8 == 0, qdata /     with the TMA unit; 8 warps compute from it) where each
 *   scale / zero 16-byte aligned         block has a long weight stream (launcher's
 *                                        tma_decode_pays: about two rounds of 16-row tiles per
 *                                        resident block at gs <= 64, >= 16 stages of 2048 k at
 *                                        gs >= 128; stages >= 7/8 full). Same numerics.
 *   M <= 128 where the prefill kernel would : the decode kernel over token chunks of 32 (one grid row
 *   have fewer blocks than SMs (few rows)     each; the chunks share the weight reads through L2).
 *   otherwise                            : prefill kernel, tiled tensor-core GEMM with the dequant
 *                                          fused in its main loop (64-token tiles for M <= 64).
 *   M > 64 (M > 48 when K >= 2048) on a  : instead of the prefill kernel (and of the token chunks
 *   compute-capability 9.0 GPU (H100/      when K >= 2048), the Hopper prefill kernel
 *   H200), K % 64 == 0, in a library       (int4_plain_mm_sm90.cuh: wgmma on TMA-fed shared memory,
 *   built with sm_90a                      the weights dequantized into it by the same block; 128-
 *                                          or 256-token tiles, chosen by whole waves of SMs, K split
 *                                          over 2-block clusters for grids under a wave). Same
 *                                          numerics as above.
 *
 * Error handling: every argument is checked on the host BEFORE any CUDA call, in the order of the
 * status codes below (first failure wins), so the checks run (and are testable) without a GPU.
 * A failing check returns its code and launches nothing; the library never aborts.
 */
#ifndef INT4_CUDA_SHIMS_INT4_PLAIN_MM_H_
#define INT4_CUDA_SHIMS_INT4_PLAIN_MM_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Avoid requiring cuda_runtime.h in consumers: cudaStream_t is a pointer to an opaque struct. */
typedef struct CUstream_st* int4_cuda_stream_t;

/* Largest M served by the decode (matvec) kernel. Shared with Python (int4_cuda) as the
 * decode/prefill threshold. */
#define INT4_CUDA_PLAIN_MM_DECODE_MAX_M 32
/* The same for int4_cuda_int4_plain_mm_f32 (each f32 row takes two MMA columns). */
#define INT4_CUDA_PLAIN_MM_F32_DECODE_MAX_M 16

/* Status codes. 0 = success. Values are stable (part of the ABI). */
typedef enum int4_cuda_status {
  INT4_CUDA_OK = 0,
  INT4_CUDA_ERR_NULL_X = 1,
  INT4_CUDA_ERR_NULL_QDATA = 2,
  INT4_CUDA_ERR_NULL_SCALE = 3,
  INT4_CUDA_ERR_NULL_ZERO = 4,
  INT4_CUDA_ERR_NULL_OUT = 5,
  INT4_CUDA_ERR_BAD_M = 6,              /* M <= 0 */
  INT4_CUDA_ERR_BAD_N = 7,              /* N <= 0 */
  INT4_CUDA_ERR_BAD_K = 8,              /* K <= 0 */
  INT4_CUDA_ERR_BAD_GROUP_SIZE = 9,     /* not 32, 64, 128 or 256 */
  INT4_CUDA_ERR_K_NOT_DIVISIBLE = 10,   /* K % group_size != 0 */
  INT4_CUDA_ERR_TOO_LARGE = 11,         /* M, N or K > 2^30 */
  INT4_CUDA_ERR_MISALIGNED_X = 12,      /* x not 16-byte aligned */
  INT4_CUDA_ERR_MISALIGNED_QDATA = 13,  /* qdata not 16-byte aligned */
  INT4_CUDA_ERR_MISALIGNED_SCALE = 14,  /* scale not 2-byte aligned */
  INT4_CUDA_ERR_MISALIGNED_ZERO = 15,   /* zero not 2-byte aligned */
  INT4_CUDA_ERR_MISALIGNED_OUT = 16,    /* out not 2-byte aligned (f32 entry points: 4-byte) */
  INT4_CUDA_ERR_LAUNCH = 17,            /* CUDA reported an error at launch (no device, no kernel
                                           image for this GPU, bad stream, ...); see
                                           int4_cuda_last_cuda_error() */
  INT4_CUDA_ERR_MISALIGNED_WORKSPACE = 18,  /* workspace not 16-byte aligned (checked after 16) */
  INT4_CUDA_STATUS_COUNT_ = 19
} int4_cuda_status;

/* out = x @ dequant(W)^T. Returns INT4_CUDA_OK or an int4_cuda_status code. */
int int4_cuda_int4_plain_mm(const void* x,      /* bf16  [M, K]    */
                            const void* qdata,  /* uint8 [N, K/2]  */
                            const void* scale,  /* bf16  [N, K/gs] */
                            const void* zero,   /* bf16  [N, K/gs] */
                            void* out,          /* bf16  [M, N]    */
                            int64_t M, int64_t N, int64_t K, int64_t group_size,
                            int4_cuda_stream_t stream);

/* Workspace bytes that serve every shape on any GPU (up to 4096 resident decode blocks). */
#define INT4_CUDA_PLAIN_MM_WORKSPACE_BYTES (1 << 20)

/* The same as int4_cuda_int4_plain_mm, with a workspace (contract above; NULL = none). */
int int4_cuda_int4_plain_mm_ws(const void* x,      /* bf16  [M, K]    */
                               const void* qdata,  /* uint8 [N, K/2]  */
                               const void* scale,  /* bf16  [N, K/gs] */
                               const void* zero,   /* bf16  [N, K/gs] */
                               void* out,          /* bf16  [M, N]    */
                               int64_t M, int64_t N, int64_t K, int64_t group_size,
                               void* workspace, size_t workspace_bytes, int4_cuda_stream_t stream);

/* out = x @ dequant(W)^T with f32 activations (x f32 [M, K], out f32 [M, N]; numerics above).
 * Same checks and status codes as int4_cuda_int4_plain_mm. */
int int4_cuda_int4_plain_mm_f32(const void* x,      /* f32   [M, K]    */
                                const void* qdata,  /* uint8 [N, K/2]  */
                                const void* scale,  /* bf16  [N, K/gs] */
                                const void* zero,   /* bf16  [N, K/gs] */
                                void* out,          /* f32   [M, N]    */
                                int64_t M, int64_t N, int64_t K, int64_t group_size,
                                int4_cuda_stream_t stream);

/* Not part of the stable contract (benchmarks and tests only): same as int4_cuda_int4_plain_mm but
 * forces a kernel variant. 0 = default dispatch; 8 = prefill kernel with 4 stages; 1..7, 10..15 = decode-kernel variants (M <= 32 only,
 * else INT4_CUDA_ERR_BAD_M; 13..15, activations staged in shared memory, take the default dispatch
 * unless M == 1); 9 = prefill kernel for any M; 16 = decode kernel over token chunks for
 * 32 < M <= 128 (else the default); 17 = prefill kernel with 64-token tiles, any M; 19 / 20 / 21 =
 * the Hopper prefill kernel for any M with its own tile choice / 128-token / 256-token tiles, and
 * 22 / 23 / 24 / 25 = the same with K split over clusters of blocks: 256-token tiles by 2, 128 by 2,
 * 256 by 4, 128 by 4 (unsplit where K / 64 is below the split); all where it is available, see
 * above; else the default dispatch. 26 / 27 / 28 = the decode kernel with 256 k per k-iteration (W2)
 * and x staged in shared memory: persistent at 3 / 2 blocks per SM, one block per row tile; 29 = W2
 * without staging, one block per row tile (26-28: M == 1, 29: M <= 8, all K % 256 == 0; else the
 * default dispatch). 30 = 13 with whole 128-byte lines fetched into L2 for the weights and an even
 * number of 128-k iterations per warp (M == 1, K % 128 == 0; else the default dispatch; the default
 * at gs >= 128 with enough rows and iterations). 31 = the TMA-ring decode kernel (M == 1 where it is
 * available, see the kernel choice above; else the default dispatch), with stream-K where the launcher's
 * policy takes it and a workspace is given; 32 = 31 with whole tiles only; 33 = 31 with stream-K
 * wherever row tiles are left past the last whole round (tests). Other values = default dispatch. */
int int4_cuda_int4_plain_mm_variant(const void* x, const void* qdata, const void* scale,
                                    const void* zero, void* out, int64_t M, int64_t N, int64_t K,
                                    int64_t group_size, void* workspace, size_t workspace_bytes,
                                    int4_cuda_stream_t stream, int variant);
/* The same for the f32 entry point: variant 9 = prefill kernel for any M; 13 / 14 = decode kernel
 * with x split once per block into shared memory, persistent / one block per row tile (M == 1 and
 * K <= 16384 only; 13 is the default there); 16 = decode kernel over chunks of 16 rows for
 * 16 < M <= 64; 17 = prefill kernel with 32-token tiles, any M; 18 = decode kernel without shared
 * memory (x split per lane) for M <= 16; 15 = as 13 with U = 2 (the default where the bf16 policy
 * takes U = 2: long K); others = default dispatch. */
int int4_cuda_int4_plain_mm_f32_variant(const void* x, const void* qdata, const void* scale,
                                        const void* zero, void* out, int64_t M, int64_t N, int64_t K,
                                        int64_t group_size, int4_cuda_stream_t stream, int variant);

/* Human-readable text for a status code; names the offending argument. Never NULL. */
const char* int4_cuda_status_string(int status);

/* Text of the last CUDA error seen by a launch from this thread ("" if none). Never NULL. */
const char* int4_cuda_last_cuda_error(void);

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif  /* INT4_CUDA_SHIMS_INT4_PLAIN_MM_H_ */
