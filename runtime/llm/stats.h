// Generation statistics in ExecuTorch's LLM-runner convention: one stdout line
// `PyTorchObserver {json}` (times in ms since the epoch, SCALING_FACTOR_UNITS_PER_SECOND = 1000,
// GPU memory in bytes) plus a human-readable rate block.
#pragma once

#include <cstdint>
#include <string>

namespace int4_cuda {
namespace llm {

int64_t time_in_ms();  // wall clock, ms since the epoch
double time_in_s();    // monotonic, seconds

struct Stats {
  int64_t model_load_start_ms = 0, model_load_end_ms = 0;
  int64_t inference_start_ms = 0, prompt_eval_end_ms = 0, first_token_ms = 0, inference_end_ms = 0;
  double aggregate_sampling_time_ms = 0;
  int64_t prompt_tokens = 0, generated_tokens = 0;
  // Precise phase times (monotonic clock) and step counts.
  double prefill_s = 0, decode_s = 0;
  int64_t prefill_chunks = 0, decode_steps = 0;
  // GPU memory (bytes; 0 when unknown).
  int64_t gpu_total_bytes = 0, gpu_free_before_load_bytes = 0, gpu_free_after_load_bytes = 0,
          gpu_free_after_generate_bytes = 0;
  bool cuda_graph = false;
  int64_t cuda_graph_captures = 0, cuda_graph_replays = 0;
  std::string stop_reason;  // "eos", "max_new_tokens", "kv_cache_full"

  double prefill_tokens_per_s() const { return prefill_s > 0 ? prompt_tokens / prefill_s : 0; }
  double decode_tokens_per_s() const { return decode_s > 0 ? decode_steps / decode_s : 0; }

  std::string to_json() const;   // the JSON object of the PyTorchObserver line
  std::string report() const;    // the human-readable block (several lines)
};

}  // namespace llm
}  // namespace int4_cuda
