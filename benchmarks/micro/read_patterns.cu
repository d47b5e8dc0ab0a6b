// Read-bandwidth ceiling of the access patterns an int4 matvec can use (no dequant, no MMA):
// what the memory system gives each pattern before any compute is added, and the best any read
// method gets here (deeper unrolled loads, TMA bulk copies into a shared-memory ring). Prints one table.
// Build: nvcc -O3 -std=c++17 -arch=sm_90 benchmarks/micro/read_patterns.cu -o build-gpu/read_patterns
// Run: read_patterns (the 28672 x 4096 pattern table) | read_patterns sizes (the ceiling per issue shape)
//      | read_patterns tiles N K (the 16-row pattern's warp order at one shape)
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdint.h>
#include <vector>
#include <algorithm>
#include <string>

// CKF: the same inside a timing lambda, which returns a negative time on failure.
#define CKF(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { printf("%s: %s\n", #x, cudaGetErrorString(e_)); return -1.f; } } while (0)
#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { printf("%s: %s\n", #x, cudaGetErrorString(e_)); return 1; } } while (0)

__device__ __forceinline__ uint4 ld_na(const void* p) {
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
  return r;
}

__global__ void k_contig(const uint4* p, size_t n16, uint32_t* sink) {
  uint32_t acc = 0;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n16; i += (size_t)gridDim.x * blockDim.x) {
    uint4 v = ld_na(p + i);
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x12345678u) sink[0] = acc;
}

// Contiguous, UN independent 16-byte loads in flight per thread before any is consumed.
template <int UN>
__global__ void k_contig_un(const uint4* p, size_t n16, uint32_t* sink) {
  uint32_t acc = 0;
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  for (; i + (UN - 1) * stride < n16; i += UN * stride) {
    uint4 v[UN];
#pragma unroll
    for (int u = 0; u < UN; ++u) v[u] = ld_na(p + i + u * stride);
#pragma unroll
    for (int u = 0; u < UN; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  for (; i < n16; i += stride) {
    uint4 v = ld_na(p + i);
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x12345678u) sink[0] = acc;
}

// Bulk copies (sm_90 cp.async.bulk, the TMA unit): block b streams stages b, b + grid, ... of STAGE
// bytes into a ring of NS shared-memory slots, one mbarrier each; one thread issues, every thread
// reads its 16-byte pieces of a landed stage, then the slot is refilled. No registers hold bytes in
// flight: NS x STAGE per block are.
template <int STAGE, int NS>
__global__ void __launch_bounds__(256) k_bulk(const uint8_t* p, size_t bytes, uint32_t* sink) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  extern __shared__ __align__(128) uint8_t sm[];
  __shared__ __align__(8) uint64_t bar[NS];
  const size_t nst = bytes / STAGE;
  const uint32_t sm0 = (uint32_t)__cvta_generic_to_shared(sm), bar0 = (uint32_t)__cvta_generic_to_shared(bar);
  if (threadIdx.x == 0) {
    for (int s = 0; s < NS; ++s) asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(bar0 + 8 * s));
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  auto issue = [&](size_t j) {  // local stage j -> global stage blockIdx.x + j gridDim.x
    const size_t st = blockIdx.x + j * gridDim.x;
    if (st >= nst) return;
    const uint32_t slot = (uint32_t)(j % NS), b = bar0 + 8 * slot;
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(b), "r"(STAGE) : "memory");
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(sm0 + slot * STAGE),
                 "l"(p + st * STAGE), "r"(STAGE), "r"(b) : "memory");
  };
  if (threadIdx.x == 0)
    for (int j = 0; j < NS; ++j) issue(j);
  uint32_t acc = 0;
  for (size_t j = 0; blockIdx.x + j * gridDim.x < nst; ++j) {
    const uint32_t slot = (uint32_t)(j % NS), par = (uint32_t)((j / NS) & 1);
    asm volatile("{\n.reg .pred d;\nw_%=:\nmbarrier.try_wait.parity.shared::cta.b64 d, [%0], %1;\n@!d bra w_%=;\n}\n" ::"r"(bar0 + 8 * slot),
                 "r"(par) : "memory");
    for (int o = threadIdx.x * 16; o < STAGE; o += blockDim.x * 16) {
      const uint4 v = *reinterpret_cast<const uint4*>(sm + slot * STAGE + o);
      acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    __syncthreads();
    if (threadIdx.x == 0) issue(j + NS);
  }
  if (acc == 0x12345678u) sink[0] = acc;
#endif
}

