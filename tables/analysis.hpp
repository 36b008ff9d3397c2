#pragma once
// Table diff (a regression gate for table changes) and transfer analysis (docs/tables.md).
//
// diff: every prompt of an evaluation set is run under OLD and under NEW (CompilerKV with each
// table, mapped to the traces' model) at every budget; the paired difference of rewards
// d = reward_NEW − reward_OLD (reward = −estimated Δ-NLL, as compile uses without the
// over-retention penalty) is summarised per budget, per (task, budget) and over everything,
// with a seeded percentile bootstrap 95% CI over prompts. NEW is a regression when, for the
// whole set or any budget, the CI's upper end is below −tolerance (NEW confidently worse by
// more than the tolerance).
// transfer: Spearman rank correlation of two tables' entries (per layer and overall; head
// weights on the budgets both hold, thresholds of the gate contexts both learned), after
// mapping A to B's depth; and the transfer cost on B's traces: A's table versus B's own.
#include <cstdint>
#include <string>
#include <vector>

#include "tables/eval_set.hpp"
#include "policies/decision_table.hpp"

namespace kvsim {

struct PairedSummary {
  std::string scope;  // "all", "budget", "task"
  std::string task;   // task name for scope "task", else empty
  int budget = 0;     // 0 for scope "all"
  int n = 0;          // paired (prompt, budget) records
  double mean_old = 0, mean_new = 0, mean_diff = 0, ci_lo = 0, ci_hi = 0;
  bool regression = false;  // ci_hi < −tolerance
};

struct PairedRecord {
  std::size_t prompt = 0;
  int budget = 0;
  double old_reward = 0, new_reward = 0;
};

struct DiffReport {
  std::vector<PairedRecord> records;   // prompt-major, budgets in order
  std::vector<PairedSummary> rows;     // all, then per budget, then per (task, budget)
  bool regression = false;             // the "all" row or a budget row regressed
};

// Rewards of both tables on every prompt × budget (parallel over prompts; thread-count
// independent), then the summaries. Tables are mapped to the set's model (refused when the
// head counts differ). With a set spread over MPI ranks every rank calls it and measures its
// own prompts; rank 0 gets the full report, the others only `regression` (the exit code).
DiffReport diff_tables(const EvalSet& set, const DecisionTable& old_table, const DecisionTable& new_table,
                       const std::vector<int>& budgets, double tolerance, int bootstrap, std::uint64_t seed);

struct TransferCorrelation {
  std::string part;  // "head" or "gate"
  int layer = -1;    // −1: overall
  int n = 0;
  double rho = 0;
};
// Entries of both tables after mapping a to b's shape: head weights per layer over (common
// budget, head); gate thresholds per layer over (common budget, bin) for the bins both
// calibration sets populated (provenance gate_bins_seen; the others hold the default in
// both, ties that would inflate ρ). Budgets in both tables only.
std::vector<TransferCorrelation> table_correlations(const DecisionTable& a, const DecisionTable& b);

}  // namespace kvsim
