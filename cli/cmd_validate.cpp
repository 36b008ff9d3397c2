// kvsim validate: estimated vs exact Δ-NLL over traces × policies × budgets (docs/metrics.md,
// "Validation"). Exact values decode every kept set for real with the model's weights.
#include <cstdio>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "core/dist.hpp"
#include "core/error.hpp"
#include "sim/validation.hpp"

namespace kvsim::cli {

int cmd_validate(const std::vector<std::string>& args) {
  ReplayArgs ra;
  std::string model_path, out_dir, tokenizer_path, scorer;
  int generate = 0, bootstrap = 1000;
  po::options_description opts("validate options");
  ra.add_to(opts);
  opts.add_options()
      ("model,m", po::value(&model_path)->required(), "the checkpoint the traces were recorded with (llama2.c .bin or HF directory)")
      ("out,o", po::value(&out_dir)->required(), "results directory (pairs.csv, correlations.csv, rankings.csv, manifest.json)")
      ("generate,g", po::value(&generate)->default_value(0),
       "also generate N tokens greedily from every compressed cache and score them against the gold answers "
       "(scores.csv, decisions.csv, generations.jsonl); 0 = off")
      ("scorer", po::value(&scorer),
       "with --generate: ruler_all | ruler_part | exact_match | f1 | rouge_l for every prompt (default: the trace's, "
       "else by task name)")
      ("bootstrap", po::value(&bootstrap)->default_value(1000), "with --generate: bootstrap resamples of the CIs")
      ("tokenizer", po::value(&tokenizer_path), "with --generate: tokenizer file (default: the model's own or found beside it)");
  po::positional_options_description pos;
  pos.add("traces", -1);
  if (!parse("validate", "Compares the estimated Δ-NLL of every kept set with its exact re-decode.", opts, args, &pos))
    return 0;
  auto tbb_limit = limit_threads(ra.threads);
  require_at_least("--generate", generate, 0);
  require_at_least("--bootstrap", bootstrap, 1);
  ReplayOptions ro = ra.replay_options();
  const Model model = load_model(model_path);
  GenerationOptions go;
  std::unique_ptr<Tokenizer> tok;
  if (generate > 0) {
    tok = resolve_tokenizer(model_path, tokenizer_path, model.config.vocab);
    go.max_new = generate, go.scorer = scorer, go.tokenizer = tok.get(), go.bootstrap = bootstrap, go.seed = ra.seed;
    if (tok->eos_id() >= 0) go.stop.push_back(tok->eos_id());
  } else if (!scorer.empty() || !tokenizer_path.empty()) {
    fail<InputError>("--scorer and --tokenizer are used with --generate N only");
  }
  go.max_new = generate;
  // Everything is checked here (policies, traces, budgets, model vs traces, scorers and gold
  // answers), before any work.
  Validation validation(std::move(ro), model, go);
  // In an MPI job every rank evaluates prompts; rank 0 alone writes (core/dist.hpp).
  if (!dist::is_root()) {
    validation.run();
    return 0;
  }
  if (std::filesystem::exists(out_dir) && !ra.overwrite)
    fail<InputError>(out_dir, ": already exists (pass --overwrite to replace it)");

  const std::size_t total = validation.replay().total_prompts();
  Progress progress("validate", total);
  validation.run([&](std::size_t done, const std::string& id) {
    if (!ra.quiet) progress.update(done, id);
  });
  if (!ra.quiet) progress.finish(std::to_string(total) + " prompts" + ranks_note());

  nlohmann::json m = replay_manifest("validate", validation.replay(), args, ra.threads, ra.seed);
  m["model"] = model.source;
  validation.write(out_dir, ra.overwrite, m);
  std::printf("estimated vs exact Δ-NLL, %zu prompts, %zu (prompt, policy, budget) points:\n\n%s\nresults in %s\n", total,
              validation.points().size(), validation.report().c_str(), out_dir.c_str());
  return 0;
}

}  // namespace kvsim::cli