// Matvec-like: warp = 16 rows; lane (g, t) reads CH bytes (CH/16 loads) of rows g and g+8 per iteration,
// 4 lanes cover 4*CH contiguous bytes of a row per iteration. WK warps of a block split the row.
// Loads for U iterations are issued before any is consumed (register batch), double buffered.
// IL (interleaved): warp w takes iterations w, w + WK, w + 2 WK, ... so that at any moment the block's
// warps read one contiguous run of each row (WK x 4 CH bytes) instead of WK runs a warp's range apart.
template <int CH, int U, bool IL = false>
__global__ void __launch_bounds__(256) k_tile(const uint8_t* q, int N, int RB, uint32_t* sink, int persistent_stride) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, WK = blockDim.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int per_it = 4 * CH;
  const int KI = RB / per_it;
  const int per_warp = (KI + WK - 1) / WK;
  // Iteration index i of this warp (ib <= i < ie) reads row bytes at it_off(i) * per_it.
  const int ib = IL ? 0 : warp * per_warp, ie = IL ? (KI - warp + WK - 1) / WK : min(KI, ib + per_warp);
  auto it_off = [&](int i) { return IL ? warp + i * WK : i; };
  const int tiles = N / 16;
  uint32_t acc = 0;
  constexpr int L = CH / 16;
  for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const uint8_t* r0 = q + (size_t)(tile * 16 + g) * RB + t * CH;
    const uint8_t* r1 = r0 + (size_t)8 * RB;
    uint4 a[U][2 * L], b[U][2 * L];
    auto ld = [&](uint4 (&d)[U][2 * L], int it0) {
#pragma unroll
      for (int u = 0; u < U; ++u)
#pragma unroll
        for (int l = 0; l < L; ++l) {
          const int it = it0 + u;
          if (it < ie) {
            d[u][l] = ld_na(r0 + it_off(it) * per_it + 16 * l);
            d[u][L + l] = ld_na(r1 + it_off(it) * per_it + 16 * l);
          } else {
            d[u][l] = d[u][L + l] = make_uint4(0, 0, 0, 0);
          }
        }
    };
    auto use = [&](uint4 (&d)[U][2 * L]) {
#pragma unroll
      for (int u = 0; u < U; ++u)
#pragma unroll
        for (int l = 0; l < 2 * L; ++l) acc ^= d[u][l].x ^ d[u][l].y ^ d[u][l].z ^ d[u][l].w;
    };
    ld(a, ib);
    for (int it = ib; it < ie; it += 2 * U) {
      ld(b, it + U);
      use(a);
      ld(a, it + 2 * U);
      use(b);
    }
    (void)persistent_stride;
  }
  if (acc == 0x12345678u) sink[0] = acc;
}

// Non-constant bytes (a hash of the index), so nothing on the way can shortcut a constant fill.
__global__ void k_fill(uint32_t* p, size_t n4, uint32_t seed) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n4; i += (size_t)gridDim.x * blockDim.x) {
    uint32_t h = (uint32_t)i * 0x9E3779B1u ^ seed;
    h ^= h >> 15; h *= 0x85EBCA77u; h ^= h >> 13;
    p[i] = h;
  }
}

