// Host-only unit tests of the runner pieces: sampler (greedy, seeded sampling, top-k/top-p),
// UTF-8 streaming of tokens that split a character, lossy decoding, ChatML, stats JSON.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sampler.h"
#include "stats.h"
#include "tokenizer.h"

using namespace int4_cuda::llm;

static int g_failures = 0;
#define CHECK(cond)                                                 \
  do {                                                              \
    if (!(cond)) {                                                  \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++g_failures;                                                 \
    }                                                               \
  } while (0)

int main() {
  // Greedy = first argmax.
  const std::vector<float> l = {0.1f, 3.0f, 3.0f, -1.0f, 2.5f};
  Sampler greedy(SamplerConfig{});
  CHECK(greedy.sample(l.data(), l.size()) == 1);

  // Same seed, same sequence; top_k = 1 is greedy; top_k = 2 stays in {1, 2}.
  SamplerConfig c;
  c.temperature = 1.0f;
  c.seed = 42;
  Sampler a(c), b(c);
  for (int i = 0; i < 50; ++i) CHECK(a.sample(l.data(), l.size()) == b.sample(l.data(), l.size()));
  c.top_k = 1;
  Sampler k1(c);
  for (int i = 0; i < 20; ++i) CHECK(k1.sample(l.data(), l.size()) == 1);
  c.top_k = 2;
  Sampler k2(c);
  for (int i = 0; i < 50; ++i) {
    const int s = k2.sample(l.data(), l.size());
    CHECK(s == 1 || s == 2);
  }
  // Tiny top_p keeps only the most likely token.
  c.top_k = 0;
  c.top_p = 0.01f;
  Sampler p(c);
  for (int i = 0; i < 20; ++i) CHECK(p.sample(l.data(), l.size()) == 1);
  // Sampling follows the distribution roughly: logits {0, log 3} -> about 75 % index 1.
  c.top_p = 1.0f;
  c.seed = 7;
  Sampler d(c);
  const std::vector<float> two = {0.0f, std::log(3.0f)};
  int ones = 0;
  for (int i = 0; i < 4000; ++i) ones += d.sample(two.data(), 2);
  CHECK(ones > 2800 && ones < 3200);

  // UTF-8 streaming: "é" (C3 A9) and "😀" (F0 9F 98 80) split over several tokens.
  std::string pending, out;
  out += take_complete_utf8(&pending, "a\xC3");
  CHECK(out == "a" && pending == "\xC3");
  out += take_complete_utf8(&pending, "\xA9\xF0\x9F");
  CHECK(out == "a\xC3\xA9" && pending == "\xF0\x9F");
  out += take_complete_utf8(&pending, "\x98\x80!");
  CHECK(out == "a\xC3\xA9\xF0\x9F\x98\x80!" && pending.empty());
  // An invalid byte is replaced, not held back.
  out = take_complete_utf8(&pending, "\xFFz");
  CHECK(out == "\xEF\xBF\xBDz" && pending.empty());
  // Lossy: maximal invalid subparts (as Rust's from_utf8_lossy).
  CHECK(utf8_lossy("a\xF0\x9F\x98") == "a\xEF\xBF\xBD");
  CHECK(utf8_lossy("\xE0\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD");
  CHECK(utf8_valid("caf\xC3\xA9") && !utf8_valid("\xC0\xAF"));

  // ChatML.
  CHECK(chatml("Hi", "") == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  CHECK(chatml("Hi", "S") == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");

  // Stats JSON parses and carries the rates.
  Stats st;
  st.prompt_tokens = 10;
  st.prefill_s = 0.5;
  st.decode_steps = 9;
  st.decode_s = 0.1;
  const auto j = nlohmann::json::parse(st.to_json());
  CHECK(j["prompt_tokens"] == 10 && std::fabs(j["prefill_tokens_per_s"].get<double>() - 20.0) < 1e-9);
  CHECK(std::fabs(j["decode_tokens_per_s"].get<double>() - 90.0) < 1e-6);
  CHECK(j["SCALING_FACTOR_UNITS_PER_SECOND"] == 1000);

  if (g_failures) {
    std::fprintf(stderr, "%d check(s) failed\n", g_failures);
    return 1;
  }
  std::printf("int4_cuda_llm_test: all checks passed\n");
  return 0;
}
