#pragma once
// llama2.c tokenizer.bin: SentencePiece-style BPE with per-token scores and byte fallback,
// encoded exactly as llama2.c's encode() in run.c (BOS only, never EOS; the text may hold
// NUL bytes, which become the <0x00> byte token where run.c would stop at them).
#include <filesystem>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tracer/tokenizer.hpp"

namespace kvsim {

class Llama2cTokenizer final : public Tokenizer {
 public:
  static constexpr int kUnkId = 0;
  static constexpr int kBosId = 1;
  static constexpr int kEosId = 2;
  static constexpr int kByteOffset = 3;  // id of <0x00>; byte b is id b + 3

  // Reads the file; throws ModelError naming it when missing, truncated or malformed.
  explicit Llama2cTokenizer(const std::filesystem::path& path);
  // Parses the bytes of a tokenizer.bin; path is only used in error messages.
  Llama2cTokenizer(std::string_view bytes, const std::filesystem::path& path);
  // piece_to_id_ holds views into pieces_, so a copy would dangle; moves keep the buffers.
  Llama2cTokenizer(const Llama2cTokenizer&) = delete;
  Llama2cTokenizer& operator=(const Llama2cTokenizer&) = delete;
  Llama2cTokenizer(Llama2cTokenizer&&) = default;
  Llama2cTokenizer& operator=(Llama2cTokenizer&&) = default;

  std::vector<int> encode(std::string_view text, bool add_special) const override;
  std::string decode(std::span<const int> ids, bool keep_special = false) const override;
  int vocab_size() const override { return static_cast<int>(pieces_.size()); }
  int bos_id() const override { return kBosId; }
  int eos_id() const override { return kEosId; }

  const std::string& piece(int id) const { return pieces_.at(static_cast<std::size_t>(id)); }
  float score(int id) const { return scores_.at(static_cast<std::size_t>(id)); }
  int max_token_length() const { return max_token_length_; }
  // Id of a piece, or -1.
  int lookup(std::string_view piece) const;

 private:
  void parse(std::string_view bytes, const std::filesystem::path& path);

  int max_token_length_ = 0;
  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::unordered_map<std::string_view, int> piece_to_id_;  // views into pieces_
  int space_id_ = -1;                                      // the dummy-prefix piece " "
};

}  // namespace kvsim
