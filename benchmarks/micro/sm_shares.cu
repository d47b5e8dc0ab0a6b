// Is the ragged end of a one-round matvec structural? Every block reads the same number of bytes;
// per-block start/end (%globaltimer) and %smid show whether the slow blocks sit on the same SMs in
// every call, and whether those SMs share a GPC (GPCs found from thread-block-cluster placement:
// blocks of one cluster always run in one GPC). Prints per-GPC tables and the rep-to-rep
// correlation of per-SM times.
// Build: nvcc -O3 -std=c++17 -arch=sm_90 benchmarks/micro/sm_shares.cu -o build-gpu/sm_shares
// Run: sm_shares [bytes_per_call_MB=37] [blocks_per_sm=2]
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <vector>
#include <algorithm>
#include <numeric>
#include <cmath>

#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { printf("%s: %s\n", #x, cudaGetErrorString(e_)); exit(1); } } while (0)

__device__ __forceinline__ uint32_t smid() { uint32_t r; asm volatile("mov.u32 %0, %%smid;" : "=r"(r)); return r; }
__device__ __forceinline__ uint64_t gtime() { uint64_t t; asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)); return t; }

// One block per SM (the dynamic shared memory sees to it); blocks spin so that every cluster of
// the grid is resident at once, then record where they ran.
__global__ void k_where(uint32_t* out, int spin_ns) {
  extern __shared__ uint8_t pad[];
  uint64_t t0 = gtime();
  while (gtime() - t0 < (uint64_t)spin_ns) {}
  if (threadIdx.x == 0) { out[blockIdx.x] = smid(); pad[0] = 1; }
}

__device__ __forceinline__ uint4 ld_na(const void* p) {
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
  return r;
}

// Block b reads its own contiguous chunk of n16 16-byte words, 4 loads in flight per thread.
__global__ void __launch_bounds__(256) k_chunk(const uint4* p, size_t n16, uint64_t* rec, uint32_t* sink) {
  __shared__ uint64_t t_start;
  if (threadIdx.x == 0) t_start = gtime();
  const uint4* q = p + blockIdx.x * n16;
  uint32_t acc = 0;
  size_t i = threadIdx.x;
  for (; i + 3 * 256 < n16; i += 4 * 256) {
    uint4 a = ld_na(q + i), b = ld_na(q + i + 256), c = ld_na(q + i + 512), d = ld_na(q + i + 768);
    acc ^= a.x ^ b.y ^ c.z ^ d.w;
  }
  for (; i < n16; i += 256) { uint4 a = ld_na(q + i); acc ^= a.x; }
  if (acc == 0x12345678u) sink[0] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    rec[3 * blockIdx.x] = t_start;
    rec[3 * blockIdx.x + 1] = gtime();
    rec[3 * blockIdx.x + 2] = smid();
  }
}

static int find(std::vector<int>& u, int a) { while (u[a] != a) a = u[a] = u[u[a]]; return a; }

static double pearson(const std::vector<double>& a, const std::vector<double>& b) {
  double ma = std::accumulate(a.begin(), a.end(), 0.0) / a.size(), mb = std::accumulate(b.begin(), b.end(), 0.0) / b.size();
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < a.size(); ++i) { sab += (a[i] - ma) * (b[i] - mb); saa += (a[i] - ma) * (a[i] - ma); sbb += (b[i] - mb) * (b[i] - mb); }
  return sab / std::sqrt(saa * sbb);
}

