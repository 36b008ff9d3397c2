#include "tracer/hf_tokenizer.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <map>
#include <cctype>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/error.hpp"
#include "core/read_file.hpp"
#include "tracer/bpe_merge.hpp"

namespace kvsim {

namespace detail {

// An immutable compiled pattern; matching uses per-call match data, so one Regex may be
// shared by concurrent encode() calls.
class Regex {
 public:
  Regex(std::string_view pattern, bool literal, const std::string& where) {
    int err = 0;
    PCRE2_SIZE err_off = 0;
    const uint32_t options = PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0u);
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options,
                          &err, &err_off, nullptr);
    if (!code_) {
      std::array<PCRE2_UCHAR, 256> msg{};
      pcre2_get_error_message(err, msg.data(), msg.size());
      fail<ModelError>(where, ": regex /", pattern, "/ does not compile at offset ", err_off, ": ",
                       reinterpret_cast<const char*>(msg.data()));
    }
    // JIT is an optional speed-up; the interpreter gives the same matches if it is missing.
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);
  }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  ~Regex() { pcre2_code_free(code_); }
  const pcre2_code* code() const { return code_; }

 private:
  pcre2_code* code_ = nullptr;
};

}  // namespace detail

namespace {

using nlohmann::json;

// GPT-2's pre-tokenization pattern, the ByteLevel pre-tokenizer's default.
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// GPT-2's bytes_to_unicode(): printable Latin-1 bytes map to themselves, the other 68 bytes
// to U+0100.. in byte order, so every byte becomes a visible character.
constexpr std::array<char32_t, 256> byte_to_unicode_table() {
  std::array<char32_t, 256> t{};
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    t[static_cast<std::size_t>(b)] = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
  }
  return t;
}

constexpr std::array<char32_t, 256> kByteToUnicode = byte_to_unicode_table();
constexpr std::int64_t kMaxTokenId = (1 << 24) - 1;  // ids fit an int and a dense table (16M entries)
constexpr char32_t kAlphabetEnd = 0x144;  // every byte-level alphabet char is below U+0144

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Length of the UTF-8 sequence starting at s[i] (input already validated).
std::size_t utf8_len(std::string_view s, std::size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  const std::size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
  return std::min(n, s.size() - i);
}

char32_t decode_utf8(std::string_view s) {
  const auto c0 = static_cast<unsigned char>(s[0]);
  if (s.size() == 1) return c0;
  char32_t cp = s.size() == 2 ? (c0 & 0x1F) : s.size() == 3 ? (c0 & 0x0F) : (c0 & 0x07);
  for (std::size_t i = 1; i < s.size(); ++i) cp = (cp << 6) | (static_cast<unsigned char>(s[i]) & 0x3F);
  return cp;
}

bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n;
    char32_t min;
    if (c < 0x80) { ++i; continue; }
    if ((c & 0xE0) == 0xC0) { n = 2; min = 0x80; }
    else if ((c & 0xF0) == 0xE0) { n = 3; min = 0x800; }
    else if ((c & 0xF8) == 0xF0) { n = 4; min = 0x10000; }
    else return false;
    if (i + n > s.size()) return false;
    for (std::size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    const char32_t cp = decode_utf8(s.substr(i, n));
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n;
  }
  return true;
}

bool is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_word_char(char c) {
  const auto u = static_cast<unsigned char>(c);
  return std::isalnum(u) || c == '_' || u >= 0x80;
}

// A json value that is absent or null.
bool is_null(const json& obj, const char* key) {
  return !obj.contains(key) || obj.at(key).is_null();
}

}  // namespace

