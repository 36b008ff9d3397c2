#pragma once
// Shared pieces of the kvsim subcommands: option parsing conventions, progress on stderr,
// model/tokenizer resolution.
#include <boost/program_options.hpp>
#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <tbb/global_control.h>
#include <vector>

#include "tracer/device.hpp"
#include "tracer/forward_backend.hpp"
#include "tracer/model.hpp"
#include "tracer/tokenizer.hpp"

namespace kvsim::cli {

namespace po = boost::program_options;

// Parses args (after the subcommand name); prints help and returns nullopt on --help.
std::optional<po::variables_map> parse(const std::string& command, const std::string& summary,
                                       po::options_description& options, const std::vector<std::string>& args,
                                       const po::positional_options_description* positional = nullptr);

// Caps oneTBB's parallelism for the life of the object (0 = all cores).
std::unique_ptr<tbb::global_control> limit_threads(int threads);

// The tokenizer for a model: explicit path, else tokenizer.json in a HF directory, else
// tokenizer.bin or tok<vocab>.bin beside a llama2.c checkpoint.
std::unique_ptr<Tokenizer> resolve_tokenizer(const std::filesystem::path& model_path, const std::string& explicit_path,
                                             int vocab);

// One progress line on stderr: rewritten in place on a terminal, a line per ~10% otherwise.
class Progress {
 public:
  Progress(std::string label, std::size_t total);
  void update(std::size_t done, const std::string& detail);
  void finish(const std::string& detail);

 private:
  std::string label_;
  std::size_t total_;
  bool tty_;
  int last_decile_ = -1;
  std::chrono::steady_clock::time_point start_;
};

std::string utc_now_iso8601();

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
