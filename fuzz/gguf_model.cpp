// GGUF tensor data and whole-model loads (tracer/gguf.hpp, tracer/gguf_loader.cpp) on a scratch
// file: every tensor of the file dequantized (GgufFile::read_f32, each ggml type's blocks), then
// the file loaded as a llama checkpoint (load_gguf: metadata to ModelConfig, every tensor's shape
// checked, dequantized, q/k rows un-permuted). Seeds: fuzz/make_model_seeds.py.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/error.hpp"
#include "fuzz/fuzz_util.hpp"
#include "tracer/gguf.hpp"
#include "tracer/model.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = kvsim::fuzz::write_scratch("model.gguf", data, size);
  try {
    const kvsim::GgufFile file(path);
    std::vector<float> values;
    for (const auto& [name, info] : file.tensors()) {
      // The index guarantees the tensor's bytes lie inside the file: at most 8 floats per byte
      // (Q4_0), so this stays a few times the input's size.
      values.resize(static_cast<std::size_t>(info.elements()));
      try {
        file.read_f32(name, info.shape(), values.data());
      } catch (const kvsim::Error&) {
      }
    }
  } catch (const kvsim::Error&) {
  }
  try {
    (void)kvsim::load_gguf(path);
  } catch (const kvsim::Error&) {
  }
  return 0;
}