int main(int argc, char** argv) {
  double mb = argc > 1 ? atof(argv[1]) : 37.0;
  int bps = argc > 2 ? atoi(argv[2]) : 2;
  if (!(mb > 0) || bps < 1 || bps > 8) {
    printf("usage: sm_shares [MB per call > 0] [blocks per SM, 1-8]\n");
    return 2;
  }
  cudaDeviceProp prop; CK(cudaGetDeviceProperties(&prop, 0));
  const int nsm = prop.multiProcessorCount;

  // ---- GPCs from cluster placement.
  std::vector<int> uf(nsm); std::iota(uf.begin(), uf.end(), 0);
  uint32_t* d_where; CK(cudaMalloc(&d_where, 4096 * 4));
  CK(cudaFuncSetAttribute(k_where, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
  const int smem = 160 * 1024;
  CK(cudaFuncSetAttribute(k_where, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  for (int cs : {16, 8, 4, 2}) {
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute at[1]; at[0].id = cudaLaunchAttributeClusterDimension;
    at[0].val.clusterDim.x = cs; at[0].val.clusterDim.y = 1; at[0].val.clusterDim.z = 1;
    cfg.blockDim = dim3(32); cfg.dynamicSmemBytes = smem; cfg.attrs = at; cfg.numAttrs = 1;
    cfg.gridDim = dim3(cs);
    int maxc = 0;
    if (cudaOccupancyMaxActiveClusters(&maxc, (void*)k_where, &cfg) != cudaSuccess || maxc == 0) { cudaGetLastError(); printf("cluster %d: not placeable\n", cs); continue; }
    printf("cluster %2d: %d resident clusters (%d SMs)\n", cs, maxc, maxc * cs);
    for (int rep = 0; rep < 24; ++rep) {
      int nc = std::max(1, maxc - (rep % 4));  // fewer clusters than fit, so placement varies
      cfg.gridDim = dim3(nc * cs);
      CK(cudaLaunchKernelEx(&cfg, k_where, d_where, 20000));
      CK(cudaDeviceSynchronize());
      std::vector<uint32_t> w(nc * cs);
      CK(cudaMemcpy(w.data(), d_where, w.size() * 4, cudaMemcpyDeviceToHost));
      for (int c = 0; c < nc; ++c)
        for (int j = 1; j < cs; ++j) uf[find(uf, w[c * cs + j])] = find(uf, w[c * cs]);
    }
  }
  std::vector<int> gpc_of(nsm), roots;
  for (int s = 0; s < nsm; ++s) {
    int r = find(uf, s);
    auto it = std::find(roots.begin(), roots.end(), r);
    if (it == roots.end()) { roots.push_back(r); gpc_of[s] = (int)roots.size() - 1; } else gpc_of[s] = (int)(it - roots.begin());
  }
  const int ng = (int)roots.size();
  std::vector<int> gsize(ng, 0);
  for (int s = 0; s < nsm; ++s) gsize[gpc_of[s]]++;
  printf("groups found: %d; sizes:", ng);
  for (int g = 0; g < ng; ++g) printf(" %d", gsize[g]);
  printf("\n");

  // ---- Bandwidth shares: equal chunks, one call = bps blocks per SM, rotating buffers (no L2 reuse).
  const int grid = nsm * bps;
  size_t n16 = (size_t)(mb * 1e6 / grid / 16);
  n16 = (n16 + 1023) / 1024 * 1024;
  const size_t call_bytes = n16 * 16 * grid;
  const int nbuf = (int)std::max<size_t>(2, (size_t)(450e6 / call_bytes) + 1);
  uint8_t* buf; CK(cudaMalloc(&buf, call_bytes * nbuf));
  CK(cudaMemset(buf, 0x5a, call_bytes * nbuf));
  const int reps = 40;
  uint64_t* d_rec; CK(cudaMalloc(&d_rec, (size_t)reps * grid * 3 * 8));
  uint32_t* sink; CK(cudaMalloc(&sink, 4));
  for (int w = 0; w < 5; ++w) k_chunk<<<grid, 256>>>((const uint4*)(buf + (w % nbuf) * call_bytes), n16, d_rec, sink);
  for (int r = 0; r < reps; ++r)
    k_chunk<<<grid, 256>>>((const uint4*)(buf + (r % nbuf) * call_bytes), n16, d_rec + (size_t)r * grid * 3, sink);
  CK(cudaDeviceSynchronize());
  std::vector<uint64_t> rec((size_t)reps * grid * 3);
  CK(cudaMemcpy(rec.data(), d_rec, rec.size() * 8, cudaMemcpyDeviceToHost));

  printf("\n%d blocks (%d per SM), %.1f KB each, %.1f MB per call, %d calls\n", grid, bps, n16 * 16 / 1e3, call_bytes / 1e6, reps);
  std::vector<std::vector<double>> sm_end(reps, std::vector<double>(nsm, 0.0));
  std::vector<double> call_us, spread_us, med_us;
  std::vector<double> g_sum(ng, 0.0); std::vector<int> g_n(ng, 0);
  for (int r = 0; r < reps; ++r) {
    const uint64_t* R = rec.data() + (size_t)r * grid * 3;
    uint64_t t0 = ~0ull, t1 = 0;
    for (int b = 0; b < grid; ++b) { t0 = std::min(t0, R[3 * b]); t1 = std::max(t1, R[3 * b + 1]); }
    std::vector<double> ends(grid);
    std::vector<int> cnt(nsm, 0);
    for (int b = 0; b < grid; ++b) {
      double e = (R[3 * b + 1] - t0) * 1e-3;
      ends[b] = e;
      int s = (int)R[3 * b + 2];
      sm_end[r][s] = std::max(sm_end[r][s], e);  // an SM is done when its last block is
      cnt[s]++;
    }
    std::vector<double> sorted = ends; std::sort(sorted.begin(), sorted.end());
    call_us.push_back((t1 - t0) * 1e-3);
    med_us.push_back(sorted[grid / 2]);
    spread_us.push_back(sorted.back() - sorted.front());
    for (int s = 0; s < nsm; ++s) if (cnt[s]) { g_sum[gpc_of[s]] += sm_end[r][s]; g_n[gpc_of[s]]++; }
  }
  auto med = [](std::vector<double> v) { std::sort(v.begin(), v.end()); return v[v.size() / 2]; };
  printf("call (first start to last end) median %.2f us = %.1f GB/s; median block end %.2f us; first-to-last end spread median %.2f us\n",
         med(call_us), call_bytes / med(call_us) * 1e-3, med(med_us), med(spread_us));
  // Structural? Correlate per-SM end times of the even calls' mean with the odd calls' mean.
  std::vector<double> ev(nsm, 0), od(nsm, 0);
  for (int r = 0; r < reps; ++r) for (int s = 0; s < nsm; ++s) (r % 2 ? od : ev)[s] += sm_end[r][s] / (reps / 2);
  printf("per-SM end time, mean of even calls vs mean of odd calls: pearson r = %.3f\n", pearson(ev, od));
  std::vector<double> all(nsm); for (int s = 0; s < nsm; ++s) all[s] = 0.5 * (ev[s] + od[s]);
  std::vector<double> sa = all; std::sort(sa.begin(), sa.end());
  printf("per-SM mean end: min %.2f  median %.2f  max %.2f us\n", sa.front(), sa[nsm / 2], sa.back());
  printf("\n| group | SMs | mean SM end (us) | min | max |\n|---|---|---|---|---|\n");
  for (int g = 0; g < ng; ++g) {
    double lo = 1e30, hi = 0;
    for (int s = 0; s < nsm; ++s) if (gpc_of[s] == g) { lo = std::min(lo, all[s]); hi = std::max(hi, all[s]); }
    printf("| %d | %d | %.2f | %.2f | %.2f |\n", g, gsize[g], g_n[g] ? g_sum[g] / g_n[g] : 0.0, lo, hi);
  }
  printf("\nper-SM mean end (us), by SM id:\n");
  for (int s = 0; s < nsm; ++s) printf("%3d:g%d:%.2f%s", s, gpc_of[s], all[s], (s % 8 == 7) ? "\n" : "  ");
  printf("\n");
  return 0;
}
