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

#include <nlohmann/json.hpp>

#include "sim/replay.hpp"

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

// The one check behind every integer option with a lower bound: InputError "--pulls must be
// >= 0, got -3" ("must be positive" when min is 1). `option` is written as on the command line.
void require_at_least(const std::string& option, long long value, long long min);
// InputError "--tolerance must be a finite number, got nan".
void require_finite(const std::string& option, double value);
// --cache-mb in bytes; InputError when negative or absurd (above 1 PiB: the shift would overflow).
std::size_t cache_bytes(long long cache_mb);

// An output file named by `option`, checked before any work: not a directory, its directory
// exists, and (unless overwrite) the file does not exist yet. InputError naming the option.
void check_output_file(const std::filesystem::path& path, const std::string& option, bool overwrite);

// Caps oneTBB's parallelism for the life of the object (0 = all cores).
std::unique_ptr<tbb::global_control> limit_threads(int threads);

// The tokenizer for a model: explicit path, else the one inside a .gguf model, else
// tokenizer.json in a HF directory, else tokenizer.bin or tok<vocab>.bin beside a llama2.c
// checkpoint.
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

// Policy list of --policies: "all" expands to every registered policy with its defaults
// (wrappers around snapkv).
std::vector<std::string> expand_policies(const std::string& text);

// The options `kvsim run` and `kvsim validate` share: traces (positional), policies, budgets
// or ratios, seed, threads, overwrite, quiet.
struct ReplayArgs {
  std::vector<std::string> traces;
  std::string policies, budgets, ratios;
  std::uint64_t seed = 0;
  int threads = 0;
  bool overwrite = false, quiet = false;
  std::string projection = "fp32";
  void add_to(po::options_description& opts);
  ReplayOptions replay_options() const;  // parses policies and budgets (InputError when bad)
};

// Provenance of a replay's results (STYLE.md habit 10): tool, version, git sha, time,
// command, threads, seed, every trace with its XXH3 hash, canonical policy specs, budgets.
// The head of every results directory's manifest.json (docs/report.md): format "kvsim-results",
// format_version (kResultsFormatVersion), kind (run, validate, diff, transfer), tool version,
// git sha, time and the command line.
inline constexpr int kResultsFormatVersion = 1;
nlohmann::json results_manifest(const std::string& kind, const std::vector<std::string>& args);
// results_manifest plus the replay's inputs: traces with their hashes, policies, budgets, threads, seed.
nlohmann::json replay_manifest(const std::string& kind, const Replay& replay, const std::vector<std::string>& args,
                               int threads, std::uint64_t seed);
// A trace named in a manifest: path, XXH3 of the file, model source, prompt count.
nlohmann::json trace_provenance(const TraceReader& r);
// [trace_provenance of each trace of the set], the file hashes the set took when it has them.
nlohmann::json trace_provenance(const TraceSet& set);

// Writes a C-order array as a NumPy .npy file (format 1.0, little-endian), for checks in
// Python; throws InputError naming the file when it cannot be written.
void write_npy(const std::filesystem::path& path, const float* data, const std::vector<int>& shape);
void write_npy(const std::filesystem::path& path, const int* data, const std::vector<int>& shape);

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
