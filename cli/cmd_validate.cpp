// kvsim validate: estimated vs exact Δ-NLL over traces × policies × budgets (docs/metrics.md,
// "Validation"). Exact values decode every kept set for real with the model's weights.
#include <cstdio>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "core/error.hpp"
#include "sim/validation.hpp"

namespace kvsim::cli {

int cmd_validate(const std::vector<std::string>& args) {
  std::vector<std::string> traces;
  std::string model_path, policies, budgets, ratios, out_dir;
  int threads = 0;
  std::uint64_t seed = 0;
  bool overwrite = false, quiet = false;
  po::options_description opts("validate options");
  opts.add_options()("traces", po::value(&traces)->multitoken()->required(), "trace files (.h5)")
      ("model,m", po::value(&model_path)->required(), "the checkpoint the traces were recorded with (llama2.c .bin or HF directory)")
      ("policies,p", po::value(&policies)->default_value("all"), "policy specs, as for 'kvsim run'")
      ("budget,b", po::value(&budgets), "budgets in tokens per KV head, e.g. 16,32,64,128,256")
      ("ratio,r", po::value(&ratios), "or compression ratios, e.g. 0.5,0.8")
      ("out,o", po::value(&out_dir)->required(), "results directory (pairs.csv, correlations.csv, rankings.csv, manifest.json)")
      ("seed", po::value(&seed)->default_value(0), "seed mixed into every prompt's seed (random policy)")
      ("threads,t", po::value(&threads)->default_value(0), "worker threads (0 = all cores); results do not depend on it")
      ("overwrite", po::bool_switch(&overwrite), "replace an existing results directory")
      ("quiet,q", po::bool_switch(&quiet), "no progress line");
  po::positional_options_description pos;
  pos.add("traces", -1);
  if (!parse("validate", "Compares the estimated Δ-NLL of every kept set with its exact re-decode.", opts, args, &pos))
    return 0;
  auto tbb_limit = limit_threads(threads);

  ReplayOptions ro;
  for (const auto& t : traces) ro.traces.emplace_back(t);
  ro.policies = expand_policies(policies);
  ro.budgets = BudgetSweep::parse(budgets, ratios);
  ro.seed = seed;
  const Model model = load_model(model_path);
  // Everything is checked here (policies, traces, budgets, model vs traces), before any work.
  Validation validation(std::move(ro), model);
  if (std::filesystem::exists(out_dir) && !overwrite)
    fail<InputError>(out_dir, ": already exists (pass --overwrite to replace it)");

  const std::size_t total = validation.replay().total_prompts();
  Progress progress("validate", total);
  validation.run([&](std::size_t done, const std::string& id) {
    if (!quiet) progress.update(done, id);
  });
  if (!quiet) progress.finish(std::to_string(total) + " prompts");

  nlohmann::json m = replay_manifest(validation.replay(), args, threads, seed);
  m["model"] = model.source;
  validation.write(out_dir, overwrite, m);
  std::printf("estimated vs exact Δ-NLL, %zu prompts, %zu (prompt, policy, budget) points:\n\n%s\nresults in %s\n", total,
              validation.points().size(), validation.report().c_str(), out_dir.c_str());
  return 0;
}

}  // namespace kvsim::cli
