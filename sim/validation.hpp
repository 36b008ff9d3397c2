#pragma once
// `kvsim validate`: how well the cheap Δ-NLL estimates predict the exact one (DESIGN.md §5:
// "that number is the product's credibility"). For traces × prompts × policies × budgets it
// replays the estimates (Replay) and decodes every kept set for real (ExactDecoder), then
// reports Spearman, Pearson and Kendall τ-b between each estimator and the exact Δ-NLL,
// overall, per policy and per budget, and per budget the agreement of the policy rankings
// (Kendall τ-b between the orders by mean estimate and by mean exact Δ-NLL).
#include <cstddef>
#include <filesystem>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sim/exact_decode.hpp"
#include "sim/replay.hpp"

namespace kvsim {

// One (trace, prompt, policy, budget).
struct FidelityPoint {
  std::size_t trace = 0;
  std::string prompt, task;
  int policy = 0, budget = 0, budget_tokens = 0;
  double kept_per_head = 0;
  bool keeps_all = false;  // every prompt token kept (full, or a budget >= T): both sides exactly 0
  double out_err = 0;      // mean over layers
  double est_sum = 0, est_logit = 0, est_kl = 0;  // PromptResult estimates (NaN when unsupported)
  double exact_nll = 0, exact_dnll = 0, exact_kl = 0;
};

struct CorrelationRow {
  std::string scope;      // "all", "compressed" (points that drop something), "policy", "budget"
  std::string name;       // policy spec or budget label ("all" for the first two)
  std::string estimator;  // "sum", "logit", "logit_kl"
  std::string target;     // "dnll" (exact Δ-NLL, signed) or "kl" (exact KL(full‖compressed))
  std::size_t n = 0;
  double spearman = 0, pearson = 0, kendall = 0;
};

struct RankingRow {
  std::string budget;     // label
  std::string estimator;
  int n_policies = 0;
  double kendall = 0;     // τ-b between the policy orders by mean estimate and by mean exact Δ-NLL
  std::string best_estimated, best_exact;  // policy with the lowest mean of each
};

class Validation {
 public:
  // Builds the replay (keep_selections forced on) and checks, before any work, that `model`
  // is the model of every trace and that every prompt has at least 2 continuation tokens.
  Validation(ReplayOptions options, const Model& model);

  const Replay& replay() const { return replay_; }
  // Evaluates every prompt in order; `progress(done, prompt id)` after each.
  void run(const std::function<void(std::size_t, const std::string&)>& progress = {});

  const std::vector<FidelityPoint>& points() const { return points_; }
  std::vector<CorrelationRow> correlations() const;
  std::vector<RankingRow> rankings() const;
  // The correlation and ranking tables as text.
  std::string report() const;
  // DIR/pairs.csv, correlations.csv, rankings.csv, manifest.json; atomic (DIR.partial renamed).
  void write(const std::filesystem::path& dir, bool overwrite, nlohmann::json manifest) const;

  // Wall time of the two sides, summed over prompts (for the manifest and the benchmark).
  double seconds_estimates() const { return seconds_estimates_; }
  double seconds_exact() const { return seconds_exact_; }

 private:
  Replay replay_;
  CpuForward fwd_;
  std::vector<FidelityPoint> points_;
  double seconds_estimates_ = 0, seconds_exact_ = 0;
};

}  // namespace kvsim
