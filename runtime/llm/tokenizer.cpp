#include "tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

namespace int4_cuda {
namespace llm {
namespace {

using json = nlohmann::json;

// GPT-2's pre-tokenizer regex (what ByteLevel(use_regex=true) splits with).
const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// GPT-2 byte <-> unicode table: printable Latin-1 bytes map to themselves, the other 68 bytes to
// U+0100 onwards, in byte order.
struct ByteMap {
  std::string byte_to_utf8[256];
  std::unordered_map<uint32_t, uint8_t> cp_to_byte;
  ByteMap() {
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const uint32_t cp = keep ? static_cast<uint32_t>(b) : next++;
      byte_to_utf8[b] = encode_cp(cp);
      cp_to_byte[cp] = static_cast<uint8_t>(b);
    }
  }
  static std::string encode_cp(uint32_t cp) {
    std::string s;
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else if (cp < 0x800) {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      s += static_cast<char>(0xE0 | (cp >> 12));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      s += static_cast<char>(0xF0 | (cp >> 18));
      s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    return s;
  }
};

const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

// Length of the UTF-8 sequence starting at s[i] (assumes valid UTF-8), at least 1.
size_t cp_len(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c >> 5) == 0x6) return 2;
  if ((c >> 4) == 0xE) return 3;
  if ((c >> 3) == 0x1E) return 4;
  return 1;
}

uint32_t decode_cp(const std::string& s, size_t i, size_t* len) {
  const unsigned char c = s[i];
  *len = std::min(cp_len(c), s.size() - i);
  if (*len == 1) return c;
  uint32_t cp = c & (0x7F >> *len);
  for (size_t k = 1; k < *len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  return cp;
}

// Length of the valid UTF-8 sequence at s[i], or 0 with *bad = bytes of the maximal invalid
// subpart (>= 1). `need_all`: a truncated sequence at the end counts as incomplete (returns 0,
// *bad = 0) instead of invalid.
size_t valid_seq(const std::string& s, size_t i, size_t* bad, bool need_all) {
  const unsigned char c = s[i];
  *bad = 1;
  if (c < 0x80) return 1;
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) n = 2;
  else if (c == 0xE0) { n = 3; lo = 0xA0; }
  else if (c >= 0xE1 && c <= 0xEC) n = 3;
  else if (c == 0xED) { n = 3; hi = 0x9F; }
  else if (c >= 0xEE && c <= 0xEF) n = 3;
  else if (c == 0xF0) { n = 4; lo = 0x90; }
  else if (c >= 0xF1 && c <= 0xF3) n = 4;
  else if (c == 0xF4) { n = 4; hi = 0x8F; }
  else return 0;
  size_t k = 1;
  for (; k < n; ++k) {
    if (i + k >= s.size()) {
      if (need_all) { *bad = 0; return 0; }
      *bad = k;
      return 0;
    }
    const unsigned char b = s[i + k];
    const unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) { *bad = k; return 0; }
  }
  return n;
}

bool read_file(const std::string& path, std::string* out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  std::ostringstream ss;
  ss << f.rdbuf();
  *out = ss.str();
  return true;
}

// A compiled PCRE2 pattern (UTF, Unicode properties), JIT-compiled where possible.
class Regex {
 public:
  static std::unique_ptr<Regex> compile(const std::string& pattern, std::string* error) {
    int err = 0;
    PCRE2_SIZE off = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                     PCRE2_UTF | PCRE2_UCP, &err, &off, nullptr);
    if (code == nullptr) {
      PCRE2_UCHAR buf[256];
      pcre2_get_error_message(err, buf, sizeof(buf));
      *error = "regex /" + pattern + "/ does not compile at offset " + std::to_string(off) + ": " +
               reinterpret_cast<const char*>(buf);
      return nullptr;
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // best effort
    std::unique_ptr<Regex> r(new Regex());
    r->code_ = code;
    return r;
  }
  ~Regex() { pcre2_code_free(code_); }
  // (start, end) of every non-overlapping match in s[b, e).
  void find_all(const std::string& s, size_t b, size_t e, std::vector<std::pair<size_t, size_t>>* out) const {
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_, nullptr);
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(s.data() + b);
    const size_t len = e - b;
    size_t at = 0;
    while (at <= len) {
      const int rc = pcre2_match(code_, subject, len, at, PCRE2_NO_UTF_CHECK, md, nullptr);
      if (rc < 0) break;
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      out->emplace_back(b + ov[0], b + ov[1]);
      if (ov[1] == ov[0]) {
        if (ov[1] >= len) break;
        at = ov[1] + cp_len(static_cast<unsigned char>(s[b + ov[1]]));
      } else {
        at = ov[1];
      }
    }
    pcre2_match_data_free(md);
  }

 private:
  Regex() = default;
  pcre2_code* code_ = nullptr;
};

