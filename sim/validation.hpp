#pragma once
// `kvsim validate`: how well the cheap Δ-NLL estimates predict the exact one (docs/metrics.md:
// "that number is the product's credibility"). For traces × prompts × policies × budgets it
// replays the estimates (Replay) and decodes every kept set for real (ExactDecoder), then
// reports Spearman, Pearson and Kendall τ-b between each estimator and the exact Δ-NLL,
// overall, per policy and per budget, and per budget the agreement of the policy rankings
// (Kendall τ-b between the orders by mean estimate and by mean exact Δ-NLL).
//
// With generation on (GenerationOptions::max_new > 0) it also writes, for every kept set,
// the text the model generates greedily from the compressed cache (sim/generate.hpp), scores
// it against the prompt's gold answers with the task's scorer (metrics/task_score.hpp), and
// reports scores per (policy, budget) and task as % of FullKV (the same prompts decoded with
// the full cache) with bootstrap CIs, and the decision-level fidelity: per budget, Kendall τ-b
// between the policy ranking by each cheap estimate (and by exact Δ-NLL) and by task score,
// and Spearman over (policy, budget) cells (docs/metrics.md, "Task scores").
#include <cstddef>
#include <filesystem>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "metrics/task_score.hpp"
#include "sim/exact_decode.hpp"
#include "sim/replay.hpp"
#include "tracer/tokenizer.hpp"

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
  // Generation (NaN / empty when off): the score of the text generated from this kept set and
  // of the full cache's text for the same prompt, and the text itself.
  double score = std::numeric_limits<double>::quiet_NaN(), score_full = std::numeric_limits<double>::quiet_NaN();
  int generated_tokens = 0;
  std::string text;
};

struct GenerationOptions {
  int max_new = 0;            // tokens generated per kept set (0: no generation)
  std::string scorer;         // empty: the trace's scorer of the prompt, else default_scorer(task)
  const Tokenizer* tokenizer = nullptr;  // detokenizes the generated ids (required when max_new > 0)
  std::vector<int> stop;      // ids that end a generation (EOS / end of turn)
  int bootstrap = 1000;       // resamples of the % of FullKV and mean CIs
  std::uint64_t seed = 0;
};

// Per prompt: the full cache's generation and the gold answers it was scored against.
struct PromptGeneration {
  std::size_t trace = 0;
  std::string prompt, task, scorer;
  std::vector<std::string> gold;
  std::string text_full;
  double score_full = 0;
  int generated_tokens = 0;
};

// Task score of a (policy, budget) cell, overall or for one task.
struct ScoreRow {
  std::string task;       // "all" or the task
  int policy = 0, budget = 0;
  std::size_t n = 0;
  double kept_per_head = 0;
  double score = 0, score_lo = 0, score_hi = 0;  // mean and bootstrap 95% CI
  double pct_full = 0, pct_lo = 0, pct_hi = 0;   // Σ score / Σ score_full, CI (NaN when FullKV scores 0)
  double dnll_exact = 0, out_err = 0, est_logit = 0;  // means over the same points
};

// Decision-level fidelity: does a cheap number rank policies as the task score does?
struct DecisionRow {
  std::string scope;      // "budget" (policies ranked within one budget) or "cells" (all (policy, budget) means)
  std::string budget;     // budget label, or "all"
  std::string predictor;  // "out_err", "sum", "logit", "logit_kl", "dnll_exact"
  int n = 0;              // policies (budget) or cells
  double kendall = 0, spearman = 0;  // between the predictor's means and −score means (higher = better for both)
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

// Everything `validate` computes for one prompt: its (policy, budget) points in policy then
// budget order, its generation (with --generate), and what it cost.
struct PromptValidation {
  std::vector<FidelityPoint> points;
  std::vector<PromptGeneration> generation;  // 0 or 1
  double seconds_estimates = 0, seconds_exact = 0, seconds_generate = 0;
  std::size_t generation_jobs = 0;
};
// As bytes, for the ranks of an MPI job (core/dist.hpp); every field exactly.
std::string encode_prompt_validation(const PromptValidation& v);
PromptValidation decode_prompt_validation(std::string_view bytes);

class Validation {
 public:
  // Builds the replay (keep_selections forced on) and checks, before any work, that `model`
  // is the model of every trace and that every prompt has at least 2 continuation tokens.
  Validation(ReplayOptions options, const Model& model, GenerationOptions generation = {});

  const Replay& replay() const { return replay_; }
  // Evaluates every prompt in order; `progress(done, prompt id)` after each. In an MPI job every
  // rank calls it: the prompts are evaluated across the ranks and collected on rank 0, in order
  // (the other ranks' results stay empty; progress runs on rank 0).
  void run(const std::function<void(std::size_t, const std::string&)>& progress = {});
  // One prompt (prompt index i of trace t), and adding its results (run does both).
  PromptValidation evaluate_prompt(std::size_t t, std::size_t i) const;
  void add(PromptValidation&& v);

  const std::vector<FidelityPoint>& points() const { return points_; }
  std::vector<CorrelationRow> correlations() const;
  std::vector<RankingRow> rankings() const;
  // Generation only (empty otherwise).
  const std::vector<PromptGeneration>& generations() const { return generations_; }
  std::vector<ScoreRow> scores() const;
  std::vector<DecisionRow> decisions() const;
  // The correlation and ranking tables as text.
  std::string report() const;
  // DIR/pairs.csv, correlations.csv, rankings.csv, manifest.json, and with generation
  // scores.csv, decisions.csv, generations.jsonl; atomic (DIR.partial renamed).
  void write(const std::filesystem::path& dir, bool overwrite, nlohmann::json manifest) const;

  // Wall time of the two sides, summed over prompts (for the manifest and the benchmark).
  double seconds_estimates() const { return seconds_estimates_; }
  double seconds_exact() const { return seconds_exact_; }
  double seconds_generate() const { return seconds_generate_; }
  std::size_t generation_jobs() const { return generation_jobs_; }

 private:
  Replay replay_;
  CpuForward fwd_;
  GenerationOptions gen_;
  std::vector<FidelityPoint> points_;
  std::vector<PromptGeneration> generations_;
  double seconds_estimates_ = 0, seconds_exact_ = 0, seconds_generate_ = 0;
  std::size_t generation_jobs_ = 0;

  Scorer prompt_scorer(const PromptMeta& m, const std::string& where) const;
  void generate_prompt(std::size_t t, const PromptResult& r, const PromptOutputs& outputs, const ExactDecoder& decoder,
                       PromptValidation& out) const;
};

}  // namespace kvsim
