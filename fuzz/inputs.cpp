// JSONL inputs (tracer/inputs.hpp) on a scratch .jsonl file, with a byte-level tokenizer.
#include <cstddef>
#include <cstdint>

#include "core/error.hpp"
#include "fuzz/fuzz_util.hpp"
#include "tests/support/byte_tokenizer.hpp"
#include "tracer/inputs.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = kvsim::fuzz::write_scratch("inputs.jsonl", data, size);
  const kvsim::test::ByteTokenizer tok;
  kvsim::InputOptions options;
  options.max_len = 64;
  try {
    (void)kvsim::load_prompts(path, tok, options);
  } catch (const kvsim::Error&) {
  }
  return 0;
}
