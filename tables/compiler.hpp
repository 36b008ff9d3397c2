#pragma once
// `kvsim compile`: CompilerKV decision tables from an offline contextual bandit over
// simulator rewards (docs/methods.md, "CompilerKV", docs/tables.md).
//
// Contexts: (B, l, h) for the head table, (B, l, b_ent, b_ppl) for the gate. Arms: head
// weights 0.8..1.5 step 0.025 (29), thresholds 0.8..1.0 step 0.01 (21). Horizon 1: a record
// is (context, arm, reward) with reward = −estimated Δ-NLL of the prompt, or its exact
// re-decode when the set has a model (tables/eval_set.hpp), and, for gate records, minus the
// over-retention penalty max(0, |C_w| − B')/T of the layer.
//
// Rounds alternate until no table entry changes (or max_rounds):
//   head phase: for h = 0..H−1 in turn (coordinate ascent over heads), every (B, l) context
//     of head h is evaluated with every other entry fixed at its current value; then the
//     entries of head h are set (so head h+1 sees them);
//   gate phase: every (B, l, b_ent, b_ppl) context with calibration prompts is evaluated with
//     the head table fixed; then the thresholds are set. Contexts without prompts keep the
//     default (0.8).
// Data collection per context: `cql` evaluates every arm on every calibration prompt of the
// context (exhaustive, so the data are uniform over arms) and fits the conservative Q;
// `ucb` / `thompson` spend `pulls` evaluations per context chosen adaptively, the k-th pull of
// an arm on the k-th prompt of a seeded permutation of the context's prompts (paired arms).
// An evaluation changes one layer of one budget, so it re-measures that layer only; the other
// layers keep the outcomes of the current table (computed once per prompt and pass).
// Bin edges: the 1/20..19/20 quantiles of the calibration prompts' α entropy, the 1/4..3/4
// quantiles of their window perplexity.
// Parallel over prompts (cql) or contexts (ucb, thompson) with oneTBB; every reward is
// computed by one task and reduced in prompt order, so the table is the same at any thread
// count for a seed.
// MPI (cql on a set spread over the ranks, EvalSet Placement::kBalanced): per pass each rank
// measures its own prompts' rewards R[p, ·, ·] (and counters); rank 0 gathers them, reduces
// in prompt order exactly as one process does, fits, and broadcasts the table (and the count
// of changed entries, so every rank runs the same rounds). The fit is rank 0's alone: the
// table is the same bytes at any number of ranks. ucb/thompson refuse a spread set.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "tables/eval_set.hpp"
#include "policies/decision_table.hpp"

namespace kvsim {

struct CompileOptions {
  std::vector<int> budgets;      // tokens per KV head
  std::string learner = "cql";   // cql | ucb | thompson
  double cql_lambda = 0.75;
  int max_rounds = 6;
  int pulls = 0;                 // ucb/thompson: evaluations per context (0 = 2 × arms)
  std::uint64_t seed = 0;
  GateMode gate_mode = GateMode::coverage;  // what the gate thresholds mean (decision_table.hpp; kvsim compile --gate)
  std::optional<ArmGrid> gate_arms;         // default: gate_arm_grid(gate_mode)
  std::function<void(const std::string&)> progress;  // one line per pass (may be empty)
};

struct CompileStats {
  int rounds = 0;
  bool converged = false;
  std::vector<int> changes;      // entries changed per round
  EvalCounters counters;         // layer decisions evaluated, distinct kept sets measured
  double seconds = 0;            // wall time of the rounds (loading excluded)
};

// Throws InputError for an unknown learner, empty budgets or a budget above a prompt's length.
// With a spread set every rank calls it; the result carries provenance on rank 0 only.
DecisionTable compile_table(const EvalSet& set, const CompileOptions& options, CompileStats* stats = nullptr);

// Quantile edges (n_bins − 1 of them) of values: edge k = the ⌊k·n/n_bins⌋-th smallest.
std::vector<double> quantile_edges(std::vector<double> values, int n_bins);

}  // namespace kvsim
