// HF config.json (tracer/hf_loader: load_hf_config) on a scratch file.
#include <cstddef>
#include <cstdint>

#include "core/error.hpp"
#include "fuzz/fuzz_util.hpp"
#include "tracer/model.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = kvsim::fuzz::write_scratch("config.json", data, size);
  try {
    (void)kvsim::load_hf_config(path);
  } catch (const kvsim::Error&) {
  }
  return 0;
}
