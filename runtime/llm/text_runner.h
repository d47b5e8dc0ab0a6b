// The generation loop of int4_cuda_runner over an exported LLM program (ExecuTorch Module API):
// forward(tokens int64 [1, T], input_pos int64 [1]) -> f32 logits [1, vocab] of the last position,
// plus the constant methods get_max_seq_len / get_eos_ids / get_vocab_size.
//
//   prefill: the prompt in chunks of at most max_seq_len (or --prefill_chunk) tokens;
//   decode:  one token per forward call at T = 1 (with the delegate's "cuda_graph" option on,
//            every step after the second replays one captured CUDA graph);
//   stops:   an EOS id from the .pte, max_new_tokens, or the KV cache's end (clean stop + message).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "sampler.h"
#include "stats.h"

namespace executorch {
namespace extension {
namespace module {
class Module;
}
}  // namespace extension
}  // namespace executorch

namespace int4_cuda {
namespace llm {

struct GenerationConfig {
  int64_t max_new_tokens = 128;
  int64_t prefill_chunk = 0;  // 0: max_seq_len
  bool ignore_eos = false;    // benchmarks: always generate max_new_tokens (or up to the cache end)
  SamplerConfig sampler;
};

class TextRunner {
 public:
  // Opens the program (no GPU work yet) and reads its metadata methods. nullptr + *error on
  // failure (the message names the file and the fix).
  static std::unique_ptr<TextRunner> open(const std::string& pte, const std::string& ptd, std::string* error);
  ~TextRunner();

  int64_t max_seq_len() const { return max_seq_len_; }
  int64_t vocab_size() const { return vocab_size_; }
  const std::set<int64_t>& eos_ids() const { return eos_; }

  // Loads `forward` (the delegate's init: weights to the GPU). *error on failure.
  bool load_forward(std::string* error);

  // Generates after `prompt` (which must fit: prompt.size() < max_seq_len). on_token gets each
  // generated id (EOS excluded). Fills the timing/count fields of *stats.
  bool generate(const std::vector<int32_t>& prompt, const GenerationConfig& cfg,
                const std::function<void(int32_t)>& on_token, Stats* stats, std::string* error);

 private:
  TextRunner() = default;
  bool forward(const int64_t* tokens, int64_t n, int64_t pos, std::vector<float>* logits, std::string* error);

  std::unique_ptr<executorch::extension::module::Module> module_;
  std::string pte_, ptd_;
  int64_t max_seq_len_ = 0, vocab_size_ = 0;
  std::set<int64_t> eos_;
};

}  // namespace llm
}  // namespace int4_cuda
