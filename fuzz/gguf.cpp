// GGUF header, metadata and tensor table (tracer/gguf.hpp), then the tokenizer metadata
// (tracer/gguf_tokenizer.hpp) and every tensor's shape, on a scratch file.
#include <cstddef>
#include <cstdint>

#include "core/error.hpp"
#include "fuzz/fuzz_util.hpp"
#include "tracer/gguf.hpp"
#include "tracer/gguf_tokenizer.hpp"
#include "tracer/hf_tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = kvsim::fuzz::write_scratch("model.gguf", data, size);
  try {
    const kvsim::GgufFile file(path);
    for (const auto& [name, info] : file.tensors()) {
      (void)info.elements();
      (void)info.shape();
    }
    try {
      const kvsim::HfTokenizer tok(kvsim::gguf_bpe_spec(file), path.string());
      (void)tok.decode(tok.encode("Hello world 42", true), true);
    } catch (const kvsim::Error&) {
    }
  } catch (const kvsim::Error&) {
  }
  return 0;
}
