// int4_cuda_runner: generates text from an int4_cuda LLM export (.pte + .ptd + tokenizer.json) on
// an NVIDIA GPU (sm_80+), streaming it to stdout, then prints ExecuTorch's stats line
// `PyTorchObserver {json}` (stdout) and a human-readable rate block (stderr).
//
//   int4_cuda_runner --model_path X.pte [--data_path X.ptd] --tokenizer_path tokenizer.json
//                    (--prompt "..." | --prompt_file F) [--chat] [--temperature 0] [--top_p 1]
//                    [--top_k 0] [--seed 0] [--max_new_tokens 128] [--warmup] [--num_iters 1]
//                    [--cuda_graph 1] [--prefill_chunk N] [--ignore_eos]
//
// Exit codes: 0 ok, 1 runtime failure (files, GPU, model), 2 bad command line.
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <executorch/runtime/backend/interface.h>
#include <executorch/runtime/backend/options.h>
#include <executorch/runtime/platform/runtime.h>

#include "c_api.h"
#include "stats.h"
#include "text_runner.h"
#include "tokenizer.h"

namespace {

using namespace int4_cuda::llm;

const char* kUsage =
    "usage: int4_cuda_runner --model_path X.pte [--data_path X.ptd] --tokenizer_path tokenizer.json\n"
    "                        (--prompt \"...\" | --prompt_file F) [--chat] [--temperature 0] [--top_p 1]\n"
    "                        [--top_k 0] [--seed 0] [--max_new_tokens 128] [--warmup] [--num_iters 1]\n"
    "                        [--cuda_graph 1] [--prefill_chunk N] [--ignore_eos]\n"
    "  --data_path       default: <name>.ptd beside <name>.pte when it exists\n"
    "  --chat            wrap the prompt in ChatML with the chat template's default system prompt\n"
    "                    (tokenizer_config.json beside tokenizer.json)\n"
    "  --temperature 0   greedy; > 0 samples (with --top_k, --top_p, --seed)\n"
    "  --cuda_graph 1    decode steps replay one captured CUDA graph; 0: eager launches\n"
    "  --warmup          one untimed generation first; --num_iters N: N timed generations\n"
    "  --prefill_chunk N prefill at most N tokens per forward call (default: the exported maximum)\n"
    "  --ignore_eos      benchmarks: do not stop at EOS\n";

struct Flags {
  std::string model_path, data_path, tokenizer_path, prompt, prompt_file;
  bool has_prompt = false, chat = false, warmup = false, cuda_graph = true, ignore_eos = false;
  double temperature = 0.0, top_p = 1.0;
  int64_t top_k = 0, max_new_tokens = 128, num_iters = 1, prefill_chunk = 0;
  uint64_t seed = 0;
};

int usage_error(const std::string& msg) {
  std::cerr << "int4_cuda_runner: " << msg << "\n" << kUsage;
  return 2;
}

int fail(const std::string& msg) {
  std::cerr << "int4_cuda_runner: error: " << msg << "\n";
  return 1;
}

bool parse_bool(const std::string& v, bool* out) {
  if (v == "1" || v == "true" || v == "True") { *out = true; return true; }
  if (v == "0" || v == "false" || v == "False") { *out = false; return true; }
  return false;
}

template <typename T>
bool parse_num(const std::string& v, T* out) {
  std::istringstream ss(v);
  T x;
  if (!(ss >> x) || !ss.eof()) return false;
  *out = x;
  return true;
}

// gflags style: --name=value, --name value; booleans also as bare --name.
int parse(int argc, char** argv, Flags* f) {
  const std::map<std::string, int> kinds = {  // 0 string, 1 bool, 2 double, 3 int, 4 uint
      {"model_path", 0}, {"data_path", 0}, {"tokenizer_path", 0}, {"prompt", 0}, {"prompt_file", 0},
      {"chat", 1}, {"warmup", 1}, {"cuda_graph", 1}, {"ignore_eos", 1}, {"temperature", 2}, {"top_p", 2},
      {"top_k", 3}, {"max_new_tokens", 3}, {"num_iters", 3}, {"prefill_chunk", 3}, {"seed", 4}};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      exit(0);
    }
    if (a.rfind("--", 0) != 0) return usage_error("unexpected argument '" + a + "'");
    std::string name = a.substr(2), value;
    bool has_value = false;
    const size_t eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    auto k = kinds.find(name);
    if (k == kinds.end()) return usage_error("unknown flag --" + name);
    if (!has_value) {
      const bool next_is_value = i + 1 < argc && (k->second != 1 || std::string(argv[i + 1]).rfind("--", 0) != 0);
      if (k->second == 1 && !next_is_value) {
        value = "1";
      } else {
        if (i + 1 >= argc) return usage_error("--" + name + " needs a value");
        value = argv[++i];
      }
    }
    bool ok = true;
    switch (k->second) {
      case 0:
        if (name == "model_path") f->model_path = value;
        else if (name == "data_path") f->data_path = value;
        else if (name == "tokenizer_path") f->tokenizer_path = value;
        else if (name == "prompt") { f->prompt = value; f->has_prompt = true; }
        else f->prompt_file = value;
        break;
      case 1: {
        bool b = false;
        ok = parse_bool(value, &b);
        if (name == "chat") f->chat = b;
        else if (name == "warmup") f->warmup = b;
        else if (name == "ignore_eos") f->ignore_eos = b;
        else f->cuda_graph = b;
        break;
      }
      case 2:
        ok = parse_num(value, name == "temperature" ? &f->temperature : &f->top_p);
        break;
      case 3:
        ok = parse_num(value, name == "top_k" ? &f->top_k
                              : name == "max_new_tokens" ? &f->max_new_tokens
                              : name == "num_iters" ? &f->num_iters : &f->prefill_chunk);
        break;
      case 4:
        ok = parse_num(value, &f->seed);
        break;
    }
    if (!ok) return usage_error("bad value '" + value + "' for --" + name);
  }
  if (f->model_path.empty()) return usage_error("--model_path is required");
  if (f->tokenizer_path.empty()) return usage_error("--tokenizer_path is required");
  if (f->has_prompt == !f->prompt_file.empty()) return usage_error("give exactly one of --prompt and --prompt_file");
  if (f->temperature < 0) return usage_error("--temperature must be >= 0");
  if (f->top_p <= 0 || f->top_p > 1) return usage_error("--top_p must be in (0, 1]");
  if (f->top_k < 0) return usage_error("--top_k must be >= 0");
  if (f->max_new_tokens < 1) return usage_error("--max_new_tokens must be >= 1");
  if (f->num_iters < 1) return usage_error("--num_iters must be >= 1");
  if (f->prefill_chunk < 0) return usage_error("--prefill_chunk must be >= 0");
  return 0;
}

