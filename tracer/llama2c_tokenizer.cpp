#include "tracer/llama2c_tokenizer.hpp"

#include <cstdint>
#include <cstring>
#include <iterator>
#include <optional>

#include "core/error.hpp"
#include "core/read_file.hpp"
#include "tracer/bpe_merge.hpp"

namespace kvsim {
namespace {

template <typename T>
T read_le(std::string_view bytes, std::size_t offset) {
  T v;
  std::memcpy(&v, bytes.data() + offset, sizeof(T));  // file is little-endian, as is x86-64
  return v;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// The byte of a "<0xXX>" piece, as llama2.c's sscanf("<0x%02hhX>") recognises it.
std::optional<unsigned char> byte_piece(std::string_view p) {
  if (p.size() != 6 || p.substr(0, 3) != "<0x" || p[5] != '>') return std::nullopt;
  const int hi = hex_digit(p[3]), lo = hex_digit(p[4]);
  if (hi < 0 || lo < 0) return std::nullopt;
  return static_cast<unsigned char>(hi * 16 + lo);
}

}  // namespace

Llama2cTokenizer::Llama2cTokenizer(const std::filesystem::path& path) {
  parse(read_file<ModelError>(path, "tokenizer file"), path);
}

Llama2cTokenizer::Llama2cTokenizer(std::string_view bytes, const std::filesystem::path& path) {
  parse(bytes, path);
}

void Llama2cTokenizer::parse(std::string_view bytes, const std::filesystem::path& path) {
  const std::string where = path.string();
  if (bytes.size() < 4) fail<ModelError>(where, ": truncated tokenizer.bin (no max_token_length)");
  max_token_length_ = read_le<std::int32_t>(bytes, 0);
  if (max_token_length_ <= 0 || max_token_length_ > (1 << 16))
    fail<ModelError>(where, ": bad max_token_length ", max_token_length_);
  std::size_t off = 4;
  // The vocabulary size is not stored: records run to the end of the file.
  while (off < bytes.size()) {
    const std::size_t index = pieces_.size();
    if (bytes.size() - off < 8)
      fail<ModelError>(where, ": truncated tokenizer.bin at token ", index, " (offset ", off, ")");
    const float score = read_le<float>(bytes, off);
    const std::int32_t len = read_le<std::int32_t>(bytes, off + 4);
    off += 8;
    if (len < 0 || len > max_token_length_)
      fail<ModelError>(where, ": token ", index, " has length ", len, " outside [0, ",
                       max_token_length_, "]");
    if (bytes.size() - off < static_cast<std::size_t>(len))
      fail<ModelError>(where, ": truncated tokenizer.bin in token ", index, " (offset ", off, ")");
    pieces_.emplace_back(bytes.substr(off, static_cast<std::size_t>(len)));
    scores_.push_back(score);
    off += static_cast<std::size_t>(len);
  }
  // Byte fallback needs <0x00>..<0xFF> at ids 3..258, as llama2.c assumes.
  if (pieces_.size() < kByteOffset + 256)
    fail<ModelError>(where, ": tokenizer.bin has ", pieces_.size(),
                     " tokens, fewer than the 259 needed for byte fallback");
  for (int b = 0; b < 256; ++b) {
    const auto got = byte_piece(pieces_[static_cast<std::size_t>(b + kByteOffset)]);
    if (!got || *got != b)
      fail<ModelError>(where, ": token ", b + kByteOffset, " is not the byte piece for ", b);
  }
  piece_to_id_.reserve(pieces_.size());
  // llama2.c binary-searches a sorted copy; with duplicates the first id is kept here.
  for (std::size_t i = 0; i < pieces_.size(); ++i)
    piece_to_id_.emplace(std::string_view(pieces_[i]), static_cast<int>(i));
  space_id_ = lookup(" ");
  if (space_id_ < 0) fail<ModelError>(where, ": tokenizer.bin has no \" \" piece (dummy prefix)");
}

int Llama2cTokenizer::lookup(std::string_view piece) const {
  const auto it = piece_to_id_.find(piece);
  return it == piece_to_id_.end() ? -1 : it->second;
}

std::vector<int> Llama2cTokenizer::encode(std::string_view text, bool add_special) const {
  std::vector<int> ids;
  ids.reserve(text.size() + 2);
  if (add_special) ids.push_back(kBosId);
  std::vector<int> body;
  body.reserve(text.size() + 1);
  // SentencePiece's add_dummy_prefix: the text is encoded as if it began with a space.
  if (!text.empty()) body.push_back(space_id_);
  // One UTF-8 code point at a time (a lead byte plus up to 3 continuation bytes, grouped
  // the way run.c groups them, so invalid UTF-8 is split identically).
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t len = 1;
    while (i + len < text.size() && len < 4 &&
           (static_cast<unsigned char>(text[i + len]) & 0xC0) == 0x80)
      ++len;
    const std::string_view cp = text.substr(i, len);
    const int id = lookup(cp);
    if (id >= 0) {
      body.push_back(id);
    } else {
      for (char c : cp) body.push_back(static_cast<unsigned char>(c) + kByteOffset);
    }
    i += len;
  }
  std::string scratch;
  detail::merge_symbols<float>(body, [&](int a, int b) -> std::optional<detail::MergeCandidate<float>> {
    scratch.assign(pieces_[static_cast<std::size_t>(a)]);
    scratch += pieces_[static_cast<std::size_t>(b)];
    const int id = lookup(scratch);
    if (id < 0) return std::nullopt;
    // Highest score merges first; the heap pops the lowest priority.
    return detail::MergeCandidate<float>{-scores_[static_cast<std::size_t>(id)], id};
  });
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

std::string Llama2cTokenizer::decode(std::span<const int> ids, bool keep_special) const {
  std::string out;
  int prev = -1;
  for (int id : ids) {
    if (id < 0 || id >= vocab_size())
      fail<InputError>("token id ", id, " outside the llama2.c vocabulary of ", vocab_size());
    std::string_view p = pieces_[static_cast<std::size_t>(id)];
    if (id == kBosId || id == kEosId || id == kUnkId) {
      // The stored pieces are "\n<s>\n" etc. (padded for printing); show the bare marker.
      if (keep_special || id == kUnkId) {
        while (!p.empty() && (p.front() == '\n' || p.front() == ' ')) p.remove_prefix(1);
        while (!p.empty() && (p.back() == '\n' || p.back() == ' ')) p.remove_suffix(1);
        out += p;
      }
    } else if (const auto b = byte_piece(p)) {
      out += static_cast<char>(*b);
    } else {
      // As llama2.c: the piece right after BOS drops the dummy-prefix space.
      if (prev == kBosId && !p.empty() && p.front() == ' ') p.remove_prefix(1);
      out += p;
    }
    prev = id;
  }
  return out;
}

}  // namespace kvsim
