// safetensors header (tracer/safetensors.hpp) on a scratch file; small tensors read as fp32.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/error.hpp"
#include "fuzz/fuzz_util.hpp"
#include "tracer/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = kvsim::fuzz::write_scratch("model.safetensors", data, size);
  try {
    const kvsim::SafetensorsFile file(path);
    for (const auto& [name, info] : file.tensors()) {
      std::int64_t n = 1;
      for (auto d : info.shape) n *= d;
      if (n < 0 || n > (1 << 16)) continue;
      std::vector<float> dst(static_cast<std::size_t>(n));
      try {
        file.read_f32(name, info.shape, dst.data());
      } catch (const kvsim::Error&) {
      }
    }
  } catch (const kvsim::Error&) {
  }
  return 0;
}