std::string quote_regex_literal(const std::string& s) {
  std::string out = "\\Q";
  size_t i = 0, j;
  while ((j = s.find("\\E", i)) != std::string::npos) {
    out += s.substr(i, j - i) + "\\E\\\\E\\Q";
    i = j + 2;
  }
  return out + s.substr(i) + "\\E";
}

enum class Behavior { Isolated, Removed, MergedWithPrevious, MergedWithNext };

}  // namespace

// A piece of the input: a byte range [b, e) of the text, plus the byte-level mapped string once
// ByteLevel has run.
struct Piece {
  size_t b, e;
};

struct Tokenizer::PreStep {
  enum Kind { SPLIT, BYTE_LEVEL } kind = SPLIT;
  std::unique_ptr<Regex> regex;
  Behavior behavior = Behavior::Isolated;
  bool invert = false;
  bool add_prefix_space = false;  // BYTE_LEVEL
  bool use_regex = true;          // BYTE_LEVEL
};

namespace {

void split_pieces(const std::string& text, const Regex& re, Behavior behavior, bool invert,
                  std::vector<Piece>* pieces) {
  std::vector<Piece> out;
  std::vector<std::pair<size_t, size_t>> m;
  for (const Piece& p : *pieces) {
    m.clear();
    re.find_all(text, p.b, p.e, &m);
    // Segments (b, e, is_match) covering the piece.
    std::vector<std::pair<Piece, bool>> seg;
    size_t prev = p.b;
    for (auto [s, e] : m) {
      if (s != prev) seg.push_back({{prev, s}, false});
      seg.push_back({{s, e}, true});
      prev = e;
    }
    if (prev != p.e) seg.push_back({{prev, p.e}, false});
    if (invert)
      for (auto& sg : seg) sg.second = !sg.second;
    std::vector<Piece> cur;
    switch (behavior) {
      case Behavior::Isolated:
        for (auto& sg : seg) cur.push_back(sg.first);
        break;
      case Behavior::Removed:
        for (auto& sg : seg)
          if (!sg.second) cur.push_back(sg.first);
        break;
      case Behavior::MergedWithPrevious: {
        bool prev_match = false;
        for (auto& sg : seg) {
          if (sg.second && !prev_match && !cur.empty()) cur.back().e = sg.first.e;
          else cur.push_back(sg.first);
          prev_match = sg.second;
        }
        break;
      }
      case Behavior::MergedWithNext: {
        bool prev_match = false;
        for (auto& sg : seg) {
          if (!sg.second && prev_match && !cur.empty()) cur.back().e = sg.first.e;
          else cur.push_back(sg.first);
          prev_match = sg.second;
        }
        break;
      }
    }
    for (const Piece& c : cur)
      if (c.e > c.b) out.push_back(c);
  }
  pieces->swap(out);
}

}  // namespace

