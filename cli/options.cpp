#include "cli/options.hpp"

#include <algorithm>
#include <cmath>
#include <iostream>
#include <thread>

#include "core/dist.hpp"
#include "core/error.hpp"
#include "policies/policy.hpp"
#include "policies/spec.hpp"

namespace kvsim::cli {

std::optional<po::variables_map> parse(const std::string& command, const std::string& summary,
                                       po::options_description& options, const std::vector<std::string>& args,
                                       const po::positional_options_description* positional) {
  options.add_options()("help,h", "show this help");
  po::variables_map vm;
  po::command_line_parser parser(args);
  parser.options(options);
  if (positional) parser.positional(*positional);
  po::store(parser.run(), vm);
  if (vm.count("help")) {
    if (dist::is_root())  // once per job, not once per rank
      std::cout << "usage: kvsim " << command << " [options]\n" << summary << "\n\n" << options << "\n";
    return std::nullopt;
  }
  po::notify(vm);
  return vm;
}

void require_at_least(const std::string& option, long long value, long long min) {
  if (value >= min) return;
  if (min == 1) fail<InputError>(option, " must be positive, got ", value);
  fail<InputError>(option, " must be >= ", min, ", got ", value);
}

void require_finite(const std::string& option, double value) {
  if (!std::isfinite(value)) fail<InputError>(option, " must be a finite number, got ", value);
}

std::size_t cache_bytes(long long cache_mb) {
  require_at_least("--cache-mb", cache_mb, 0);
  constexpr long long kMaxMb = 1LL << 30;  // 1 PiB
  if (cache_mb > kMaxMb) fail<InputError>("--cache-mb must be at most ", kMaxMb, " (1 PiB), got ", cache_mb);
  return static_cast<std::size_t>(cache_mb) << 20;
}

void check_output_file(const std::filesystem::path& path, const std::string& option, bool overwrite) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) fail<InputError>(option, " ", path.string(), ": is a directory, expected a file name");
  const fs::path dir = path.parent_path().empty() ? fs::path(".") : path.parent_path();
  if (!fs::is_directory(dir, ec))
    fail<InputError>(option, " ", path.string(), ": directory ", dir.string(), " does not exist");
  if (!overwrite && fs::exists(path, ec)) fail<InputError>(path.string(), ": already exists (pass --overwrite to replace it)");
}

std::unique_ptr<tbb::global_control> limit_threads(int threads) {
  require_at_least("--threads", threads, 0);
  if (threads == 0) {
    // Several ranks of an MPI job on one node share its cores (docs/scale-out.md).
    const int local = dist::local_size();
    if (local <= 1) return nullptr;
    threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / local);
  }
  return std::make_unique<tbb::global_control>(tbb::global_control::max_allowed_parallelism, threads);
}

std::vector<std::string> expand_policies(const std::string& text) {
  std::vector<std::string> out;
  for (const auto& spec : split_policy_list(text)) {
    if (spec != "all") {
      out.push_back(spec);
      continue;
    }
    for (const auto& info : policy_registry()) out.push_back(info.wraps ? info.name + "(snapkv)" : info.name);
  }
  return out;
}

void ReplayArgs::add_to(po::options_description& opts) {
  opts.add_options()("traces", po::value(&traces)->multitoken()->required(), "trace files (.h5)")
      ("policies,p", po::value(&policies)->default_value("all"),
       "policy specs, e.g. 'full,snapkv:window=32,kernel=7,pool=max,adakv(snapkv):alpha=0.2'; 'all' = every policy "
       "with defaults ('kvsim policies' lists them)")
      ("budget,b", po::value(&budgets), "budgets in tokens per KV head, e.g. 64,128,256,512")
      ("ratio,r", po::value(&ratios), "or compression ratios (fraction of prompt tokens removed; keeps int(T*(1-r)) as kvpress), e.g. 0.5,0.8")
      ("seed", po::value(&seed)->default_value(0), "seed mixed into every prompt's seed (random policy)")
      ("threads,t", po::value(&threads)->default_value(0), "worker threads (0 = all cores); results do not depend on it")
      ("overwrite", po::bool_switch(&overwrite), "replace existing outputs")
      ("quiet,q", po::bool_switch(&quiet), "no progress line")
      ("projection", po::value(&projection)->default_value("fp32"),
       "precision of the W_O projection of output errors: fp32, or bf16 (fp32 accumulation; ~2.8x faster with "
       "AVX512-BF16, metrics within ~1e-4 relative)");
}

ReplayOptions ReplayArgs::replay_options() const {
  ReplayOptions ro;
  for (const auto& t : traces) ro.traces.emplace_back(t);
  ro.policies = expand_policies(policies);
  ro.budgets = BudgetSweep::parse(budgets, ratios);
  ro.seed = seed;
  ro.projection = parse_projection(projection, "--projection");
  return ro;
}

}  // namespace kvsim::cli
