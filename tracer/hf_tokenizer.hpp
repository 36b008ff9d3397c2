#pragma once
// Hugging Face tokenizer.json with a byte-level BPE model (GPT-2, SmolLM2, Llama-3, Qwen2
// style): added tokens, pre-tokenizers ByteLevel / Split / Digits / Sequence, BPE by merge
// rank, post-processors TemplateProcessing / Bert / Roberta / ByteLevel / Sequence.
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

class HfTokenizer final : public Tokenizer {
 public:
  // Reads and parses the file; throws ModelError naming it when missing, malformed or using
  // a component this implementation does not support.
  explicit HfTokenizer(const std::filesystem::path& path);
  // Parses JSON text; path is only used in error messages.
  HfTokenizer(std::string_view json_text, const std::filesystem::path& path);

  // Throws InputError when text is not valid UTF-8 (HF tokenizers only accepts str).
  std::vector<int> encode(std::string_view text, bool add_special) const override;
  // Returns raw bytes (no replacement of invalid UTF-8 from partial byte tokens).
  std::string decode(std::span<const int> ids, bool keep_special = false) const override;
  int vocab_size() const override { return static_cast<int>(decoded_.size()); }
  int bos_id() const override { return bos_id_; }
  int eos_id() const override { return eos_id_; }

  // Id of a vocabulary or added token, or -1.
  int token_id(std::string_view token) const;

 private:
  enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };
  struct PreTokenizerStep {
    bool byte_level = false;  // ByteLevel step; otherwise a regex split
    bool add_prefix_space = false;
    std::shared_ptr<const detail::Regex> regex;  // null for ByteLevel with use_regex=false
    SplitBehavior behavior = SplitBehavior::kIsolated;
    bool invert = false;
  };
  struct AddedToken {
    std::string content;
    int id = -1;
    bool special = false;
    bool lstrip = false;
    bool rstrip = false;
    bool single_word = false;
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

  void parse(std::string_view json_text, const std::filesystem::path& path);
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
};

}  // namespace kvsim
