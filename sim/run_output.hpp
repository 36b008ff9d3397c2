#pragma once
// What `kvsim run` writes: a results directory, complete or absent (written as
// DIR.partial, renamed when complete):
//   layers.csv    one row per (trace, prompt, policy, budget, layer)
//   summary.csv   aggregates per prompt, per task and overall (scope column)
//   manifest.json tool version, git sha, inputs and their hashes, policy specs, budgets, threads
//   kept.csv      mean kept tokens per (policy, budget, layer, KV head) over prompts (when the
//                 replay keeps its selections: `kvsim run` always does)
// and optionally the kept sets (--dump-kept FILE). Numbers are printed with %.9g, rows in a
// fixed order, so the same run gives the same bytes at any thread count. docs/metrics.md
// describes every column.
#include <array>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sim/replay.hpp"

namespace kvsim {

class RunOutput {
 public:
  // Creates DIR.partial; refuses an existing DIR unless overwrite.
  RunOutput(const Replay& replay, std::filesystem::path dir, bool overwrite, std::filesystem::path dump_kept = {});
  ~RunOutput();  // removes the partial outputs when finish() was not reached
  RunOutput(const RunOutput&) = delete;
  RunOutput& operator=(const RunOutput&) = delete;

  void add(const PromptResult& r);
  // Writes summary.csv and manifest.json (with `manifest` merged in), renames into place.
  void finish(const nlohmann::json& manifest);

  // Mean output error (W_O space) per policy × budget over all prompts, as a text table.
  std::string comparison_table() const;

 private:
  struct Sums {
    int n = 0;
    double budget_tokens = 0, kept_per_head = 0, kept_bytes = 0, out_err = 0, out_err_value = 0, recall = 0;
    double dnll_est_sum = 0, dnll_est_logit = 0;  // NaN propagates: a trace without the logit datasets
    void add(const Sums& s);
  };
  void write_summary_row(std::FILE* f, const std::string& scope, const std::string& name, int p, int b, const Sums& s);

  const Replay& replay_;
  std::filesystem::path dir_, partial_, dump_, dump_partial_;
  std::FILE* layers_ = nullptr;
  std::FILE* kept_ = nullptr;
  std::FILE* prompt_rows_ = nullptr;                     // summary rows of scope "prompt", streamed to a side file
  std::map<std::string, std::vector<Sums>> per_task_;    // task -> [P*B]
  std::vector<Sums> overall_;                            // [P*B]
  // (policy, budget, layer, KV head) -> Σ kept tokens over prompts, number of prompts
  std::map<std::array<int, 4>, std::pair<long long, int>> kept_per_head_;
  bool finished_ = false;
};

}  // namespace kvsim
