#pragma once
// Budgets of a sweep (docs/policies.md, Conventions): tokens kept per KV head (`--budget 64,128`), averaged
// over all (layer, KV head) pairs, or kvpress-style compression ratios (`--ratio 0.5`: the
// fraction of prompt tokens removed), resolved per prompt as kvpress does: B = int(T·(1 − r)),
// the product in double then truncation (at least 1).
#include <string>
#include <vector>

#include "policies/selection.hpp"

namespace kvsim {

class BudgetSweep {
 public:
  // Throws InputError for an empty list, a budget < 1, a ratio outside [0, 1), or both kinds.
  static BudgetSweep tokens(std::vector<int> budgets);
  static BudgetSweep ratios(std::vector<double> ratios);
  // Parses "64,128,256" / "0.5,0.8"; `what` names the option in errors.
  static BudgetSweep parse(const std::string& budgets, const std::string& ratios);

  int size() const { return static_cast<int>(labels_.size()); }
  const std::vector<std::string>& labels() const { return labels_; }  // "64" or "r0.5"
  bool is_ratio() const { return !ratios_.empty(); }
  // Per-head budgets for a prompt of T tokens; throws InputError naming `where` (file and
  // prompt) when a token budget exceeds T (a budget equal to T keeps everything).
  BudgetPlan resolve(int T, const std::string& where) const;

 private:
  std::vector<int> tokens_;
  std::vector<double> ratios_;
  std::vector<std::string> labels_;
};

}  // namespace kvsim
