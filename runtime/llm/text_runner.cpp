#include "text_runner.h"

#include <algorithm>
#include <cstring>

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor_ptr.h>
#include <executorch/runtime/core/evalue.h>

#include "c_api.h"

namespace int4_cuda {
namespace llm {

using executorch::aten::ScalarType;
using executorch::extension::module::Module;
using executorch::runtime::Error;
using executorch::runtime::EValue;

namespace {

std::string et_error(Error e) {
  char b[64];
  snprintf(b, sizeof(b), "ExecuTorch error 0x%x", static_cast<unsigned>(e));
  std::string s = b;
  const char* d = int4_cuda_last_error();
  if (d && *d) s += ": " + std::string(d);
  return s;
}

}  // namespace

TextRunner::~TextRunner() = default;

std::unique_ptr<TextRunner> TextRunner::open(const std::string& pte, const std::string& ptd, std::string* error) {
  std::unique_ptr<TextRunner> r(new TextRunner());
  r->pte_ = pte;
  r->ptd_ = ptd;
  r->module_ = ptd.empty() ? std::make_unique<Module>(pte, Module::LoadMode::File)
                           : std::make_unique<Module>(pte, ptd, Module::LoadMode::File);
  // Full flatbuffer verification: the default (minimal) lets a damaged .pte crash the loader.
  const Error e = r->module_->load(executorch::runtime::Program::Verification::InternalConsistency);
  if (e != Error::Ok) {
    *error = pte + ": cannot load the program (" + et_error(e) + "); is it a .pte written by export_llm?" +
             (ptd.empty() ? "" : " (data: " + ptd + ")");
    return nullptr;
  }
  auto names = r->module_->method_names();
  if (!names.ok() || !names->count("forward") || !names->count("get_max_seq_len")) {
    *error = pte + ": not an LLM program (needs the methods forward and get_max_seq_len, as export_llm "
             "writes them); re-export with `export_llm --backend cuda`";
    return nullptr;
  }
  auto get_int = [&](const char* m, int64_t* out) -> bool {
    if (!names->count(m)) return false;
    auto res = r->module_->execute(m);
    if (!res.ok() || res->empty() || !(*res)[0].isInt()) return false;
    *out = (*res)[0].toInt();
    return true;
  };
  if (!get_int("get_max_seq_len", &r->max_seq_len_) || r->max_seq_len_ < 1) {
    *error = pte + ": get_max_seq_len did not return a positive int; re-export with export_llm";
    return nullptr;
  }
  get_int("get_vocab_size", &r->vocab_size_);
  if (names->count("get_eos_ids")) {
    auto res = r->module_->execute("get_eos_ids");
    if (res.ok())
      for (const EValue& v : *res) {
        if (v.isInt()) r->eos_.insert(v.toInt());
        else if (v.isIntList())
          for (int64_t x : v.toIntList()) r->eos_.insert(x);
      }
  }
  return r;
}

bool TextRunner::load_forward(std::string* error) {
  const Error e = module_->load_method("forward");
  if (e == Error::Ok) return true;
  *error = pte_ + ": cannot load method 'forward' (" + et_error(e) + ")";
  const std::string d = int4_cuda_last_error();
  if (e == Error::NotFound || e == Error::InvalidExternalData || d.find(".ptd") != std::string::npos ||
      d.find("named data") != std::string::npos) {
    *error += ptd_.empty() ? "; the weights are in a separate .ptd: pass it with --data_path (export_llm writes "
                             "<name>.ptd beside <name>.pte)"
                           : "; check that " + ptd_ + " is the .ptd written together with " + pte_;
  }
  return false;
}

bool TextRunner::forward(const int64_t* tokens, int64_t n, int64_t pos, std::vector<float>* logits,
                         std::string* error) {
  using executorch::aten::SizesType;
  auto tok = executorch::extension::make_tensor_ptr(std::vector<SizesType>{1, static_cast<SizesType>(n)},
                                                    const_cast<int64_t*>(tokens), ScalarType::Long);
  int64_t p = pos;
  auto pos_t = executorch::extension::make_tensor_ptr(std::vector<SizesType>{1}, &p, ScalarType::Long);
  std::vector<EValue> inputs;
  inputs.emplace_back(*tok);
  inputs.emplace_back(*pos_t);
  auto res = module_->execute("forward", inputs);
  if (!res.ok()) {
    *error = pte_ + ": forward failed at position " + std::to_string(pos) + " (" + et_error(res.error()) + ")";
    return false;
  }
  if (res->empty() || !(*res)[0].isTensor() || (*res)[0].toTensor().scalar_type() != ScalarType::Float) {
    *error = pte_ + ": forward did not return f32 logits";
    return false;
  }
  const auto& t = (*res)[0].toTensor();
  const int64_t v = t.size(t.dim() - 1);
  const float* d = static_cast<const float*>(t.const_data_ptr()) + (t.numel() - v);  // last position
  logits->assign(d, d + v);
  return true;
}

bool TextRunner::generate(const std::vector<int32_t>& prompt, const GenerationConfig& cfg,
                          const std::function<void(int32_t)>& on_token, Stats* st, std::string* error) {
  const int64_t n = static_cast<int64_t>(prompt.size());
  if (n == 0) {
    *error = "the prompt is empty";
    return false;
  }
  if (n >= max_seq_len_) {
    *error = "the prompt has " + std::to_string(n) + " tokens; this export's KV cache holds " +
             std::to_string(max_seq_len_) + " (re-export with a larger --max_seq_length, or shorten the prompt)";
    return false;
  }
  Sampler sampler(cfg.sampler);
  std::vector<float> logits;
  std::vector<int64_t> ids(prompt.begin(), prompt.end());
  const int64_t chunk = cfg.prefill_chunk > 0 ? std::min(cfg.prefill_chunk, max_seq_len_) : max_seq_len_;

  st->prompt_tokens = n;
  st->inference_start_ms = time_in_ms();
  double t0 = time_in_s();
  for (int64_t at = 0; at < n; at += chunk) {
    if (!forward(ids.data() + at, std::min(chunk, n - at), at, &logits, error)) return false;
    ++st->prefill_chunks;
  }
  st->prefill_s = time_in_s() - t0;
  st->prompt_eval_end_ms = time_in_ms();

  int64_t pos = n, generated = 0;
  st->stop_reason = "max_new_tokens";
  double t_dec = 0;
  while (true) {
    const double ts = time_in_s();
    const int32_t next = sampler.sample(logits.data(), static_cast<int64_t>(logits.size()));
    st->aggregate_sampling_time_ms += (time_in_s() - ts) * 1000.0;
    if (generated == 0) {
      st->first_token_ms = time_in_ms();
      t_dec = time_in_s();
    }
    if (!cfg.ignore_eos && eos_.count(next)) {
      st->stop_reason = "eos";
      break;
    }
    ++generated;
    on_token(next);
    if (generated >= cfg.max_new_tokens) break;
    if (pos >= max_seq_len_) {
      st->stop_reason = "kv_cache_full";
      break;
    }
    const int64_t tok = next;
    if (!forward(&tok, 1, pos, &logits, error)) return false;
    ++pos;
    ++st->decode_steps;
  }
  st->decode_s = time_in_s() - t_dec;
  st->generated_tokens = generated;
  st->inference_end_ms = time_in_ms();
  return true;
}

}  // namespace llm
}  // namespace int4_cuda