// Per-call state: PCRE2 match data and the word -> ids cache (kept out of the tokenizer so
// encode() stays const and thread-safe).
class HfTokenizer::Scratch {
 public:
  Scratch() : match_(pcre2_match_data_create(1, nullptr)) {
    if (!match_) throw std::bad_alloc();
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() { pcre2_match_data_free(match_); }

  // Spans of text (start, end, is_match) covering all of it, as HF's Pattern::find_matches.
  struct Span {
    std::size_t start, end;
    bool is_match;
  };
  void find_matches(const detail::Regex& re, std::string_view text, std::vector<Span>& out) {
    out.clear();
    if (text.empty()) {
      out.push_back({0, 0, false});
      return;
    }
    std::size_t prev = 0, pos = 0;
    while (pos <= text.size()) {
      const int rc = pcre2_match(re.code(), reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), pos,
                                 PCRE2_NO_UTF_CHECK, match_, nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        std::array<PCRE2_UCHAR, 256> msg{};
        pcre2_get_error_message(rc, msg.data(), msg.size());
        fail<InputError>("regex match failed: ", reinterpret_cast<const char*>(msg.data()));
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(match_);
      const std::size_t ms = ov[0], me = ov[1];
      if (prev != ms) out.push_back({prev, ms, false});
      out.push_back({ms, me, true});
      prev = me;
      // After an empty match, step one character so the scan always advances.
      pos = me == ms ? (me < text.size() ? me + utf8_len(text, me) : text.size() + 1) : me;
    }
    if (prev != text.size()) out.push_back({prev, text.size(), false});
  }

  std::unordered_map<std::string, std::vector<int>, detail::StringHash, std::equal_to<>> cache;
  std::vector<Span> spans;

 private:
  pcre2_match_data* match_;
};

BpeSpec::PreTokenizerStep BpeSpec::PreTokenizerStep::byte_level_step(bool add_prefix_space, bool use_regex) {
  PreTokenizerStep s;
  s.byte_level = true;
  s.add_prefix_space = add_prefix_space;
  if (use_regex) s.pattern = kGpt2Pattern;
  return s;
}

BpeSpec::PreTokenizerStep BpeSpec::PreTokenizerStep::digits_step(bool individual_digits) {
  // Rust's char::is_numeric is Unicode category N, which \p{N} matches; a run of digits
  // isolated together equals HF's Contiguous split on the predicate.
  return split_step(individual_digits ? R"(\p{N})" : R"(\p{N}+)", false, SplitBehavior::kIsolated, false);
}

BpeSpec::PreTokenizerStep BpeSpec::PreTokenizerStep::split_step(std::string pattern, bool literal,
                                                                SplitBehavior behavior, bool invert) {
  PreTokenizerStep s;
  s.pattern = std::move(pattern);
  s.literal = literal;
  s.behavior = behavior;
  s.invert = invert;
  return s;
}

BpeSpec parse_tokenizer_json(std::string_view json_text, const std::string& where) {
  using Step = BpeSpec::PreTokenizerStep;
  using SplitBehavior = BpeSpec::SplitBehavior;
  json doc;
  try {
    doc = json::parse(json_text.begin(), json_text.end());
  } catch (const json::exception& e) {
    fail<ModelError>(where, ": malformed tokenizer.json: ", e.what());
  }
  BpeSpec spec;
  try {
    if (!doc.is_object()) fail<ModelError>(where, ": tokenizer.json is not a JSON object");
    if (!doc.contains("model") || !doc.at("model").is_object())
      fail<ModelError>(where, ": tokenizer.json has no \"model\" object");
    const json& model = doc.at("model");
    const std::string model_type = model.value("type", model.contains("merges") ? "BPE" : "");
    if (model_type != "BPE")
      fail<ModelError>(where, ": unsupported model.type \"", model_type, "\" (only BPE is supported)");
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
      if (!is_null(model, key) && !model.at(key).get<std::string>().empty())
        fail<ModelError>(where, ": unsupported model.", key, " (byte-level BPE expects none)");
    spec.ignore_merges = model.value("ignore_merges", false);

    // Vocabulary and added tokens; the id space is the union of both.
    if (!model.contains("vocab") || !model.at("vocab").is_object())
      fail<ModelError>(where, ": model.vocab missing or not an object");
    spec.vocab.reserve(model.at("vocab").size());
    auto token_id = [&](const json& idj, const std::string& tok, const char* what) {
      if (!idj.is_number_integer() || idj.get<std::int64_t>() < 0 || idj.get<std::int64_t>() > kMaxTokenId)
        fail<ModelError>(where, ": ", what, " \"", tok, "\" has id ", idj.dump(), " (expected an integer in [0, ",
                         kMaxTokenId, "])");
      return idj.get<int>();
    };
    for (const auto& [tok, idj] : model.at("vocab").items()) spec.vocab.emplace(tok, token_id(idj, tok, "vocabulary token"));
    if (doc.contains("added_tokens") && doc.at("added_tokens").is_array()) {
      for (const json& a : doc.at("added_tokens")) {
        BpeSpec::AddedToken t;
        t.content = a.at("content").get<std::string>();
        t.id = token_id(a.at("id"), t.content, "added token");
        t.special = a.value("special", false);
        t.lstrip = a.value("lstrip", false);
        t.rstrip = a.value("rstrip", false);
        t.single_word = a.value("single_word", false);
        spec.added.push_back(std::move(t));
      }
    }
    if (!is_null(model, "unk_token")) {
      const std::string unk = model.at("unk_token").get<std::string>();
      for (const auto& t : spec.added)
        if (t.content == unk && spec.unk_id < 0) spec.unk_id = t.id;
      if (const auto it = spec.vocab.find(unk); spec.unk_id < 0 && it != spec.vocab.end()) spec.unk_id = it->second;
    }

    // Merges: "a b" strings, or [a, b] pairs in newer files. Rank = position in the list.
    if (!model.contains("merges") || !model.at("merges").is_array())
      fail<ModelError>(where, ": model.merges missing or not an array");
    const json& merges = model.at("merges");
    spec.merges.reserve(merges.size());
    for (std::size_t rank = 0; rank < merges.size(); ++rank) {
      const json& m = merges[rank];
      if (m.is_string()) {
        const std::string s = m.get<std::string>();
        const auto sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
          fail<ModelError>(where, ": model.merges[", rank, "] \"", s, "\" is not two tokens");
        spec.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      } else if (m.is_array() && m.size() == 2) {
        spec.merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
      } else {
        fail<ModelError>(where, ": model.merges[", rank, "] is neither \"a b\" nor [a, b]");
      }
    }

    // Normalizer: none supported beyond the identity.
    if (!is_null(doc, "normalizer")) {
      const json& n = doc.at("normalizer");
      const bool empty_seq = n.value("type", "") == "Sequence" && n.contains("normalizers") &&
                             n.at("normalizers").empty();
      if (!empty_seq)
        fail<ModelError>(where, ": unsupported normalizer type \"", n.value("type", "?"),
                         "\" (only null is supported)");
    }

    // Pre-tokenizer steps, flattened from nested Sequences.
    auto add_step = [&](const json& p, auto& self) -> void {
      const std::string type = p.value("type", "");
      if (type == "Sequence") {
        for (const json& q : p.at("pretokenizers")) self(q, self);
      } else if (type == "ByteLevel") {
        spec.pre_tokenizer.push_back(Step::byte_level_step(p.value("add_prefix_space", false), p.value("use_regex", true)));
      } else if (type == "Digits") {
        spec.pre_tokenizer.push_back(Step::digits_step(p.value("individual_digits", false)));
      } else if (type == "Split") {
        const json& pat = p.at("pattern");
        const bool literal = !pat.contains("Regex");
        if (literal && !pat.contains("String"))
          fail<ModelError>(where, ": pre_tokenizer Split.pattern has neither Regex nor String");
        const std::string b = p.value("behavior", "Isolated");
        SplitBehavior behavior;
        if (b == "Removed") behavior = SplitBehavior::kRemoved;
        else if (b == "Isolated") behavior = SplitBehavior::kIsolated;
        else if (b == "MergedWithPrevious") behavior = SplitBehavior::kMergedWithPrevious;
        else if (b == "MergedWithNext") behavior = SplitBehavior::kMergedWithNext;
        else if (b == "Contiguous") behavior = SplitBehavior::kContiguous;
        else fail<ModelError>(where, ": unsupported pre_tokenizer Split.behavior \"", b, "\"");
        spec.pre_tokenizer.push_back(Step::split_step(pat.at(literal ? "String" : "Regex").get<std::string>(), literal,
                                                      behavior, p.value("invert", false)));
      } else {
        fail<ModelError>(where, ": unsupported pre_tokenizer type \"", type,
                         "\" (supported: ByteLevel, Split, Digits, Sequence)");
      }
    };
    if (is_null(doc, "pre_tokenizer"))
      fail<ModelError>(where, ": pre_tokenizer is null; only byte-level BPE is supported");
    add_step(doc.at("pre_tokenizer"), add_step);

    // Decoder: byte-level only.
    if (!is_null(doc, "decoder")) {
      const std::string type = doc.at("decoder").value("type", "");
      if (type != "ByteLevel")
        fail<ModelError>(where, ": unsupported decoder type \"", type, "\" (only ByteLevel)");
    }

    // Post-processor: the special tokens placed around a single sequence.
    auto add_post = [&](const json& p, auto& self) -> void {
      const std::string type = p.value("type", "");
      if (type == "Sequence") {
        for (const json& q : p.at("processors")) self(q, self);
      } else if (type == "ByteLevel") {
        // Only adjusts offsets; ids are unchanged.
      } else if (type == "TemplateProcessing") {
        bool seen_a = false;
        for (const json& item : p.at("single")) {
          if (item.contains("Sequence")) {
            if (item.at("Sequence").value("id", "A") != "A")
              fail<ModelError>(where, ": post_processor single template uses sequence B");
            seen_a = true;
          } else if (item.contains("SpecialToken")) {
            const std::string name = item.at("SpecialToken").at("id").get<std::string>();
            const json& st = p.at("special_tokens");
            if (!st.contains(name))
              fail<ModelError>(where, ": post_processor special token \"", name, "\" not in special_tokens");
            for (const json& id : st.at(name).at("ids"))
              (seen_a ? spec.suffix_ids : spec.prefix_ids).push_back(id.get<int>());
          } else {
            fail<ModelError>(where, ": post_processor template item is neither Sequence nor SpecialToken");
          }
        }
      } else if (type == "BertProcessing" || type == "RobertaProcessing") {
        spec.prefix_ids.push_back(p.at("cls").at(1).get<int>());
        spec.suffix_ids.push_back(p.at("sep").at(1).get<int>());
      } else {
        fail<ModelError>(where, ": unsupported post_processor type \"", type, "\"");
      }
    };
    if (!is_null(doc, "post_processor")) add_post(doc.at("post_processor"), add_post);
  } catch (const json::exception& e) {
    fail<ModelError>(where, ": malformed tokenizer.json: ", e.what());
  }
  return spec;
}

HfTokenizer::HfTokenizer(const std::filesystem::path& path) : HfTokenizer(read_file<ModelError>(path, "tokenizer file"), path) {}

HfTokenizer::HfTokenizer(std::string_view json_text, const std::filesystem::path& path) {
  build(parse_tokenizer_json(json_text, path.string()), path.string());
}

HfTokenizer::HfTokenizer(BpeSpec spec, const std::string& where) { build(std::move(spec), where); }

void HfTokenizer::build(BpeSpec spec, const std::string& where) {
  vocab_ = std::move(spec.vocab);
  added_ = std::move(spec.added);
  int max_id = -1;
  for (const auto& [tok, id] : vocab_) {
    if (id < 0) fail<ModelError>(where, ": vocabulary token \"", tok, "\" has negative id ", id);
    max_id = std::max(max_id, id);
  }
  for (const AddedToken& t : added_) {
    if (t.id < 0) fail<ModelError>(where, ": added token \"", t.content, "\" has negative id");
    max_id = std::max(max_id, t.id);
  }
  if (max_id < 0) fail<ModelError>(where, ": empty vocabulary");
  // The id space is allocated densely (decoded_, is_special_): ids far beyond the number of
  // tokens (an added token with id 1e9 would ask for 32 GB) are a broken file. Real tokenizers
  // leave small gaps at most (padding to a multiple of 64 or 128, reserved ranges).
  const std::size_t n_tokens = vocab_.size() + added_.size();
  const std::size_t max_reasonable = 2 * n_tokens + 65536;
  if (static_cast<std::size_t>(max_id) >= max_reasonable)
    fail<ModelError>(where, ": token id ", max_id, " is far beyond the ", n_tokens,
                     " tokens of the vocabulary (ids must be below ", max_reasonable, ")");

  // Byte-level decoding of each vocabulary token (the inverse of bytes_to_unicode).
  const auto& b2u = kByteToUnicode;
  std::unordered_map<char32_t, unsigned char> u2b;
  for (int b = 0; b < 256; ++b) u2b.emplace(b2u[static_cast<std::size_t>(b)], static_cast<unsigned char>(b));
  decoded_.assign(static_cast<std::size_t>(max_id) + 1, std::string());
  is_special_.assign(decoded_.size(), 0);
  for (const auto& [tok, id] : vocab_) {
    std::string bytes;
    bool all_mapped = true;
    for (std::size_t i = 0; i < tok.size();) {
      const std::size_t n = utf8_len(tok, i);
      const auto it = u2b.find(decode_utf8(std::string_view(tok).substr(i, n)));
      if (it == u2b.end()) {
        all_mapped = false;
        break;
      }
      bytes += static_cast<char>(it->second);
      i += n;
    }
    // HF's ByteLevel decoder keeps a token verbatim when a char is outside the alphabet.
    decoded_[static_cast<std::size_t>(id)] = all_mapped ? bytes : tok;
  }
  for (const AddedToken& t : added_) {
    decoded_[static_cast<std::size_t>(t.id)] = t.content;
    is_special_[static_cast<std::size_t>(t.id)] = t.special ? 1 : 0;
  }
  added_by_first_byte_.assign(256, {});
  for (std::size_t i = 0; i < added_.size(); ++i)
    if (!added_[i].content.empty())
      added_by_first_byte_[static_cast<unsigned char>(added_[i].content[0])].push_back(static_cast<int>(i));
  for (auto& v : added_by_first_byte_)  // longest first: leftmost-longest matching
    std::stable_sort(v.begin(), v.end(), [&](int a, int b) {
      return added_[static_cast<std::size_t>(a)].content.size() > added_[static_cast<std::size_t>(b)].content.size();
    });

  alphabet_id_.assign(kAlphabetEnd, -1);
  for (char32_t cp = 0; cp < kAlphabetEnd; ++cp) {
    std::string ch;
    append_utf8(ch, cp);
    if (const auto it = vocab_.find(ch); it != vocab_.end()) alphabet_id_[cp] = it->second;
  }
  auto check_id = [&](int id, const char* what) {
    if (id < -1 || id > max_id) fail<ModelError>(where, ": ", what, " id ", id, " out of range");
  };
  check_id(spec.unk_id, "unknown-token");
  unk_id_ = spec.unk_id;
  ignore_merges_ = spec.ignore_merges;

  merges_.reserve(spec.merges.size());
  for (std::size_t rank = 0; rank < spec.merges.size(); ++rank) {
    const auto& [left, right] = spec.merges[rank];
    const auto l = vocab_.find(left), r = vocab_.find(right), c = vocab_.find(left + right);
    if (l == vocab_.end() || r == vocab_.end() || c == vocab_.end())
      fail<ModelError>(where, ": merges[", rank, "] (", left, " ", right, ") uses a token not in the vocabulary");
    const std::uint64_t key = (static_cast<std::uint64_t>(l->second) << 32) | static_cast<std::uint32_t>(r->second);
    merges_[key] = Merge{static_cast<int>(rank), c->second};  // a repeated pair keeps the last rank, as HF
  }

  // Pre-tokenizer steps; steps with the same pattern share one compiled regex.
  std::map<std::pair<std::string, bool>, std::shared_ptr<const detail::Regex>> compiled;
  for (const BpeSpec::PreTokenizerStep& s : spec.pre_tokenizer) {
    PreTokenizerStep step;
    step.byte_level = s.byte_level;
    step.add_prefix_space = s.add_prefix_space;
    step.behavior = s.behavior;
    step.invert = s.invert;
    if (!s.pattern.empty() || !s.byte_level) {
      auto& re = compiled[{s.pattern, s.literal}];
      if (!re) re = std::make_shared<const detail::Regex>(s.pattern, s.literal, where);
      step.regex = re;
    }
    pre_tokenizer_.push_back(std::move(step));
  }
  if (std::none_of(pre_tokenizer_.begin(), pre_tokenizer_.end(), [](const auto& s) { return s.byte_level; }))
    fail<ModelError>(where, ": pre_tokenizer has no ByteLevel step; only byte-level BPE is supported");

  for (int id : spec.prefix_ids) check_id(id, "post_processor");
  for (int id : spec.suffix_ids) check_id(id, "post_processor");
  prefix_ids_ = std::move(spec.prefix_ids);
  suffix_ids_ = std::move(spec.suffix_ids);
  bos_id_ = spec.bos_id >= 0 ? spec.bos_id : prefix_ids_.empty() ? -1 : prefix_ids_.front();
  if (spec.eos_id >= 0) {
    eos_id_ = spec.eos_id;
  } else if (!suffix_ids_.empty()) {
    eos_id_ = suffix_ids_.back();
  } else {
    for (const char* name : {"<|endoftext|>", "<|end_of_text|>", "</s>"})
      if (const int id = token_id(name); id >= 0) {
        eos_id_ = id;
        break;
      }
  }
  check_id(bos_id_, "BOS");
  check_id(eos_id_, "EOS");
  chat_template_ = std::move(spec.chat_template);
}

int HfTokenizer::token_id(std::string_view token) const {
  for (const AddedToken& t : added_)
    if (t.content == token) return t.id;
  const auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

std::vector<HfTokenizer::Segment> HfTokenizer::split_added(std::string_view text) const {
  std::vector<Segment> out;
  std::size_t start = 0;  // end of the previous added token
  std::size_t pos = 0;
  while (pos < text.size()) {
    const AddedToken* hit = nullptr;
    for (int idx : added_by_first_byte_[static_cast<unsigned char>(text[pos])]) {
      const AddedToken& t = added_[static_cast<std::size_t>(idx)];
      if (text.substr(pos, t.content.size()) != t.content) continue;
      if (t.single_word) {
        const std::size_t end = pos + t.content.size();
        if ((pos > 0 && is_word_char(text[pos - 1])) || (end < text.size() && is_word_char(text[end]))) continue;
      }
      hit = &t;
      break;
    }
    if (!hit) {
      ++pos;
      continue;
    }
    std::size_t s = pos, e = pos + hit->content.size();
    if (hit->lstrip)
      while (s > start && is_ascii_space(text[s - 1])) --s;
    if (hit->rstrip)
      while (e < text.size() && is_ascii_space(text[e])) ++e;
    if (s > start) out.push_back({text.substr(start, s - start), -1});
    out.push_back({text.substr(s, e - s), hit->id});
    start = pos = e;
  }
  if (start < text.size()) out.push_back({text.substr(start), -1});
  return out;
}

void HfTokenizer::pre_tokenize(std::string_view text, Scratch& scratch,
                               std::vector<std::string>& words) const {
  words.assign(1, std::string(text));
  std::vector<std::string> next;
  for (const PreTokenizerStep& step : pre_tokenizer_) {
    next.clear();
    for (std::string& w : words) {
      if (step.byte_level && step.add_prefix_space && (w.empty() || w.front() != ' ')) w.insert(w.begin(), ' ');
      std::vector<std::pair<std::size_t, std::size_t>> pieces;
      if (!step.regex) {
        pieces.emplace_back(0, w.size());
      } else {
        scratch.find_matches(*step.regex, w, scratch.spans);
        auto& spans = scratch.spans;
        if (step.invert)
          for (auto& sp : spans) sp.is_match = !sp.is_match;
        const SplitBehavior behavior = step.byte_level ? SplitBehavior::kIsolated : step.behavior;
        bool previous_match = false;
        switch (behavior) {
          case SplitBehavior::kIsolated:
            for (const auto& sp : spans) pieces.emplace_back(sp.start, sp.end);
            break;
          case SplitBehavior::kRemoved:
            for (const auto& sp : spans)
              if (!sp.is_match) pieces.emplace_back(sp.start, sp.end);
            break;
          case SplitBehavior::kMergedWithPrevious:
            for (const auto& sp : spans) {
              if (sp.is_match && !previous_match && !pieces.empty()) pieces.back().second = sp.end;
              else pieces.emplace_back(sp.start, sp.end);
              previous_match = sp.is_match;
            }
            break;
          case SplitBehavior::kMergedWithNext:
            for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
              if (it->is_match && !previous_match && !pieces.empty()) pieces.back().first = it->start;
              else pieces.emplace_back(it->start, it->end);
              previous_match = it->is_match;
            }
            std::reverse(pieces.begin(), pieces.end());
            break;
          case SplitBehavior::kContiguous:
            for (const auto& sp : spans) {
              if (sp.is_match == previous_match && !pieces.empty()) pieces.back().second = sp.end;
              else pieces.emplace_back(sp.start, sp.end);
              previous_match = sp.is_match;
            }
            break;
        }
      }
      for (const auto& [s, e] : pieces) {
        if (s == e) continue;
        if (!step.byte_level) {
          next.emplace_back(w, s, e - s);
          continue;
        }
        std::string mapped;
        mapped.reserve((e - s) * 2);
        for (std::size_t i = s; i < e; ++i) append_utf8(mapped, kByteToUnicode[static_cast<unsigned char>(w[i])]);
        next.push_back(std::move(mapped));
      }
    }
    words.swap(next);
  }
}

void HfTokenizer::bpe_word(std::string_view word, std::vector<int>& out) const {
  if (ignore_merges_)
    if (const auto it = vocab_.find(word); it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  std::vector<int> ids;
  ids.reserve(word.size());
  for (std::size_t i = 0; i < word.size();) {
    const std::size_t n = utf8_len(word, i);
    const std::string_view ch = word.substr(i, n);
    i += n;
    int id = -1;
    // Fast path for the byte-level alphabet, which is all a ByteLevel step produces.
    if (const char32_t cp = decode_utf8(ch); cp < kAlphabetEnd) {
      id = alphabet_id_[cp];
    } else if (const auto it = vocab_.find(ch); it != vocab_.end()) {
      id = it->second;
    }
    if (id < 0) id = unk_id_;  // without an unk token HF drops the character
    if (id >= 0) ids.push_back(id);
  }
  detail::merge_symbols<int>(ids, [&](int a, int b) -> std::optional<detail::MergeCandidate<int>> {
    const auto it = merges_.find((static_cast<std::uint64_t>(a) << 32) | static_cast<std::uint32_t>(b));
    if (it == merges_.end()) return std::nullopt;
    return detail::MergeCandidate<int>{it->second.rank, it->second.merged_id};
  });
  out.insert(out.end(), ids.begin(), ids.end());
}

std::vector<int> HfTokenizer::encode(std::string_view text, bool add_special) const {
  if (!valid_utf8(text)) fail<InputError>("text to tokenize is not valid UTF-8");
  std::vector<int> ids;
  if (add_special) ids = prefix_ids_;
  Scratch scratch;
  std::vector<std::string> words;
  for (const Segment& seg : split_added(text)) {
    if (seg.added_id >= 0) {
      ids.push_back(seg.added_id);
      continue;
    }
    pre_tokenize(seg.text, scratch, words);
    for (const std::string& w : words) {
      auto it = scratch.cache.find(w);
      if (it == scratch.cache.end()) {
        std::vector<int> word_ids;
        bpe_word(w, word_ids);
        it = scratch.cache.emplace(w, std::move(word_ids)).first;
      }
      ids.insert(ids.end(), it->second.begin(), it->second.end());
    }
  }
  if (add_special) ids.insert(ids.end(), suffix_ids_.begin(), suffix_ids_.end());
  return ids;
}

std::string HfTokenizer::decode(std::span<const int> ids, bool keep_special) const {
  std::string out;
  for (int id : ids) {
    if (id < 0 || id >= vocab_size())
      fail<InputError>("token id ", id, " outside the vocabulary of ", vocab_size());
    if (is_special_[static_cast<std::size_t>(id)] && !keep_special) continue;
    out += decoded_[static_cast<std::size_t>(id)];
  }
  return out;
}

}  // namespace kvsim
