#pragma once
// Choosing the model backend (--device, --precision) and the tokenizer for a model path.
#include <boost/program_options.hpp>
#include <filesystem>
#include <memory>
#include <string>

#include "tracer/device.hpp"
#include "tracer/forward_backend.hpp"
#include "tracer/model.hpp"
#include "tracer/tokenizer.hpp"

namespace kvsim::cli {

namespace po = boost::program_options;

// The tokenizer for a model: explicit path, else the one inside a .gguf model, else
// tokenizer.json in a HF directory, else tokenizer.bin or tok<vocab>.bin beside a llama2.c
// checkpoint.
std::unique_ptr<Tokenizer> resolve_tokenizer(const std::filesystem::path& model_path, const std::string& explicit_path,
                                             int vocab);

// --device / --precision, checked before any work starts: an unknown name, a precision the
// CPU backend does not have, or `cuda` without CUDA in the build or without a device is one
// clear error. An empty precision means the device's default (cpu: fp32, cuda: bf16).
struct BackendChoice {
  Device device = Device::kCpu;
  Precision precision = Precision::kFp32;
};
BackendChoice choose_backend(const std::string& device, const std::string& precision);
// max_tokens / max_topk size the CUDA workspace (the longest pass, the largest top-K).
std::unique_ptr<ForwardBackend> make_backend(const Model& model, const BackendChoice& choice, int max_tokens,
                                             int max_topk);
// The option lines shared by trace and generate.
void add_backend_options(po::options_description& opts, std::string& device, std::string& precision);

}  // namespace kvsim::cli
