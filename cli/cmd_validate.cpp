// kvsim validate: estimated vs exact Δ-NLL over traces × policies × budgets (docs/metrics.md,
// "Validation"). Exact values decode every kept set for real with the model's weights.
#include <cstdio>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "core/error.hpp"
#include "sim/validation.hpp"

namespace kvsim::cli {

int cmd_validate(const std::vector<std::string>& args) {
  ReplayArgs ra;
  std::string model_path, out_dir;
  po::options_description opts("validate options");
  ra.add_to(opts);
  opts.add_options()
      ("model,m", po::value(&model_path)->required(), "the checkpoint the traces were recorded with (llama2.c .bin or HF directory)")
      ("out,o", po::value(&out_dir)->required(), "results directory (pairs.csv, correlations.csv, rankings.csv, manifest.json)");
  po::positional_options_description pos;
  pos.add("traces", -1);
  if (!parse("validate", "Compares the estimated Δ-NLL of every kept set with its exact re-decode.", opts, args, &pos))
    return 0;
  auto tbb_limit = limit_threads(ra.threads);
  ReplayOptions ro = ra.replay_options();
  const Model model = load_model(model_path);
  // Everything is checked here (policies, traces, budgets, model vs traces), before any work.
  Validation validation(std::move(ro), model);
  if (std::filesystem::exists(out_dir) && !ra.overwrite)
    fail<InputError>(out_dir, ": already exists (pass --overwrite to replace it)");

  const std::size_t total = validation.replay().total_prompts();
  Progress progress("validate", total);
  validation.run([&](std::size_t done, const std::string& id) {
    if (!ra.quiet) progress.update(done, id);
  });
  if (!ra.quiet) progress.finish(std::to_string(total) + " prompts");

  nlohmann::json m = replay_manifest(validation.replay(), args, ra.threads, ra.seed);
  m["model"] = model.source;
  validation.write(out_dir, ra.overwrite, m);
  std::printf("estimated vs exact Δ-NLL, %zu prompts, %zu (prompt, policy, budget) points:\n\n%s\nresults in %s\n", total,
              validation.points().size(), validation.report().c_str(), out_dir.c_str());
  return 0;
}

}  // namespace kvsim::cli
