// llama2.c checkpoint header (tracer/llama2c_loader: load_llama2c) on a scratch file.
#include <cstddef>
#include <cstdint>

#include "core/error.hpp"
#include "fuzz/fuzz_util.hpp"
#include "tracer/model.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = kvsim::fuzz::write_scratch("model.bin", data, size);
  try {
    (void)kvsim::load_llama2c(path);
  } catch (const kvsim::Error&) {
  }
  return 0;
}
