#pragma once
// A byte-level stand-in tokenizer, so that tests can write expected tokens down by hand.
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tracer/tokenizer.hpp"

namespace kvsim::test {

// id = byte + 3, BOS = 1, EOS = 2: token i of a text is its i-th byte.
class ByteTokenizer : public Tokenizer {
 public:
  std::vector<int> encode(std::string_view text, bool add_special) const override {
    std::vector<int> ids;
    if (add_special) ids.push_back(1);
    for (unsigned char ch : text) ids.push_back(ch + 3);
    return ids;
  }
  std::string decode(std::span<const int> ids, bool = false) const override {
    std::string s;
    for (int id : ids)
      if (id >= 3) s += static_cast<char>(id - 3);
    return s;
  }
  int vocab_size() const override { return 259; }
  int bos_id() const override { return 1; }
  int eos_id() const override { return 2; }
};

}  // namespace kvsim::test
