// llama2.c tokenizer.bin (tracer/llama2c_tokenizer.hpp) from bytes; a text encoded and decoded.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.hpp"
#include "tracer/llama2c_tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  try {
    const kvsim::Llama2cTokenizer tok(bytes, "fuzz/tokenizer.bin");
    (void)tok.decode(tok.encode("Hello world <0x0A> 12", true), true);
  } catch (const kvsim::Error&) {
  }
  return 0;
}