Tokenizer::~Tokenizer() = default;

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& path, std::string* error) {
  std::string text;
  if (!read_file(path, &text)) {
    *error = path + ": tokenizer file not found or unreadable (export_llm writes tokenizer.json beside the "
             ".pte; pass it with --tokenizer_path)";
    return nullptr;
  }
  const std::string unsupported = path + ": unsupported tokenizer: ";
  const std::string fix = " (int4_cuda_runner reads Hugging Face byte-level BPE tokenizer.json files as "
                          "export_llm writes them)";
  json j;
  try {
    j = json::parse(text);
  } catch (const std::exception& ex) {
    *error = path + ": not a valid tokenizer.json (JSON error: " + ex.what() + ")";
    return nullptr;
  }
  std::unique_ptr<Tokenizer> t(new Tokenizer());
  try {
    if (!j.is_object() || !j.contains("model") || !j["model"].is_object()) {
      *error = path + ": not a Hugging Face tokenizer.json (no \"model\" object)";
      return nullptr;
    }
    const json& m = j["model"];
    const std::string type = m.value("type", std::string("BPE"));
    if (type != "BPE") {
      *error = unsupported + "model type '" + type + "', only BPE" + fix;
      return nullptr;
    }
    auto nonnull = [&](const char* k) { return m.contains(k) && !m[k].is_null(); };
    if (nonnull("dropout") || nonnull("continuing_subword_prefix") || nonnull("end_of_word_suffix") ||
        m.value("byte_fallback", false)) {
      *error = unsupported + "BPE with dropout, a subword prefix/suffix or byte_fallback" + fix;
      return nullptr;
    }
    t->ignore_merges_ = m.value("ignore_merges", false);
    int32_t max_id = -1;
    for (auto it = m["vocab"].begin(); it != m["vocab"].end(); ++it) {
      const int32_t id = it.value().get<int32_t>();
      t->vocab_[it.key()] = id;
      max_id = std::max(max_id, id);
    }
    if (j.contains("added_tokens") && j["added_tokens"].is_array())
      for (const json& a : j["added_tokens"]) max_id = std::max(max_id, a.at("id").get<int32_t>());
    t->id_to_token_.assign(max_id + 1, std::string());
    t->special_.assign(max_id + 1, 0);
    for (const auto& [tok, id] : t->vocab_) t->id_to_token_[id] = tok;
    if (nonnull("unk_token")) {
      auto it = t->vocab_.find(m["unk_token"].get<std::string>());
      if (it != t->vocab_.end()) t->unk_id_ = it->second;
    }
    int32_t rank = 0;
    for (const json& mg : m["merges"]) {
      std::string a, b;
      if (mg.is_string()) {
        const std::string s = mg.get<std::string>();
        const size_t sp = s.find(' ', 1);
        if (sp == std::string::npos) {
          *error = path + ": bad merge \"" + s + "\" (expected \"a b\")";
          return nullptr;
        }
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else {
        a = mg.at(0).get<std::string>();
        b = mg.at(1).get<std::string>();
      }
      auto ia = t->vocab_.find(a), ib = t->vocab_.find(b), iab = t->vocab_.find(a + b);
      if (ia == t->vocab_.end() || ib == t->vocab_.end() || iab == t->vocab_.end()) {
        *error = path + ": merge \"" + a + " " + b + "\" names tokens that are not in the vocab";
        return nullptr;
      }
      const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(ia->second)) << 32) |
                           static_cast<uint32_t>(ib->second);
      t->merges_.emplace(key, std::make_pair(rank++, iab->second));
    }
    t->added_by_first_byte_.assign(256, {});
    if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
      for (const json& a : j["added_tokens"]) {
        Added ad{a.at("content").get<std::string>(), a.at("id").get<int32_t>()};
        if (ad.content.empty()) continue;
        t->id_to_token_[ad.id] = ad.content;
        if (a.value("special", false)) t->special_[ad.id] = 1;
        t->vocab_.emplace(ad.content, ad.id);
        t->added_by_first_byte_[static_cast<unsigned char>(ad.content[0])].push_back(t->added_.size());
        t->added_.push_back(std::move(ad));
      }
    }
    if (j.contains("normalizer") && !j["normalizer"].is_null()) {
      *error = unsupported + "normalizer '" + j["normalizer"].value("type", std::string("?")) +
               "' (only tokenizers without a normalizer)" + fix;
      return nullptr;
    }
    if (j.contains("decoder") && !j["decoder"].is_null() && j["decoder"].value("type", std::string()) != "ByteLevel") {
      *error = unsupported + "decoder '" + j["decoder"].value("type", std::string("?")) + "' (only ByteLevel)" + fix;
      return nullptr;
    }
    // Pre-tokenizers.
    std::vector<const json*> steps;
    if (j.contains("pre_tokenizer") && !j["pre_tokenizer"].is_null()) {
      const json& p = j["pre_tokenizer"];
      if (p.value("type", std::string()) == "Sequence")
        for (const json& s : p.at("pretokenizers")) steps.push_back(&s);
      else
        steps.push_back(&p);
    }
    bool byte_level = false;
    for (const json* sp : steps) {
      const json& s = *sp;
      const std::string ty = s.value("type", std::string("?"));
      auto step = std::make_unique<PreStep>();
      std::string rx_err;
      if (ty == "ByteLevel") {
        step->kind = PreStep::BYTE_LEVEL;
        step->add_prefix_space = s.value("add_prefix_space", false);
        step->use_regex = s.value("use_regex", true);
        if (step->use_regex && !(step->regex = Regex::compile(kGpt2Pattern, &rx_err))) {
          *error = path + ": " + rx_err;
          return nullptr;
        }
        byte_level = true;
      } else if (ty == "Digits") {
        step->regex = Regex::compile(s.value("individual_digits", false) ? "\\p{N}" : "\\p{N}+", &rx_err);
        if (!step->regex) { *error = path + ": " + rx_err; return nullptr; }
      } else if (ty == "Split") {
        const json& pat = s.at("pattern");
        std::string rx;
        if (pat.contains("Regex")) rx = pat["Regex"].get<std::string>();
        else if (pat.contains("String")) rx = quote_regex_literal(pat["String"].get<std::string>());
        else { *error = unsupported + "Split pattern without Regex/String" + fix; return nullptr; }
        if (!(step->regex = Regex::compile(rx, &rx_err))) { *error = path + ": Split " + rx_err; return nullptr; }
        const std::string beh = s.value("behavior", std::string("Isolated"));
        if (beh == "Isolated") step->behavior = Behavior::Isolated;
        else if (beh == "Removed") step->behavior = Behavior::Removed;
        else if (beh == "MergedWithPrevious") step->behavior = Behavior::MergedWithPrevious;
        else if (beh == "MergedWithNext") step->behavior = Behavior::MergedWithNext;
        else { *error = unsupported + "Split behavior '" + beh + "'" + fix; return nullptr; }
        step->invert = s.value("invert", false);
      } else {
        *error = unsupported + "pre-tokenizer '" + ty +
                 "' (supported: ByteLevel, Digits, Split, Sequence of these)" + fix;
        return nullptr;
      }
      t->pre_.push_back(std::move(step));
    }
    if (!byte_level) {
      *error = unsupported + "no ByteLevel pre-tokenizer (only byte-level BPE)" + fix;
      return nullptr;
    }
  } catch (const std::exception& ex) {
    *error = path + ": malformed tokenizer.json (" + ex.what() + ")";
    return nullptr;
  }
  return t;
}

