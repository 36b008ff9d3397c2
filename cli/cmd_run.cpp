// kvsim run: replay traces against policies × budgets, write results, print the comparison.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "core/dist.hpp"
#include "sim/replay.hpp"
#include "sim/run_output.hpp"

namespace kvsim::cli {

int cmd_run(const std::vector<std::string>& args) {
  ReplayArgs ra;
  std::string out_dir, dump_kept;
  po::options_description opts("run options");
  ra.add_to(opts);
  opts.add_options()("out,o", po::value(&out_dir)->required(), "results directory (layers.csv, summary.csv, manifest.json)")
      ("dump-kept", po::value(&dump_kept), "also write the kept token indices per (prompt, policy, budget, layer, KV head) to this CSV");
  po::positional_options_description pos;
  pos.add("traces", -1);
  if (!parse("run", "Replays traces against retention policies × budgets and measures output error.", opts, args, &pos))
    return 0;
  auto tbb_limit = limit_threads(ra.threads);
  if (!dump_kept.empty()) check_output_file(dump_kept, "--dump-kept", true);  // RunOutput refuses an existing one
  ReplayOptions ro = ra.replay_options();
  // The kept sets reach RunOutput for kept.csv (per KV head counts) and --dump-kept; they are
  // the replay's own selections, moved, not copied: no extra work or peak memory.
  ro.keep_selections = true;
  // From the other ranks of an MPI job, the kept tokens only when they are dumped.
  ro.selection_tokens = !dump_kept.empty();
  // Everything is checked here, before any work and before any output exists.
  const Replay replay(std::move(ro));
  // In an MPI job every rank replays prompts; rank 0 alone writes (core/dist.hpp).
  if (!dist::is_root()) {
    replay.run([](const PromptResult&) {});
    return 0;
  }
  RunOutput output(replay, out_dir, ra.overwrite, dump_kept);

  const std::size_t total = replay.total_prompts();
  Progress progress("run", total);
  std::size_t done = 0;
  replay.run([&](const PromptResult& r) {
    output.add(r);
    ++done;
    if (!ra.quiet) progress.update(done, r.meta->id);
  });
  if (!ra.quiet) progress.finish(std::to_string(total) + " prompts" + ranks_note());

  const nlohmann::json m = replay_manifest("run", replay, args, ra.threads, ra.seed);
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
