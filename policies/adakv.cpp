#include "policies/adakv.hpp"

#include <algorithm>
#include <tbb/parallel_for.h>

#include "policies/score_utils.hpp"

namespace kvsim {

namespace {

class AdaKvPolicy final : public Policy {
 public:
  AdaKvPolicy(std::string spec, std::unique_ptr<ScoredPolicy> inner, double alpha)
      : Policy(std::move(spec)), inner_(std::move(inner)), alpha_(alpha) {}
  PolicyNeeds needs() const override { return inner_->needs(); }
  // The inner's layer budgets, so the inner's rounding allowance (pyramidkv:rounding=kvpress).
  int budget_slack() const override { return inner_->budget_slack(); }

  Selection select(const PromptView& v, const BudgetPlan& plan) const override {
    const int L = v.n_layers, Hkv = v.n_kv_heads, T = v.T, nb = static_cast<int>(plan.per_head.size());
    std::vector<float> scores(static_cast<std::size_t>(L) * Hkv * T);
    inner_->protected_scores(v, scores);
    Selection s(nb, 1, L, Hkv, T);
    order_rows(v, scores, s, inner_->sink());
    const auto budgets = inner_->plan_layer_budgets(v, plan);  // [nb][L]
    tbb::parallel_for(0, L, [&](int l) {
      for (int b = 0; b < nb; ++b) allocate_layer(v, scores, l, budgets[b][l], b, s);
    });
    return s;
  }

 private:
  // Counts of layer l at budget b: floors, then a merge of the heads' remaining orders.
  void allocate_layer(const PromptView& v, std::span<const float> scores, int l, int B, int b, Selection& s) const {
    const int Hkv = v.n_kv_heads, T = v.T, sink = inner_->sink();
    const int floor = floor_fraction(alpha_, B);
    std::vector<int> next(Hkv, floor);  // next position in each head's order
    long remaining = static_cast<long>(Hkv) * (B - floor);
    // (score, tie_rank): the order of a head restricted to its tokens, so merging keeps prefixes.
    auto score_at = [&](int g, int pos) {
      const std::int32_t i = s.order(0, l, g)[pos];
      return std::pair<float, std::int64_t>(scores[(static_cast<std::size_t>(l) * Hkv + g) * T + i], tie_rank(i, sink));
    };
    for (; remaining > 0; --remaining) {
      int best = -1;
      std::pair<float, std::int64_t> best_key{};
      for (int g = 0; g < Hkv; ++g) {
        if (next[g] >= T) continue;
        const auto key = score_at(g, next[g]);  // higher score, then tie_rank; lower head on a tie
        if (best < 0 || key.first > best_key.first || (key.first == best_key.first && key.second > best_key.second))
          best = g, best_key = key;
      }
      if (best < 0) break;
      ++next[best];
    }
    for (int g = 0; g < Hkv; ++g) s.count(b, l, g) = next[g];
  }

  std::unique_ptr<ScoredPolicy> inner_;
  double alpha_;
};

}  // namespace

PolicyInfo adakv_policy_info() {
  return {"adakv", "per-head floor alpha*B, rest of each layer's budget to the top scores across heads (Feng et al. 2024)",
          {{"alpha", "0.2", "fraction of the budget every KV head keeps by its own scores (in [0, 1])"}}, true,
          [](PolicyArgs a) {
            const double alpha = number_in(a.params, "alpha", 0.0, 1.0);
            return std::make_unique<AdaKvPolicy>(a.spec, std::move(a.inner), alpha);
          }};
}

}  // namespace kvsim
