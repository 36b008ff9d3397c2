#include "policies/selection.hpp"

#include <algorithm>

namespace kvsim {

long Selection::total_kept(int b) const {
  long total = 0;
  for (int l = 0; l < L_; ++l)
    for (int g = 0; g < Hkv_; ++g) total += count(b, l, g);
  return total;
}

void check_selection(const Selection& s, const BudgetPlan& plan, const std::string& policy, bool respects_budget,
                     int slack) {
  KVSIM_CHECK(s.n_budgets() == static_cast<int>(plan.per_head.size()), policy);
  std::vector<char> seen(s.T());
  for (int o = 0; o < s.n_orders(); ++o)
    for (int l = 0; l < s.n_layers(); ++l)
      for (int g = 0; g < s.n_kv_heads(); ++g) {
        std::fill(seen.begin(), seen.end(), 0);
        for (std::int32_t i : s.order(o, l, g)) {
          if (i < 0 || i >= s.T() || seen[i])
            fail<Error>("policy ", policy, ": order of layer ", l, " KV head ", g, " is not a permutation of 0..T-1");
          seen[i] = 1;
        }
      }
  for (int b = 0; b < s.n_budgets(); ++b) {
    for (int l = 0; l < s.n_layers(); ++l)
      for (int g = 0; g < s.n_kv_heads(); ++g)
        if (s.count(b, l, g) < 0 || s.count(b, l, g) > s.T())
          fail<Error>("policy ", policy, ": layer ", l, " KV head ", g, " keeps ", s.count(b, l, g), " of ", s.T(),
                      " tokens");
    const long cap = static_cast<long>(plan.per_head[b] + slack) * s.n_layers() * s.n_kv_heads();
    if (respects_budget && s.total_kept(b) > cap)
      fail<Error>("policy ", policy, ": keeps ", s.total_kept(b), " tokens at budget ", plan.per_head[b],
                  ", more than ", cap);
  }
}

}  // namespace kvsim
