// kvsim run: replay traces against policies × budgets, write results, print the comparison.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "sim/replay.hpp"
#include "sim/run_output.hpp"

namespace kvsim::cli {

int cmd_run(const std::vector<std::string>& args) {
  std::vector<std::string> traces;
  std::string policies, budgets, ratios, out_dir, dump_kept;
  int threads = 0;
  std::uint64_t seed = 0;
  bool overwrite = false, quiet = false;
  po::options_description opts("run options");
  opts.add_options()("traces", po::value(&traces)->multitoken()->required(), "trace files (.h5)")
      ("policies,p", po::value(&policies)->default_value("all"),
       "policy specs, e.g. 'full,snapkv:window=32,kernel=7,pool=max,adakv(snapkv):alpha=0.2'; 'all' = every policy "
       "with defaults ('kvsim policies' lists them)")
      ("budget,b", po::value(&budgets), "budgets in tokens per KV head, e.g. 64,128,256,512")
      ("ratio,r", po::value(&ratios), "or compression ratios (fraction of prompt tokens removed), e.g. 0.5,0.8")
      ("out,o", po::value(&out_dir)->required(), "results directory (layers.csv, summary.csv, manifest.json)")
      ("dump-kept", po::value(&dump_kept), "also write the kept token indices per (prompt, policy, budget, layer, KV head) to this CSV")
      ("seed", po::value(&seed)->default_value(0), "seed mixed into every prompt's seed (random policy)")
      ("threads,t", po::value(&threads)->default_value(0), "worker threads (0 = all cores); results do not depend on it")
      ("overwrite", po::bool_switch(&overwrite), "replace existing outputs")
      ("quiet,q", po::bool_switch(&quiet), "no progress line");
  po::positional_options_description pos;
  pos.add("traces", -1);
  if (!parse("run", "Replays traces against retention policies × budgets and measures output error.", opts, args, &pos))
    return 0;
  auto tbb_limit = limit_threads(threads);

  ReplayOptions ro;
  for (const auto& t : traces) ro.traces.emplace_back(t);
  ro.policies = expand_policies(policies);
  ro.budgets = BudgetSweep::parse(budgets, ratios);
  ro.seed = seed;
  ro.keep_selections = !dump_kept.empty();
  // Everything is checked here, before any work and before any output exists.
  const Replay replay(std::move(ro));
  RunOutput output(replay, out_dir, overwrite, dump_kept);

  const std::size_t total = replay.total_prompts();
  Progress progress("run", total);
  std::size_t done = 0;
  replay.run([&](const PromptResult& r) {
    output.add(r);
    ++done;
    if (!quiet) progress.update(done, r.meta->id);
  });
  if (!quiet) progress.finish(std::to_string(total) + " prompts");

  const nlohmann::json m = replay_manifest(replay, args, threads, seed);
  output.finish(m);
  std::printf("mean output error (W_O space, mean over layers and prompts), %zu prompts:\n\n%s\nresults in %s\n", total,
              output.comparison_table().c_str(), out_dir.c_str());
  return 0;
}

int cmd_policies(const std::vector<std::string>& args) {
  po::options_description opts("policies options");
  if (!parse("policies", "Lists every retention policy with its parameters and defaults.", opts, args)) return 0;
  for (const auto& info : policy_registry()) {
    std::printf("%s%s\n    %s\n", info.name.c_str(), info.wraps ? "(scorer)" : "", info.summary.c_str());
    for (const auto& p : info.params)
      std::printf("    %-12s default %-8s %s\n", p.name.c_str(), p.default_value.c_str(), p.help.c_str());
  }
  std::printf("\nspec syntax: name:key=value,key=value   wrappers: name(inner spec):key=value\n");
  return 0;
}

}  // namespace kvsim::cli
