// int4_cuda_tokenizer_tool TOKENIZER_JSON: reads JSON lines from stdin and answers one JSON line
// each, for the pytest comparison with Hugging Face `tokenizers` (tests/runtime/llm/test_tokenizer_cpp.py):
//   {"encode": "text"}                      -> {"ids": [...]}
//   {"decode": [ids], "skip_special": bool} -> {"text": "..."}
//   {"stream": [ids]}                       -> {"text": "..."}  (token by token, as the runner prints)
//   {"chatml": "prompt", "dir": "D"}        -> {"text": "..."}  (ChatML with D's default system prompt)
// Exit code 2 and the message on stderr if the tokenizer does not load.
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "tokenizer.h"

int main(int argc, char** argv) {
  using int4_cuda::llm::Tokenizer;
  if (argc != 2) {
    std::cerr << "usage: int4_cuda_tokenizer_tool tokenizer.json < requests.jsonl\n";
    return 2;
  }
  std::string err;
  auto tok = Tokenizer::load(argv[1], &err);
  if (!tok) {
    std::cerr << "error: " << err << "\n";
    return 2;
  }
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    const auto req = nlohmann::json::parse(line);
    nlohmann::json ans;
    if (req.contains("encode")) {
      std::vector<int32_t> ids;
      if (tok->encode(req["encode"].get<std::string>(), &ids, &err)) ans["ids"] = ids;
      else ans["error"] = err;
    } else if (req.contains("decode")) {
      ans["text"] = tok->decode(req["decode"].get<std::vector<int32_t>>(), req.value("skip_special", false));
    } else if (req.contains("stream")) {
      std::string pending, text;
      for (int32_t id : req["stream"].get<std::vector<int32_t>>())
        text += int4_cuda::llm::take_complete_utf8(&pending, tok->token_bytes(id, true));
      ans["text"] = text + int4_cuda::llm::utf8_lossy(pending);
    } else if (req.contains("chatml")) {
      ans["text"] = int4_cuda::llm::chatml(req["chatml"].get<std::string>(),
                                           int4_cuda::llm::default_system_prompt(req.value("dir", std::string("."))));
    }
    std::cout << ans.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n" << std::flush;
  }
  return 0;
}
