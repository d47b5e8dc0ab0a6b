#include "sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace int4_cuda {
namespace llm {

int32_t argmax(const float* x, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (x[i] > x[best] || (std::isnan(x[i]) && !std::isnan(x[best]))) best = i;
  return static_cast<int32_t>(best);
}

Sampler::Sampler(const SamplerConfig& cfg) : cfg_(cfg), rng_(cfg.seed) {}

int32_t Sampler::sample(const float* x, int64_t n) {
  if (cfg_.temperature <= 0.0f || n <= 1) return argmax(x, n);
  idx_.resize(n);
  std::iota(idx_.begin(), idx_.end(), 0);
  int64_t k = (cfg_.top_k > 0 && cfg_.top_k < n) ? cfg_.top_k : n;
  auto by_logit = [&](int32_t a, int32_t b) { return x[a] > x[b] || (x[a] == x[b] && a < b); };
  if (k < n || cfg_.top_p < 1.0f) {
    if (k < n) std::partial_sort(idx_.begin(), idx_.begin() + k, idx_.end(), by_logit);
    else std::sort(idx_.begin(), idx_.end(), by_logit);
  }
  // Softmax over the k candidates at this temperature.
  double mx = -INFINITY;
  for (int64_t i = 0; i < k; ++i) mx = std::max(mx, static_cast<double>(x[idx_[i]]));
  p_.resize(k);
  double sum = 0;
  for (int64_t i = 0; i < k; ++i) sum += p_[i] = std::exp((x[idx_[i]] - mx) / cfg_.temperature);
  for (int64_t i = 0; i < k; ++i) p_[i] /= sum;
  if (cfg_.top_p < 1.0f) {  // candidates are sorted: cut after the mass reaches top_p
    double acc = 0;
    int64_t keep = 0;
    while (keep < k) {
      acc += p_[keep++];
      if (acc >= cfg_.top_p) break;
    }
    k = std::max<int64_t>(keep, 1);
    sum = acc;
  } else {
    sum = 1.0;
  }
  const double u = std::uniform_real_distribution<double>(0.0, sum)(rng_);
  double acc = 0;
  for (int64_t i = 0; i < k; ++i) {
    acc += p_[i];
    if (u < acc) return idx_[i];
  }
  return idx_[k - 1];
}

}  // namespace llm
}  // namespace int4_cuda