// Copies of `bytes` of non-constant data, enough (>= 400 MB, 2 to 256 copies) that back-to-back
// reads of them never hit the 50 MB L2. False (after printing why) on a CUDA error.
static bool rotation(size_t bytes, std::vector<uint8_t*>& bufs) {
  const int copies = (int)std::min<size_t>(256, std::max<size_t>(2, (400u << 20) / bytes + 1));
  bufs.assign(copies, nullptr);
  for (size_t i = 0; i < bufs.size(); ++i) {
    cudaError_t e = cudaMalloc(&bufs[i], bytes);
    if (e != cudaSuccess) { printf("cudaMalloc: %s\n", cudaGetErrorString(e)); return false; }
    k_fill<<<1024, 256>>>((uint32_t*)bufs[i], bytes / 4, (uint32_t)i);
  }
  const cudaError_t e = cudaDeviceSynchronize();
  if (e != cudaSuccess) { printf("fill: %s\n", cudaGetErrorString(e)); return false; }
  return true;
}

// Median time per launch (us) of launch(b) over every buffer, back to back in one CUDA graph, `inner`
// passes, 9 replays; negative on a CUDA error.
template <class F>
float time_graph(cudaStream_t st, const std::vector<uint8_t*>& bufs, int inner, F launch) {
  cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
  cudaGraph_t g; cudaGraphExec_t ge;
  CKF(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
  for (int i = 0; i < inner; ++i)
    for (auto* b : bufs) launch(b);
  CKF(cudaStreamEndCapture(st, &g));
  CKF(cudaGraphInstantiate(&ge, g, 0));
  CKF(cudaGraphLaunch(ge, st));
  CKF(cudaStreamSynchronize(st));
  std::vector<float> ts;
  for (int r = 0; r < 9; ++r) {
    cudaEventRecord(e0, st); cudaGraphLaunch(ge, st); cudaEventRecord(e1, st); cudaEventSynchronize(e1);
    float ms; cudaEventElapsedTime(&ms, e0, e1); ts.push_back(ms * 1e3f / (inner * bufs.size()));
  }
  cudaGraphExecDestroy(ge); cudaGraphDestroy(g);
  cudaEventDestroy(e0); cudaEventDestroy(e1);
  std::sort(ts.begin(), ts.end());
  return ts[4];
}

// "sizes": the read ceiling at each issue shape's size. For the bytes an M = 1 call at gs 32 reads
// (packed weights + bf16 scale and zero), the fastest of several plain contiguous read kernels,
// timed as the benchmark times ours: back to back in a CUDA graph, rotating over >= 400 MB of
// copies, median of 9 replays. Small calls pay the launch and DRAM ramp that a 1 GB copy does not.
int sizes_mode() {
  struct Shape { int N, K; };
  const Shape shapes[] = {{4096, 4096}, {6144, 4096}, {4096, 14336}, {28672, 4096}, {21504, 5376},
                          {5376, 21504}, {128256, 4096}, {192, 576}, {1536, 576}, {49152, 576}};
  int sms = 0; cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  uint32_t* sink; CK(cudaMalloc(&sink, 4));
  uint8_t *cs, *cd; CK(cudaMalloc(&cs, 1 << 30)); CK(cudaMalloc(&cd, 1 << 30));
  CK(cudaMemset(cs, 0x5A, 1 << 30));
  cudaStream_t st; CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
  std::vector<float> tcs;
  for (int r = 0; r < 5; ++r) {
    cudaEventRecord(e0, st);
    for (int i = 0; i < 10; ++i) cudaMemcpyAsync(cd, cs, 1 << 30, cudaMemcpyDeviceToDevice, st);
    cudaEventRecord(e1, st); cudaEventSynchronize(e1);
    float ms; cudaEventElapsedTime(&ms, e0, e1); tcs.push_back(ms * 1e3f / 10);
  }
  std::sort(tcs.begin(), tcs.end());
  const double copy_bw = 2.0 * (1 << 30) / (tcs[2] * 1e-6) / 1e9;
  CK(cudaFree(cs)); CK(cudaFree(cd));
  printf("D2D copy: %.0f GB/s (read+write)\n", copy_bw);
  printf("us per call; columns: grid-stride 1 x 16B/lane at 4 / 8 / 16 blocks/SM, grid-stride 4 x 16B at 2 / 4 blocks/SM,\n"
         "one pass (grid = all of it) 1 / 2 / 4 x 16B per thread, and on the packed weights alone (not the scales)\n"
         "the matvec pattern: 64 / 128 B per row per iteration one block per tile, 128 B persistent 3/SM.\n"
         "The summary line: the fastest over the whole bytes (not the weights-alone columns).\n");
  for (const Shape& sh : shapes) {
    const size_t bytes = ((size_t)sh.N * sh.K / 2 + (size_t)4 * sh.N * (sh.K / 32) + 15) / 16 * 16;
    const size_t n16 = bytes / 16;
    std::vector<uint8_t*> bufs;
    if (!rotation(bytes, bufs)) return 1;
    const int inner = std::max(1, 1000 / (int)bufs.size());
    auto time_graph = [&](auto launch) { return ::time_graph(st, bufs, inner, launch); };
    float best = 1e30f; char best_name[64] = "";
    bool failed = false;
    char line[512]; int lp = 0;
    auto col = [&](float us) {
      failed |= us < 0;
      lp += snprintf(line + lp, sizeof line - lp, " %7.2f", us);
    };
    auto consider = [&](const char* name, float us) {
      col(us);
      if (us >= 0 && us < best) { best = us; snprintf(best_name, sizeof best_name, "%s", name); }
    };
    for (int bpsm : {4, 8, 16})
      consider("grid-stride 1 x 16B, blocks/SM", time_graph([&](uint8_t* b) { k_contig<<<sms * bpsm, 256, 0, st>>>((const uint4*)b, n16, sink); }));
    for (int bpsm : {2, 4})
      consider("grid-stride 4 x 16B, blocks/SM", time_graph([&](uint8_t* b) { k_contig_un<4><<<sms * bpsm, 256, 0, st>>>((const uint4*)b, n16, sink); }));
    for (int per : {1, 2, 4}) {  // one pass: every thread issues all of its loads at once
      const int grid = (int)((n16 + 256 * per - 1) / (256 * per));
      if (per == 1) consider("one pass, 1 x 16B/thread", time_graph([&](uint8_t* b) { k_contig<<<grid, 256, 0, st>>>((const uint4*)b, n16, sink); }));
      if (per == 2) consider("one pass, 2 x 16B/thread", time_graph([&](uint8_t* b) { k_contig_un<2><<<grid, 256, 0, st>>>((const uint4*)b, n16, sink); }));
      if (per == 4) consider("one pass, 4 x 16B/thread", time_graph([&](uint8_t* b) { k_contig_un<4><<<grid, 256, 0, st>>>((const uint4*)b, n16, sink); }));
    }
    // The matvec pattern on the packed weights alone (N rows of K/2 bytes; these columns time fewer bytes).
    const int RB = sh.K / 2, tiles = sh.N / 16;
    col(time_graph([&](uint8_t* b) { k_tile<16, 1><<<tiles, 256, 0, st>>>(b, sh.N, RB, sink, 0); }));
    col(time_graph([&](uint8_t* b) { k_tile<32, 1><<<tiles, 256, 0, st>>>(b, sh.N, RB, sink, 0); }));
    col(time_graph([&](uint8_t* b) { k_tile<32, 1><<<std::min(tiles, sms * 3), 256, 0, st>>>(b, sh.N, RB, sink, 0); }));
    CK(cudaGetLastError());
    if (failed) return 1;
    printf("%s\n", line);
    const double gbs = bytes / (best * 1e-6) / 1e9;
    char shn[32]; snprintf(shn, sizeof shn, "%dx%d", sh.N, sh.K);
    printf("%-14s %10zu %9.2f %7.1f  %s\n", shn, bytes, best, 100 * gbs / copy_bw, best_name);
    for (auto* b : bufs) CK(cudaFree(b));
  }
  return 0;
}

// "tiles N K": the packed weights of one N x K shape (N rows of K/2 bytes) read in the 16-row matvec
// pattern with no compute, one block of 8 warps per row tile: each warp on a contiguous k-range
// (as the register decode kernels) or interleaved (IL), 64 / 128 bytes per row per iteration, U = 1
// or 2 iterations per batch; and a contiguous one-pass read of the same bytes. Graph-timed as sizes.
int tiles_mode(int N, int K) {
  if (N <= 0 || N % 16 != 0 || K <= 0 || K % 256 != 0) {
    printf("tiles N K: N a multiple of 16 and K of 256 (whole 128-byte iterations of every row)\n");
    return 2;
  }
  uint32_t* sink; CK(cudaMalloc(&sink, 4));
  cudaStream_t st; CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  const int RB = K / 2, tiles = N / 16;
  const size_t bytes = (size_t)N * RB;
  std::vector<uint8_t*> bufs;
  if (!rotation(bytes, bufs)) return 1;
  const int inner = std::max(1, 1000 / (int)bufs.size());
  printf("%d x %d: %.1f MB of packed weights, %d row tiles\n", N, K, bytes / 1e6, tiles);
  auto row = [&](const char* name, float us) {
    printf("%-40s %8.2f us %7.0f GB/s\n", name, us, bytes / (us * 1e-6) / 1e9);
  };
  // Each configuration twice: warps on contiguous k-ranges, then interleaved.
#define TL(CH, U, NAME)                                                                                               \
  row(NAME ", contiguous warps", time_graph(st, bufs, inner, [&](uint8_t* b) { k_tile<CH, U, false><<<tiles, 256, 0, st>>>(b, N, RB, sink, 0); })); \
  row(NAME ", interleaved warps", time_graph(st, bufs, inner, [&](uint8_t* b) { k_tile<CH, U, true><<<tiles, 256, 0, st>>>(b, N, RB, sink, 0); }))
  TL(16, 1, "64 B/row/it U1");
  TL(16, 2, "64 B/row/it U2");
  TL(32, 1, "128 B/row/it U1");
  TL(32, 2, "128 B/row/it U2");
#undef TL
  const int grid = (int)((bytes / 16 + 255) / 256);
  row("one pass, 1 x 16B/thread", time_graph(st, bufs, inner, [&](uint8_t* b) { k_contig<<<grid, 256, 0, st>>>((const uint4*)b, bytes / 16, sink); }));
  CK(cudaGetLastError());
  for (auto* b : bufs) CK(cudaFree(b));
  return 0;
}

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "sizes") return sizes_mode();
  if (argc > 3 && std::string(argv[1]) == "tiles") return tiles_mode(atoi(argv[2]), atoi(argv[3]));
  const int N = 28672, RB = 2048;  // 28672 x 4096 int4 weights
  const size_t bytes = (size_t)N * RB;
  const int copies = 8;  // 470 MB: defeats the 50 MB L2
  std::vector<uint8_t*> bufs(copies);
  for (auto& b : bufs) { CK(cudaMalloc(&b, bytes)); CK(cudaMemset(b, 0x5A, bytes)); }
  uint32_t* sink; CK(cudaMalloc(&sink, 4));
  uint8_t *cs, *cd; CK(cudaMalloc(&cs, 1 << 30)); CK(cudaMalloc(&cd, 1 << 30));
  cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
  int sms = 0; cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  auto time = [&](auto launch, int reps) {
    std::vector<float> ts;
    for (int r = 0; r < 7; ++r) {
      for (int i = 0; i < copies; ++i) launch(bufs[i]);
      cudaEventRecord(e0);
      for (int i = 0; i < reps; ++i) launch(bufs[i % copies]);
      cudaEventRecord(e1); cudaEventSynchronize(e1);
      float ms; cudaEventElapsedTime(&ms, e0, e1); ts.push_back(ms * 1e3f / reps);
    }
    std::sort(ts.begin(), ts.end());
    return ts[3];
  };
  float tc = time([&](uint8_t*) { cudaMemcpyAsync(cd, cs, 1 << 30, cudaMemcpyDeviceToDevice); }, 10);
  const double copy_bw = 2.0 * (1 << 30) / (tc * 1e-6) / 1e9;
  printf("D2D copy: %.0f GB/s (read+write)\n", copy_bw);
  printf("%-44s %9s %8s %7s\n", "pattern (28672 x 2048 B)", "us", "GB/s", "%copy");
  auto row = [&](const char* name, float us) {
    const double gbs = bytes / (us * 1e-6) / 1e9;
    printf("%-44s %9.2f %8.0f %7.1f\n", name, us, gbs, 100 * gbs / copy_bw);
  };
  for (int bpsm : {4, 8, 16}) {
    char nm[64]; snprintf(nm, sizeof nm, "contiguous 16B/lane, %d x 256-thr blocks/SM", bpsm);
    row(nm, time([&](uint8_t* b) { k_contig<<<sms * bpsm, 256>>>((const uint4*)b, bytes / 16, sink); }, 40));
  }
  for (int bpsm : {2, 4}) {
    char nm[64];
    snprintf(nm, sizeof nm, "contiguous 4 x 16B/lane in flight, %d blocks/SM", bpsm);
    row(nm, time([&](uint8_t* b) { k_contig_un<4><<<sms * bpsm, 256>>>((const uint4*)b, bytes / 16, sink); }, 40));
    snprintf(nm, sizeof nm, "contiguous 8 x 16B/lane in flight, %d blocks/SM", bpsm);
    row(nm, time([&](uint8_t* b) { k_contig_un<8><<<sms * bpsm, 256>>>((const uint4*)b, bytes / 16, sink); }, 40));
  }