bool is_file(const std::string& p) {
  struct stat s;
  return stat(p.c_str(), &s) == 0 && S_ISREG(s.st_mode);
}

std::string dir_of(const std::string& p) {
  const size_t k = p.find_last_of('/');
  return k == std::string::npos ? "." : (k == 0 ? "/" : p.substr(0, k));
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  if (const int rc = parse(argc, argv, &f)) return rc;

  // Files first: every missing one is named with its fix before any work.
  if (!is_file(f.model_path))
    return fail(f.model_path + ": model file not found (export one with `export_llm --backend cuda --output_dir D`)");
  if (!f.data_path.empty() && !is_file(f.data_path))
    return fail(f.data_path + ": .ptd file not found (export_llm writes <name>.ptd beside <name>.pte; pass that "
                "file, or omit --data_path for a .pte exported with --embed_weights)");
  if (f.data_path.empty()) {
    std::string guess = f.model_path;
    if (guess.size() > 4 && guess.compare(guess.size() - 4, 4, ".pte") == 0) guess = guess.substr(0, guess.size() - 4);
    guess += ".ptd";
    if (is_file(guess)) f.data_path = guess;
  }
  std::string prompt = f.prompt;
  if (!f.prompt_file.empty()) {
    std::ifstream in(f.prompt_file, std::ios::binary);
    if (!in) return fail(f.prompt_file + ": prompt file not found or unreadable");
    std::ostringstream ss;
    ss << in.rdbuf();
    prompt = ss.str();
  }
  std::string err;
  auto tok = Tokenizer::load(f.tokenizer_path, &err);
  if (!tok) return fail(err);
  if (f.chat) prompt = chatml(prompt, default_system_prompt(dir_of(f.tokenizer_path)));
  std::vector<int32_t> ids;
  if (!tok->encode(prompt, &ids, &err)) return fail("the prompt: " + err);

  executorch::runtime::runtime_init();
  if (executorch::runtime::get_backend_class("Int4CudaBackend") == nullptr)
    return fail("the Int4CudaBackend delegate is not linked into this binary (rebuild int4_cuda_runner: it must "
                "link libint4_cuda_backend.so, which registers the backend when loaded)");

  Stats base;
  base.cuda_graph = f.cuda_graph;
  base.model_load_start_ms = time_in_ms();
  auto runner = TextRunner::open(f.model_path, f.data_path, &err);  // CPU only: metadata methods
  if (!runner) return fail(err);
  if (static_cast<int64_t>(ids.size()) >= runner->max_seq_len())
    return fail("the prompt has " + std::to_string(ids.size()) + " tokens; " + f.model_path + "'s KV cache holds " +
                std::to_string(runner->max_seq_len()) + " (re-export with a larger --max_seq_length, or shorten "
                "the prompt)");
  if (runner->vocab_size() > 0 && static_cast<int64_t>(tok->vocab_size()) > runner->vocab_size())
    return fail(f.tokenizer_path + " has " + std::to_string(tok->vocab_size()) + " tokens but " + f.model_path +
                " a vocabulary of " + std::to_string(runner->vocab_size()) +
                ": pass the tokenizer.json exported with this model");

  char reason[512];
  if (!int4_cuda_available(reason, sizeof(reason)))
    return fail(std::string(reason) + ". int4_cuda_runner runs the .pte on the GPU; on a machine without one use "
                "`int4-cuda generate --device cpu` (the CPU reference executor)");
  int4_cuda_gpu_memory(&base.gpu_free_before_load_bytes, &base.gpu_total_bytes);
  {
    executorch::runtime::BackendOption opt;
    std::snprintf(opt.key, sizeof(opt.key), "%s", "cuda_graph");
    opt.value = f.cuda_graph;
    const auto e = executorch::runtime::set_option("Int4CudaBackend", {&opt, 1});
    if (e != executorch::runtime::Error::Ok) return fail("cannot set the Int4CudaBackend option cuda_graph");
  }
  if (!runner->load_forward(&err)) return fail(err);
  base.model_load_end_ms = time_in_ms();
  int4_cuda_gpu_memory(&base.gpu_free_after_load_bytes, nullptr);
  std::cerr << "[int4_cuda_runner: " << reason << ", " << ids.size() << " prompt tokens, KV cache "
            << runner->max_seq_len() << ", " << (f.cuda_graph ? "CUDA-graph decode" : "eager decode") << "]\n";

  GenerationConfig cfg;
  cfg.max_new_tokens = f.max_new_tokens;
  cfg.prefill_chunk = f.prefill_chunk;
  cfg.ignore_eos = f.ignore_eos;
  cfg.sampler.temperature = static_cast<float>(f.temperature);
  cfg.sampler.top_p = static_cast<float>(f.top_p);
  cfg.sampler.top_k = static_cast<int32_t>(f.top_k);
  cfg.sampler.seed = f.seed;

  if (f.warmup) {
    Stats w;
    if (!runner->generate(ids, cfg, [](int32_t) {}, &w, &err)) return fail(err);
  }
  for (int64_t it = 0; it < f.num_iters; ++it) {
    Stats st = base;
    std::string pending;
    std::vector<int32_t> out;
    auto on_token = [&](int32_t id) {
      out.push_back(id);
      const std::string text = take_complete_utf8(&pending, tok->token_bytes(id, true));
      if (!text.empty()) {
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
      }
    };
    int64_t cap0 = 0, rep0 = 0;
    int4_cuda_graph_counters(&cap0, &rep0);
    if (!runner->generate(ids, cfg, on_token, &st, &err)) {
      std::fflush(stdout);
      return fail(err);
    }
    const std::string rest = utf8_lossy(pending);
    std::fwrite(rest.data(), 1, rest.size(), stdout);
    std::printf("\n");
    int4_cuda_gpu_memory(&st.gpu_free_after_generate_bytes, nullptr);
    int64_t cap1 = 0, rep1 = 0;
    int4_cuda_graph_counters(&cap1, &rep1);
    st.cuda_graph_captures = cap1 - cap0;
    st.cuda_graph_replays = rep1 - rep0;
    if (st.stop_reason == "kv_cache_full")
      std::cerr << "[int4_cuda_runner: stopped: the KV cache (" << runner->max_seq_len()
                << " positions) is full; re-export with a larger --max_seq_length for longer answers]\n";
    std::printf("PyTorchObserver %s\n", st.to_json().c_str());
    std::fflush(stdout);
    std::cerr << st.report();
    std::cerr << "[tokens: ";
    for (size_t i = 0; i < out.size(); ++i) std::cerr << (i ? "," : "") << out[i];
    std::cerr << "]\n";
  }
  return 0;
}