void Tokenizer::bpe_word(const std::string& w, std::vector<int32_t>* out) const {
  if (ignore_merges_) {
    auto it = vocab_.find(w);
    if (it != vocab_.end()) { out->push_back(it->second); return; }
  }
  auto c = cache_.find(w);
  if (c != cache_.end()) {
    out->insert(out->end(), c->second.begin(), c->second.end());
    return;
  }
  std::vector<int32_t> sym;
  for (size_t i = 0; i < w.size();) {
    const size_t n = std::min(cp_len(static_cast<unsigned char>(w[i])), w.size() - i);
    auto it = vocab_.find(w.substr(i, n));
    if (it != vocab_.end()) sym.push_back(it->second);
    else if (unk_id_ >= 0) sym.push_back(unk_id_);
    i += n;
  }
  while (sym.size() > 1) {
    int32_t best_rank = INT32_MAX, best_id = -1;
    size_t best_at = 0;
    for (size_t i = 0; i + 1 < sym.size(); ++i) {
      const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(sym[i])) << 32) | static_cast<uint32_t>(sym[i + 1]);
      auto it = merges_.find(key);
      if (it != merges_.end() && it->second.first < best_rank) {
        best_rank = it->second.first;
        best_id = it->second.second;
        best_at = i;
      }
    }
    if (best_id < 0) break;
    sym[best_at] = best_id;
    sym.erase(sym.begin() + best_at + 1);
  }
  if (cache_.size() < 100000) cache_.emplace(w, sym);
  out->insert(out->end(), sym.begin(), sym.end());
}

void Tokenizer::encode_plain(const std::string& text, std::vector<int32_t>* ids) const {
  if (text.empty()) return;
  // Pieces are byte ranges of `text` until ByteLevel maps them; after that, of `mapped`.
  std::string cur = text;
  std::vector<Piece> pieces{{0, cur.size()}};
  bool mapped = false;
  for (const auto& st : pre_) {
    if (st->kind == PreStep::SPLIT) {
      split_pieces(cur, *st->regex, st->behavior, st->invert, &pieces);
      continue;
    }
    // ByteLevel: optional prefix space, GPT-2 split, then the byte -> unicode mapping. (Later
    // steps, if any, see the mapped text.)
    std::string next;
    std::vector<Piece> np;
    for (const Piece& p : pieces) {
      std::string s = cur.substr(p.b, p.e - p.b);
      if (st->add_prefix_space && !mapped && (s.empty() || s[0] != ' ')) s = " " + s;
      std::vector<Piece> sub{{0, s.size()}};
      if (st->use_regex) split_pieces(s, *st->regex, Behavior::Isolated, false, &sub);
      for (const Piece& q : sub) {
        const size_t start = next.size();
        if (mapped) next.append(s, q.b, q.e - q.b);
        else
          for (size_t k = q.b; k < q.e; ++k) next += byte_map().byte_to_utf8[static_cast<unsigned char>(s[k])];
        np.push_back({start, next.size()});
      }
    }
    cur.swap(next);
    pieces.swap(np);
    mapped = true;
  }
  for (const Piece& p : pieces) bpe_word(cur.substr(p.b, p.e - p.b), ids);
}