#define BULK(ST, NS, BPS)                                                                                     \
  do {                                                                                                        \
    CK(cudaFuncSetAttribute(k_bulk<ST, NS>, cudaFuncAttributeMaxDynamicSharedMemorySize, ST * NS));           \
    char nm[64];                                                                                              \
    snprintf(nm, sizeof nm, "bulk copies %d KB x %d stages, %d blocks/SM", ST / 1024, NS, BPS);               \
    row(nm, time([&](uint8_t* b) { k_bulk<ST, NS><<<sms * BPS, 256, ST * NS>>>(b, bytes, sink); }, 40));      \
  } while (0)
  BULK(4096, 4, 4);
  BULK(8192, 4, 3);
  BULK(16384, 4, 2);
  BULK(8192, 8, 2);
  BULK(32768, 3, 2);
  const int tiles = N / 16;
#define TILE(CH, U, GRID, NAME) row(NAME, time([&](uint8_t* b) { k_tile<CH, U><<<GRID, 256>>>(b, N, RB, sink, 0); }, 40))
  TILE(16, 1, tiles, "tile 64B/row/it U1 block/tile (today)");
  TILE(16, 2, tiles, "tile 64B/row/it U2 block/tile");
  TILE(16, 4, tiles, "tile 64B/row/it U4 block/tile");
  TILE(32, 1, tiles, "tile 128B/row/it U1 block/tile");
  TILE(32, 2, tiles, "tile 128B/row/it U2 block/tile");
  TILE(64, 1, tiles, "tile 256B/row/it U1 block/tile");
  TILE(16, 1, sms * 3, "tile 64B/row/it U1 persistent 3/SM");
  TILE(16, 2, sms * 2, "tile 64B/row/it U2 persistent 2/SM");
  TILE(32, 1, sms * 3, "tile 128B/row/it U1 persistent 3/SM");
  TILE(32, 2, sms * 2, "tile 128B/row/it U2 persistent 2/SM");
  TILE(64, 1, sms * 2, "tile 256B/row/it U1 persistent 2/SM");
  CK(cudaGetLastError());
  return 0;
}
