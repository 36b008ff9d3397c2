#pragma once
// Byte-level BPE tokenizers (GPT-2, SmolLM2, Llama-3, Qwen2 style) as Hugging Face
// tokenizers runs them: added tokens, pre-tokenizers ByteLevel / Split / Digits / Sequence,
// BPE by merge rank, post-processors TemplateProcessing / Bert / Roberta / ByteLevel /
// Sequence. Built from a tokenizer.json, or from a GGUF's metadata (same machinery).
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tracer/tokenizer.hpp"

namespace kvsim {

namespace detail {
class Regex;  // compiled PCRE2 pattern, defined in hf_tokenizer.cpp

// Lets unordered_map<std::string, V> be searched with a string_view without a copy.
struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
}  // namespace detail

// The parsed pieces of a byte-level BPE tokenizer, whatever file they came from: a HF
// tokenizer.json (parse_tokenizer_json) or a GGUF's tokenizer.ggml.* metadata
// (tracer/gguf_tokenizer.hpp). HfTokenizer is built from one.
struct BpeSpec {
  struct AddedToken {  // HF "added_tokens"; matched in the text before pre-tokenization
    std::string content;
    int id = -1;
    bool special = false;  // dropped by decode() unless keep_special
    bool lstrip = false;
    bool rstrip = false;
    bool single_word = false;
  };
  enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };
  struct PreTokenizerStep {
    bool byte_level = false;        // ByteLevel step; otherwise a regex split
    bool add_prefix_space = false;  // ByteLevel only
    std::string pattern;            // empty on a ByteLevel step without regex (use_regex=false)
    bool literal = false;           // pattern is a plain string (HF Split {"String": ...})
    SplitBehavior behavior = SplitBehavior::kIsolated;
    bool invert = false;

    // HF ByteLevel: optional GPT-2 regex split, then bytes mapped to the byte-level alphabet.
    static PreTokenizerStep byte_level_step(bool add_prefix_space, bool use_regex);
    // HF Digits: each digit, or each run of digits, isolated.
    static PreTokenizerStep digits_step(bool individual_digits);
    static PreTokenizerStep split_step(std::string pattern, bool literal, SplitBehavior behavior, bool invert);
  };

  std::unordered_map<std::string, int, detail::StringHash, std::equal_to<>> vocab;  // byte-level token -> id
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
  std::vector<AddedToken> added;
  std::vector<PreTokenizerStep> pre_tokenizer;
  std::vector<int> prefix_ids, suffix_ids;  // around the text when add_special
  int unk_id = -1;
  bool ignore_merges = false;
  // -1: derived, BOS = first prefix id; EOS = last suffix id, else <|endoftext|>-like token.
  int bos_id = -1;
  int eos_id = -1;
  std::string chat_template;  // Jinja source, when the file carries one
};

// Parses a tokenizer.json text; `where` names the file in errors. Throws ModelError on
// malformed JSON or a component this implementation does not support.
BpeSpec parse_tokenizer_json(std::string_view json_text, const std::string& where);

class HfTokenizer final : public Tokenizer {
 public:
  // Reads and parses the file; throws ModelError naming it when missing, malformed or using
  // a component this implementation does not support.
  explicit HfTokenizer(const std::filesystem::path& path);
  // Parses JSON text; path is only used in error messages.
  HfTokenizer(std::string_view json_text, const std::filesystem::path& path);
  // From parsed pieces; `where` names their source in errors (bad ids, merges, regexes).
  HfTokenizer(BpeSpec spec, const std::string& where);

  // Throws InputError when text is not valid UTF-8 (HF tokenizers only accepts str).
  std::vector<int> encode(std::string_view text, bool add_special) const override;
  // Returns raw bytes (no replacement of invalid UTF-8 from partial byte tokens).
  std::string decode(std::span<const int> ids, bool keep_special = false) const override;
  int vocab_size() const override { return static_cast<int>(decoded_.size()); }
  int bos_id() const override { return bos_id_; }
  int eos_id() const override { return eos_id_; }
  std::string chat_template() const override { return chat_template_; }

  // Id of a vocabulary or added token, or -1.
  int token_id(std::string_view token) const;

 private:
  using SplitBehavior = BpeSpec::SplitBehavior;
  using AddedToken = BpeSpec::AddedToken;
  struct PreTokenizerStep {
    bool byte_level = false;
    bool add_prefix_space = false;
    std::shared_ptr<const detail::Regex> regex;  // null for ByteLevel with use_regex=false
    SplitBehavior behavior = SplitBehavior::kIsolated;
    bool invert = false;
  };
  struct Merge {
    int rank;
    int merged_id;
  };
  struct Segment {  // a piece of the input: plain text, or one added token
    std::string_view text;
    int added_id;  // -1 for plain text
  };
  class Scratch;  // per-call buffers and word cache

  void build(BpeSpec spec, const std::string& where);
  std::vector<Segment> split_added(std::string_view text) const;
  void pre_tokenize(std::string_view text, Scratch& scratch,
                    std::vector<std::string>& words) const;
  void bpe_word(std::string_view word, std::vector<int>& out) const;

  std::unordered_map<std::string, int, detail::StringHash, std::equal_to<>> vocab_;
  std::unordered_map<std::uint64_t, Merge> merges_;  // key: left id << 32 | right id
  std::vector<std::string> decoded_;                 // id -> raw bytes
  std::vector<char> is_special_;                     // id -> special added token
  std::vector<AddedToken> added_;
  std::vector<std::vector<int>> added_by_first_byte_;  // indices into added_, longest first
  std::vector<PreTokenizerStep> pre_tokenizer_;
  std::vector<int> alphabet_id_;  // code point below U+0144 -> vocab id of that char, or -1
  std::vector<int> prefix_ids_, suffix_ids_;  // post-processor template around the text
  int unk_id_ = -1;
  bool ignore_merges_ = false;
  int bos_id_ = -1;
  int eos_id_ = -1;
  std::string chat_template_;
};

}  // namespace kvsim
