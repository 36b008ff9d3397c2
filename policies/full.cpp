#include "policies/full.hpp"

#include <numeric>

namespace kvsim {

namespace {

class FullPolicy final : public Policy {
 public:
  explicit FullPolicy(std::string spec) : Policy(std::move(spec)) {}
  bool respects_budget() const override { return false; }
  Selection select(const PromptView& v, const BudgetPlan& plan) const override {
    const int nb = static_cast<int>(plan.per_head.size());
    Selection s(nb, 1, v.n_layers, v.n_kv_heads, v.T);
    for (int l = 0; l < v.n_layers; ++l)
      for (int g = 0; g < v.n_kv_heads; ++g) {
        auto o = s.order(0, l, g);
        std::iota(o.begin(), o.end(), 0);
        for (int b = 0; b < nb; ++b) s.count(b, l, g) = v.T;
      }
    return s;
  }
};

}  // namespace

PolicyInfo full_policy_info() {
  return {"full", "keep every prompt token (the reference)", {}, false,
          [](PolicyArgs a) { return std::make_unique<FullPolicy>(a.spec); }};
}

}  // namespace kvsim
