#include "policies/criticalkv.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <tbb/parallel_for.h>

#include "core/value_norm.hpp"
#include "policies/score_utils.hpp"

namespace kvsim {

namespace {

// n[i] = reduce over the query heads h of KV head g of ‖W_O^h v_i‖₁, for the T prompt tokens:
// the trace's recorded `value_wo_l1` when it has one, else computed here by the same function
// (core/value_norm.hpp) on the same values, so the bytes do not depend on which.
void projected_value_l1(const PromptView& v, int l, int g, GroupReduce reduce, std::vector<float>& n) {
  const int H = v.n_heads, G = v.group_size(), T = v.T;
  const LayerData& ly = v.layers[l];
  std::vector<float> per_head(static_cast<std::size_t>(G) * T);  // [G, T]
  if (!ly.value_wo_l1.empty()) {
    KVSIM_CHECK(ly.value_wo_l1.size() == static_cast<std::size_t>(H) * T, "prompt ", v.id, ": value_wo_l1 size, layer ", l);
    std::copy_n(ly.value_wo_l1.begin() + static_cast<std::ptrdiff_t>(g) * G * T, per_head.size(), per_head.begin());
  } else {
    KVSIM_CHECK(ly.w_o.size() == static_cast<std::size_t>(v.hidden) * H * v.head_dim, "prompt ", v.id, ": w_o missing for layer ", l);
    value_wo_l1({H, v.n_kv_heads, v.head_dim, v.hidden, T, T + v.M}, ly.values, ly.w_o, g * G, G, per_head);
  }
  n.resize(T);
  reduce_group(per_head, G, 1, T, reduce, n);
}

class CriticalKvPolicy final : public Policy {
 public:
  CriticalKvPolicy(std::string spec, std::unique_ptr<ScoredPolicy> inner, double epsilon, double first_stage,
                   GroupReduce reduce)
      : Policy(std::move(spec)), inner_(std::move(inner)), epsilon_(epsilon), first_stage_(first_stage), reduce_(reduce) {}
  PolicyNeeds needs() const override {
    PolicyNeeds n = inner_->needs();
    n.w_o = true;
    return n;
  }
  // The inner's layer budgets, so the inner's rounding allowance (pyramidkv:rounding=kvpress).
  int budget_slack() const override { return inner_->budget_slack(); }

  Selection select(const PromptView& v, const BudgetPlan& plan) const override {
    const int L = v.n_layers, Hkv = v.n_kv_heads, T = v.T, nb = static_cast<int>(plan.per_head.size());
    std::vector<float> scores(static_cast<std::size_t>(L) * Hkv * T);
    inner_->protected_scores(v, scores);
    const auto budgets = inner_->plan_layer_budgets(v, plan);  // [nb][L]
    Selection s(nb, nb, L, Hkv, T);
    tbb::parallel_for(0, L * Hkv, [&](int lg) {
      const int l = lg / Hkv, g = lg % Hkv;
      const std::span<const float> s1 = score_row(std::span<const float>(scores), v, l, g);
      std::vector<float> norm, s2(T);
      projected_value_l1(v, l, g, reduce_, norm);
      const float eps = static_cast<float>(epsilon_), inf = std::numeric_limits<float>::infinity();
      for (int i = 0; i < T; ++i) s2[i] = s1[i] == inf ? inf : (s1[i] + eps) * norm[i];
      std::vector<std::int32_t> order1(T), order2(T);
      order_by_score(s1, order1, inner_->sink());
      order_by_score(s2, order2, inner_->sink());
      std::vector<char> first(T);
      for (int b = 0; b < nb; ++b) {
        const int B = budgets[b][l], k1 = floor_fraction(first_stage_, B);
        const std::span<std::int32_t> out = s.order(b, l, g);
        std::fill(first.begin(), first.end(), 0);
        std::copy_n(order1.begin(), k1, out.begin());
        for (int j = 0; j < k1; ++j) first[order1[j]] = 1;
        int pos = k1;
        for (std::int32_t i : order2)
          if (!first[i]) out[pos++] = i;
        s.count(b, l, g) = B;
      }
    });
    return s;
  }

 private:
  std::unique_ptr<ScoredPolicy> inner_;
  double epsilon_, first_stage_;
  GroupReduce reduce_;
};

}  // namespace

PolicyInfo criticalkv_policy_info() {
  return {"criticalkv",
          "two stages: top first_stage*B by the scorer, the rest by (score+eps)*|W_O^h v|_1 (Feng et al. 2025)",
          {{"epsilon", "1e-4", "added to the score before weighting by the projected value norm (>= 0)"},
           {"first_stage", "0.5", "fraction of the budget chosen by the scorer alone (in [0, 1])"},
           reduce_param()},
          true, [](PolicyArgs a) {
            const double eps = number_in(a.params, "epsilon", 0.0, std::numeric_limits<double>::infinity());
            const double fs = number_in(a.params, "first_stage", 0.0, 1.0);
            return std::make_unique<CriticalKvPolicy>(a.spec, std::move(a.inner), eps, fs, parse_group_reduce(a.params));
          }};
}

}  // namespace kvsim
