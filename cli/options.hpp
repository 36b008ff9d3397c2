#pragma once
// Option parsing and the checks every subcommand applies to its options (InputError naming
// the option), the thread cap, the policy list, and the options run and validate share.
#include <boost/program_options.hpp>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <tbb/global_control.h>
#include <vector>

#include "sim/replay.hpp"

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

}  // namespace kvsim::cli
