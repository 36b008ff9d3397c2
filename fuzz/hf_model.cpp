// Whole Hugging Face checkpoint loads (load_hf, tracer/hf_loader.cpp): the input is config.json
// and model.safetensors joined by kSplit (no kSplit: all config, an empty safetensors file),
// written to a scratch directory; then loaded (config checked, every tensor found, shape-checked
// and converted to fp32). Seeds: fuzz/make_model_seeds.py.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string_view>

#include "core/error.hpp"
#include "fuzz/fuzz_util.hpp"
#include "tracer/model.hpp"

namespace {
constexpr std::string_view kSplit = "\n--kvsim-fuzz-split--\n";  // fuzz/make_model_seeds.py's HF_SPLIT
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::size_t split = input.find(kSplit);
  const std::string_view config = input.substr(0, split);
  const std::string_view weights = split == std::string_view::npos ? std::string_view() : input.substr(split + kSplit.size());
  const auto dir = kvsim::fuzz::scratch_file("hf_model");
  std::filesystem::create_directories(dir);
  kvsim::fuzz::write_file(dir / "config.json", config);
  kvsim::fuzz::write_file(dir / "model.safetensors", weights);
  try {
    (void)kvsim::load_hf(dir);
  } catch (const kvsim::Error&) {
  }
  return 0;
}
