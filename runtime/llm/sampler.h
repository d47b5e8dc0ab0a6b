// Next-token choice from one row of logits: greedy (temperature 0) or temperature sampling with
// optional top-k and top-p (nucleus) filtering, from a seeded generator (same seed, same tokens).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace int4_cuda {
namespace llm {

struct SamplerConfig {
  float temperature = 0.0f;  // <= 0: greedy
  float top_p = 1.0f;        // keep the smallest set of most likely tokens whose mass reaches top_p
  int32_t top_k = 0;         // <= 0: no limit
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplerConfig& cfg);
  // Index of the chosen token among logits[0, n).
  int32_t sample(const float* logits, int64_t n);

 private:
  SamplerConfig cfg_;
  std::mt19937_64 rng_;
  std::vector<int32_t> idx_;
  std::vector<double> p_;
};

// First index of the largest value (as torch.argmax).
int32_t argmax(const float* logits, int64_t n);

}  // namespace llm
}  // namespace int4_cuda