bool Tokenizer::encode(const std::string& text, std::vector<int32_t>* ids, std::string* error) const {
  if (!utf8_valid(text)) {
    if (error) *error = "the text is not valid UTF-8";
    return false;
  }
  // Added tokens first: leftmost-longest match, the text between them goes through the model.
  size_t plain_from = 0, i = 0;
  while (i < text.size()) {
    const auto& bucket = added_by_first_byte_[static_cast<unsigned char>(text[i])];
    const Added* best = nullptr;
    for (size_t k : bucket) {
      const Added& a = added_[k];
      if (text.compare(i, a.content.size(), a.content) == 0 && (!best || a.content.size() > best->content.size()))
        best = &a;
    }
    if (best) {
      encode_plain(text.substr(plain_from, i - plain_from), ids);
      ids->push_back(best->id);
      i += best->content.size();
      plain_from = i;
    } else {
      ++i;
    }
  }
  encode_plain(text.substr(plain_from), ids);
  return true;
}

std::string Tokenizer::token_bytes(int32_t id, bool skip_special_tokens) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size()) return "";
  if (skip_special_tokens && special_[id]) return "";
  const std::string& t = id_to_token_[id];
  // ByteLevel decoder: every char back to its byte; a token with a char outside the table is
  // kept as its own UTF-8 bytes (as Hugging Face does).
  std::string out;
  const auto& cb = byte_map().cp_to_byte;
  for (size_t i = 0; i < t.size();) {
    size_t n;
    const uint32_t cp = decode_cp(t, i, &n);
    auto it = cb.find(cp);
    if (it == cb.end()) return t;
    out += static_cast<char>(it->second);
    i += n;
  }
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  std::string bytes;
  for (int32_t id : ids) bytes += token_bytes(id, skip_special_tokens);
  return utf8_lossy(bytes);
}

int32_t Tokenizer::token_to_id(const std::string& token) const {
  auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < special_.size() && special_[id];
}

bool utf8_valid(const std::string& s) {
  size_t bad;
  for (size_t i = 0; i < s.size();) {
    const size_t n = valid_seq(s, i, &bad, false);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string utf8_lossy(const std::string& s) {
  std::string out;
  size_t bad;
  for (size_t i = 0; i < s.size();) {
    const size_t n = valid_seq(s, i, &bad, false);
    if (n) {
      out.append(s, i, n);
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      i += bad;
    }
  }
  return out;
}

std::string take_complete_utf8(std::string* pending, const std::string& bytes) {
  pending->append(bytes);
  std::string out;
  size_t i = 0, bad;
  while (i < pending->size()) {
    const size_t n = valid_seq(*pending, i, &bad, true);
    if (n) {
      out.append(*pending, i, n);
      i += n;
    } else if (bad == 0) {
      break;  // an incomplete character at the end: wait for more bytes
    } else {
      out += "\xEF\xBF\xBD";
      i += bad;
    }
  }
  pending->erase(0, i);
  return out;
}

std::string chatml(const std::string& prompt, const std::string& system) {
  std::string s = system.empty() ? "" : "<|im_start|>system\n" + system + "<|im_end|>\n";
  return s + "<|im_start|>user\n" + prompt + "<|im_end|>\n<|im_start|>assistant\n";
}

std::string default_system_prompt(const std::string& dir) {
  std::string text;
  if (!read_file(dir + "/tokenizer_config.json", &text)) return "";
  try {
    const json j = json::parse(text);
    if (!j.contains("chat_template") || !j["chat_template"].is_string()) return "";
    const std::string tmpl = j["chat_template"].get<std::string>();
    const std::string marker = "<|im_start|>system\n";
    const size_t i = tmpl.find(marker);
    if (i == std::string::npos) return "";
    const size_t from = i + marker.size();
    const size_t k = tmpl.find("<|im_end|>", i);
    if (k == std::string::npos || k <= i) return "";
    const std::string sys = tmpl.substr(from, k - from);
    return sys.find('{') == std::string::npos ? sys : "";
  } catch (const std::exception&) {
    return "";
  }
}

}  // namespace llm
}  // namespace int4_cuda
