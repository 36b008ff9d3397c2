// tokenizer.json (tracer/hf_tokenizer): parsed and built, then a short text encoded and decoded.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.hpp"
#include "tracer/hf_tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const kvsim::HfTokenizer tok(text, "fuzz/tokenizer.json");
    const auto ids = tok.encode("Hello world, 123 héllo\n<|x|>", true);
    (void)tok.decode(ids, true);
    (void)tok.decode(ids, false);
  } catch (const kvsim::Error&) {
  }
  return 0;
}
