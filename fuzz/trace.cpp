// The HDF5 trace reader (traces/trace_reader.hpp) on the input as an in-memory file image
// (HDF5's core driver: no file written or read per input): opened, then up to 4 prompts'
// outputs and first layer read, and the model datasets.
#include <cstddef>
#include <cstdint>
#include <span>

#include <hdf5.h>

#include "core/error.hpp"
#include "traces/trace_reader.hpp"

// Opening a file allocates HDF5's metadata cache (a ~0.5 MB calloc through its free lists). With
// the default free-list limits that block goes back to the system at every close, and ASan
// maps it afresh at every open: page faults were half the time of an input. Unlimited free lists
// keep it for the next input (the fuzz process only; kvsim keeps HDF5's defaults).
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  H5set_free_list_limits(-1, -1, -1, -1, -1, -1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    // The label is never a file: the core driver refuses an image named like an existing one.
    const kvsim::TraceReader reader(std::as_bytes(std::span(data, size)), "<fuzz input>");
    for (std::size_t p = 0; p < reader.prompts().size() && p < 4; ++p) {
      try {
        (void)reader.read_outputs(p);
        if (reader.model().n_layers > 0) (void)reader.read_layer(p, 0);
      } catch (const kvsim::Error&) {
      }
    }
    (void)reader.read_w_o(0);
    (void)reader.read_final_norm();
    if (reader.has_classifier()) (void)reader.read_classifier();
  } catch (const kvsim::Error&) {
  }
  return 0;
}
