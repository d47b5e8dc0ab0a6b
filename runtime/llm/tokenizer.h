// Hugging Face tokenizer.json, byte-level BPE (GPT-2 / Llama 3 / Qwen2 / SmolLM2 family), in C++.
//
// What is read from tokenizer.json (anything else is refused with an error naming the file and
// the field):
//   model         BPE: vocab, merges ("a b" strings or [a, b] pairs, rank = position),
//                 ignore_merges; no dropout / subword prefix / suffix / byte_fallback.
//   added_tokens  split out of the text first (leftmost-longest), special or not.
//   normalizer    null only.
//   pre_tokenizer ByteLevel(add_prefix_space, use_regex), Digits(individual_digits),
//                 Split(pattern {Regex|String}, behavior Isolated|Removed|MergedWithPrevious|
//                 MergedWithNext, invert), or a Sequence of these.
//   decoder       ByteLevel (or null, treated as ByteLevel).
//   post_processor is not applied: encode() behaves like `encode(text, add_special_tokens=False)`.
//
// Regexes run on PCRE2 (UTF + Unicode properties), JSON on nlohmann-json.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace int4_cuda {
namespace llm {

class Tokenizer {
 public:
  // Loads `path`; on failure returns nullptr and sets *error to a message naming the file.
  static std::unique_ptr<Tokenizer> load(const std::string& path, std::string* error);
  ~Tokenizer();

  // Token ids of `text` (valid UTF-8; otherwise returns false with *error set).
  bool encode(const std::string& text, std::vector<int32_t>* ids, std::string* error) const;
  // Text of `ids` as Hugging Face's decode() gives it (invalid UTF-8 becomes U+FFFD).
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const;
  // The raw bytes one token stands for ("" for an unknown id; for a special token when skipped).
  std::string token_bytes(int32_t id, bool skip_special_tokens) const;

  int32_t token_to_id(const std::string& token) const;  // -1 if absent
  bool is_special(int32_t id) const;
  size_t vocab_size() const { return id_to_token_.size(); }

  struct PreStep;  // one pre-tokenizer stage (defined in tokenizer.cpp)

 private:
  Tokenizer() = default;
  void bpe_word(const std::string& mapped, std::vector<int32_t>* out) const;
  void encode_plain(const std::string& text, std::vector<int32_t>* ids) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<uint8_t> special_;  // per id
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // (a, b) -> (rank, merged id)
  bool ignore_merges_ = false;
  int32_t unk_id_ = -1;
  struct Added {
    std::string content;
    int32_t id;
  };
  std::vector<Added> added_;
  std::vector<std::vector<size_t>> added_by_first_byte_;  // 256 buckets of indexes into added_
  std::vector<std::unique_ptr<PreStep>> pre_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

// Appends `bytes` to `*pending` and moves its longest complete-UTF-8 prefix into the returned
// string (for streaming tokens that may end inside a character).
std::string take_complete_utf8(std::string* pending, const std::string& bytes);
// `bytes` with each maximal invalid UTF-8 subpart replaced by U+FFFD (as Rust's from_utf8_lossy).
std::string utf8_lossy(const std::string& bytes);
bool utf8_valid(const std::string& s);

// ChatML for one user turn with a generation prompt (as int4_cuda/llm/tokenizer.py's chatml()).
std::string chatml(const std::string& prompt, const std::string& system);
// The default system prompt of the chat template in `dir`/tokenizer_config.json ("" if none), as
// int4_cuda/llm/tokenizer.py's default_system_prompt().
std::string default_system_prompt(const std::string& tokenizer_dir);

}  // namespace llm
}  // namespace int4_cuda
