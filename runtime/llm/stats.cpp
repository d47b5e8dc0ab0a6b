#include "stats.h"

#include <chrono>
#include <cstdio>

#include <nlohmann/json.hpp>

namespace int4_cuda {
namespace llm {

int64_t time_in_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

double time_in_s() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

std::string Stats::to_json() const {
  nlohmann::ordered_json j;
  j["prompt_tokens"] = prompt_tokens;
  j["generated_tokens"] = generated_tokens;
  j["model_load_start_ms"] = model_load_start_ms;
  j["model_load_end_ms"] = model_load_end_ms;
  j["inference_start_ms"] = inference_start_ms;
  j["inference_end_ms"] = inference_end_ms;
  j["prompt_eval_end_ms"] = prompt_eval_end_ms;
  j["first_token_ms"] = first_token_ms;
  j["aggregate_sampling_time_ms"] = static_cast<int64_t>(aggregate_sampling_time_ms);
  j["SCALING_FACTOR_UNITS_PER_SECOND"] = 1000;
  j["gpu_total_bytes"] = gpu_total_bytes;
  j["gpu_free_before_load_bytes"] = gpu_free_before_load_bytes;
  j["gpu_free_after_load_bytes"] = gpu_free_after_load_bytes;
  j["gpu_free_after_generate_bytes"] = gpu_free_after_generate_bytes;
  // int4_cuda additions: the rates and phases spelled out.
  j["load_time_ms"] = model_load_end_ms - model_load_start_ms;
  j["time_to_first_token_ms"] = first_token_ms - inference_start_ms;
  j["prefill_tokens_per_s"] = prefill_tokens_per_s();
  j["decode_tokens_per_s"] = decode_tokens_per_s();
  j["prefill_chunks"] = prefill_chunks;
  j["decode_steps"] = decode_steps;
  j["cuda_graph"] = cuda_graph;
  j["cuda_graph_captures"] = cuda_graph_captures;
  j["cuda_graph_replays"] = cuda_graph_replays;
  j["stop_reason"] = stop_reason;
  return j.dump();
}

std::string Stats::report() const {
  char buf[2048];
  const double total_s = (inference_end_ms - inference_start_ms) / 1000.0;
  const double mib = 1024.0 * 1024.0;
  snprintf(buf, sizeof(buf),
           "\tPrompt Tokens: %lld    Generated Tokens: %lld\n"
           "\tModel Load Time:\t\t%.3f (seconds)\n"
           "\tTotal inference time:\t\t%.3f (seconds)\t\t Rate: \t%.2f (tokens/second)\n"
           "\t\tPrompt evaluation:\t%.4f (seconds)\t\t Rate: \t%.2f (tokens/second)\n"
           "\t\tGenerated %lld tokens:\t%.4f (seconds)\t\t Rate: \t%.2f (tokens/second)\n"
           "\tTime to first generated token:\t%.4f (seconds)\n"
           "\tSampling time over %lld tokens:\t%.4f (seconds)\n"
           "\tGPU memory: total %.0f MiB, free before load %.0f MiB, after load %.0f MiB, after generate %.0f MiB\n"
           "\tDecode: %s (%lld graph replays)\n",
           static_cast<long long>(prompt_tokens), static_cast<long long>(generated_tokens),
           (model_load_end_ms - model_load_start_ms) / 1000.0, total_s,
           total_s > 0 ? generated_tokens / total_s : 0.0, prefill_s, prefill_tokens_per_s(),
           static_cast<long long>(decode_steps), decode_s, decode_tokens_per_s(),
           (first_token_ms - inference_start_ms) / 1000.0, static_cast<long long>(prompt_tokens + generated_tokens),
           aggregate_sampling_time_ms / 1000.0, gpu_total_bytes / mib, gpu_free_before_load_bytes / mib,
           gpu_free_after_load_bytes / mib, gpu_free_after_generate_bytes / mib,
           cuda_graph ? "CUDA graph" : "eager launches", static_cast<long long>(cuda_graph_replays));
  return buf;
}

}  // namespace llm
}  // namespace int4_cuda
