// The HDF5 trace reader (traces/trace_reader.hpp) on a scratch file: opened, then every
// prompt's outputs and first layer read. Slow (HDF5 opens a file per input).
#include <cstddef>
#include <cstdint>

#include "core/error.hpp"
#include "fuzz/fuzz_util.hpp"
#include "traces/trace_reader.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = kvsim::fuzz::write_scratch("trace.h5", data, size);
  try {
    const kvsim::TraceReader reader(path);
    for (std::size_t p = 0; p < reader.prompts().size() && p < 4; ++p) {
      try {
        (void)reader.read_outputs(p);
        if (reader.model().n_layers > 0) (void)reader.read_layer(p, 0);
      } catch (const kvsim::Error&) {
      }
    }
  } catch (const kvsim::Error&) {
  }
  return 0;
}
