#pragma once
// Budgets and kept sets.
//
// Budget B (docs/policies.md, Conventions) = prompt tokens kept per KV head, averaged over all (layer, KV
// head) pairs: the total kept is B·L·Hkv. Protected tokens count inside it; a policy may keep
// fewer, never more (except within its Policy::budget_slack(): pyramidkv:rounding=kvpress).
//
// A Selection stores every budget of a sweep at once: for each (layer, KV head) a priority
// order of the T prompt tokens, and per budget how many of its first tokens are kept. Every
// policy here keeps a prefix of one score order, so most have a single order shared by all
// budgets (kept sets nested), which lets the metrics sweep budgets incrementally.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/error.hpp"

namespace kvsim {

struct BudgetPlan {
  std::vector<int> per_head;  // B for each budget of the sweep, resolved for this prompt
  // The same budgets before truncation: T·(1 − r) for a compression ratio r (kvpress's
  // q_len * (1 - compression_ratio)), B itself for a token budget. Empty = per_head. Only
  // rules that reproduce kvpress's own rounding read it (pyramidkv:rounding=kvpress).
  std::vector<double> per_head_exact;
  double exact(int b) const { return per_head_exact.empty() ? per_head[b] : per_head_exact[b]; }
};

class Selection {
 public:
  Selection() = default;
  // n_orders: 1 when all budgets share the order, else n_budgets.
  Selection(int n_budgets, int n_orders, int n_layers, int n_kv_heads, int T)
      : n_budgets_(n_budgets), n_orders_(n_orders), L_(n_layers), Hkv_(n_kv_heads), T_(T),
        order_(static_cast<std::size_t>(n_orders) * n_layers * n_kv_heads * T),
        count_(static_cast<std::size_t>(n_budgets) * n_layers * n_kv_heads) {
    KVSIM_CHECK(n_orders == 1 || n_orders == n_budgets);
  }

  int n_budgets() const { return n_budgets_; }
  int n_orders() const { return n_orders_; }
  int n_layers() const { return L_; }
  int n_kv_heads() const { return Hkv_; }
  int T() const { return T_; }
  bool shared_order() const { return n_orders_ == 1; }

  // Priority order of (layer l, KV head g) used by budget b: [T], best first.
  std::span<std::int32_t> order(int b, int l, int g) {
    return {order_.data() + offset(b, l, g), static_cast<std::size_t>(T_)};
  }
  std::span<const std::int32_t> order(int b, int l, int g) const {
    return {order_.data() + offset(b, l, g), static_cast<std::size_t>(T_)};
  }
  int& count(int b, int l, int g) { return count_[(static_cast<std::size_t>(b) * L_ + l) * Hkv_ + g]; }
  int count(int b, int l, int g) const { return count_[(static_cast<std::size_t>(b) * L_ + l) * Hkv_ + g]; }
  // The kept prompt tokens of (l, g) at budget b, in priority order.
  std::span<const std::int32_t> kept(int b, int l, int g) const { return order(b, l, g).first(count(b, l, g)); }
  // Σ over (l, g) of kept counts at budget b.
  long total_kept(int b) const;

 private:
  std::size_t offset(int b, int l, int g) const {
    const int o = n_orders_ == 1 ? 0 : b;
    return ((static_cast<std::size_t>(o) * L_ + l) * Hkv_ + g) * T_;
  }
  int n_budgets_ = 0, n_orders_ = 0, L_ = 0, Hkv_ = 0, T_ = 0;
  std::vector<std::int32_t> order_;  // [n_orders, L, Hkv, T]
  std::vector<int> count_;           // [n_budgets, L, Hkv]
};

// Checks the invariants every policy must meet (each order a permutation of 0..T-1, counts
// in [0, T], and unless the policy ignores budgets, total kept <= (B + slack)·L·Hkv, slack =
// Policy::budget_slack()); throws Error naming the policy on a violation.
void check_selection(const Selection& s, const BudgetPlan& plan, const std::string& policy, bool respects_budget = true,
                     int slack = 0);

}  // namespace kvsim
