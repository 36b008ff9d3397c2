#pragma once
// Small synthetic prompts for policy and metric tests: random queries/keys/values of any
// shape, with the column sums, window and continuation attention computed honestly from
// them (a direct double-precision loop, independent of the simulator's GEMM path).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <memory>
#include <set>
#include <string>
#include <tbb/global_control.h>
#include <vector>

#include "core/rng.hpp"
#include "policies/policy.hpp"
#include "policies/prompt_tensors.hpp"

namespace kvsim::test {

struct PromptShape {
  int L = 2, H = 4, Hkv = 2, d = 8, D = 16, T = 24, M = 4, W = 6;
};

// Causal softmax of one query (position pos) over keys 0..n-1, double precision.
inline std::vector<double> reference_attention(const float* q, const float* k, int n, int pos, int d) {
  std::vector<double> a(n, 0.0);
  double mx = -1e300;
  const int vis = std::min(n, pos + 1);
  for (int j = 0; j < vis; ++j) {
    double s = 0;
    for (int e = 0; e < d; ++e) s += static_cast<double>(q[e]) * k[static_cast<std::size_t>(j) * d + e];
    a[j] = s / std::sqrt(static_cast<double>(d));
    mx = std::max(mx, a[j]);
  }
  double sum = 0;
  for (int j = 0; j < vis; ++j) sum += (a[j] = std::exp(a[j] - mx));
  for (int j = 0; j < vis; ++j) a[j] /= sum;
  return a;
}

// Random prompt; `key_scale` sharpens attention. Every derived tensor is filled.
inline PromptTensors random_prompt(const PromptShape& s, std::uint64_t seed, float key_scale = 1.5f) {
  Rng rng(seed);
  PromptTensors p;
  p.id = std::to_string(seed);  // (assigning a literal here trips GCC 12's false -Wrestrict, bug 105329)
  p.task = "synthetic";
  p.n_layers = s.L, p.n_heads = s.H, p.n_kv_heads = s.Hkv, p.head_dim = s.d, p.hidden = s.D;
  p.T = s.T, p.M = s.M, p.W = s.W, p.seed = seed;
  const int N = s.T + s.M, G = s.H / s.Hkv;
  auto fill = [&](std::vector<float>& v, std::size_t n, float scale) {
    v.resize(n);
    for (auto& x : v) x = scale * static_cast<float>(rng.normal());
  };
  auto w_o = std::make_shared<std::vector<std::vector<float>>>();
  for (int l = 0; l < s.L; ++l) {
    LayerTensors ly;
    fill(ly.keys, static_cast<std::size_t>(s.Hkv) * N * s.d, key_scale);
    fill(ly.values, static_cast<std::size_t>(s.Hkv) * N * s.d, 1.0f);
    std::vector<float> q;  // [H, N, d]: every position's query
    fill(q, static_cast<std::size_t>(s.H) * N * s.d, 1.0f);
    ly.q_window.resize(static_cast<std::size_t>(s.H) * s.W * s.d);
    ly.q_cont.resize(static_cast<std::size_t>(s.H) * s.M * s.d);
    ly.attn_colsum.assign(static_cast<std::size_t>(s.H) * s.T, 0.0f);
    for (int h = 0; h < s.H; ++h) {
      const float* qh = q.data() + static_cast<std::size_t>(h) * N * s.d;
      std::copy_n(qh + static_cast<std::size_t>(s.T - s.W) * s.d, s.W * s.d, ly.q_window.data() + static_cast<std::size_t>(h) * s.W * s.d);
      std::copy_n(qh + static_cast<std::size_t>(s.T) * s.d, s.M * s.d, ly.q_cont.data() + static_cast<std::size_t>(h) * s.M * s.d);
      const float* k = ly.keys.data() + static_cast<std::size_t>(h / G) * N * s.d;
      for (int pos = 0; pos < s.T; ++pos) {
        const auto a = reference_attention(qh + static_cast<std::size_t>(pos) * s.d, k, s.T, pos, s.d);
        for (int i = 0; i < s.T; ++i) ly.attn_colsum[static_cast<std::size_t>(h) * s.T + i] += static_cast<float>(a[i]);
      }
    }
    p.layers.push_back(std::move(ly));
    std::vector<float> wo;
    fill(wo, static_cast<std::size_t>(s.D) * s.H * s.d, 0.3f);
    w_o->push_back(std::move(wo));
  }
  p.w_o = w_o;
  p.prompt_logprob.resize(s.T);
  for (int i = 1; i < s.T; ++i) p.prompt_logprob[i] = -static_cast<float>(3.0 * rng.uniform());
  p.derive_attention(true, true);
  return p;
}

inline BudgetPlan plan_of(std::vector<int> budgets) {
  BudgetPlan plan;
  plan.per_head = std::move(budgets);
  return plan;
}

// The kept set of (b, l, g) as a sorted set.
inline std::set<int> kept_set(const Selection& s, int b, int l, int g) {
  const auto k = s.kept(b, l, g);
  return {k.begin(), k.end()};
}

// The invariants every policy must meet on a prompt, for every budget of the plan: a valid
// selection (permutations, counts in range), total kept <= (B + slack)·L·Hkv, no duplicates, kept ⊆
// prompt, and the last `protected_window` tokens kept per (layer, KV head) whenever the
// per-head count allows (count >= window).
inline void check_policy_invariants(const Policy& policy, const PromptTensors& p, const BudgetPlan& plan,
                                    int protected_window = 0) {
  const Selection s = policy.select(p.view(), plan);
  REQUIRE_NOTHROW(check_selection(s, plan, policy.spec(), policy.respects_budget(), policy.budget_slack()));
  for (int b = 0; b < s.n_budgets(); ++b) {
    if (policy.respects_budget())
      CHECK(s.total_kept(b) <= static_cast<long>(plan.per_head[b] + policy.budget_slack()) * p.n_layers * p.n_kv_heads);
    for (int l = 0; l < p.n_layers; ++l)
      for (int g = 0; g < p.n_kv_heads; ++g) {
        const auto kept = s.kept(b, l, g);
        const std::set<int> uniq(kept.begin(), kept.end());
        CHECK(uniq.size() == kept.size());
        for (int i : kept) CHECK((i >= 0 && i < p.T));
        if (protected_window > 0 && static_cast<int>(kept.size()) >= protected_window)
          for (int i = p.T - protected_window; i < p.T; ++i) CHECK(uniq.count(i) == 1);
      }
  }
}

// Shapes the policy tests cover: GQA with G = 2, G = 3 (not a power of two) and G = 1.
inline std::vector<PromptShape> gqa_shapes() {
  std::vector<PromptShape> shapes(3);
  shapes[1].H = 6, shapes[1].Hkv = 2, shapes[1].T = 30, shapes[1].W = 8;
  shapes[2].L = 3, shapes[2].H = 3, shapes[2].Hkv = 3, shapes[2].T = 17, shapes[2].M = 3;
  return shapes;
}

// Budgets in ascending order: every kept set of budget b contains that of budget b-1.
inline void check_nested(const Selection& s) {
  for (int b = 1; b < s.n_budgets(); ++b)
    for (int l = 0; l < s.n_layers(); ++l)
      for (int g = 0; g < s.n_kv_heads(); ++g) {
        const std::set<int> small = kept_set(s, b - 1, l, g), large = kept_set(s, b, l, g);
        CHECK(std::includes(large.begin(), large.end(), small.begin(), small.end()));
      }
}

// Two selections are identical: the same orders and the same counts for every budget.
inline bool same_selection(const Selection& a, const Selection& b) {
  if (a.n_orders() != b.n_orders() || a.n_budgets() != b.n_budgets() || a.n_layers() != b.n_layers() ||
      a.n_kv_heads() != b.n_kv_heads() || a.T() != b.T())
    return false;
  for (int l = 0; l < a.n_layers(); ++l)
    for (int g = 0; g < a.n_kv_heads(); ++g) {
      for (int o = 0; o < a.n_orders(); ++o) {
        const std::span<const std::int32_t> x = a.order(o, l, g), y = b.order(o, l, g);
        if (!std::equal(x.begin(), x.end(), y.begin(), y.end())) return false;
      }
      for (int k = 0; k < a.n_budgets(); ++k)
        if (a.count(k, l, g) != b.count(k, l, g)) return false;
    }
  return true;
}

// The selection is the same at one thread and at the default thread count.
inline void check_thread_independent(const Policy& policy, const PromptTensors& p, const BudgetPlan& plan) {
  Selection one;
  {
    tbb::global_control serial(tbb::global_control::max_allowed_parallelism, 1);
    one = policy.select(p.view(), plan);
  }
  CHECK(same_selection(one, policy.select(p.view(), plan)));
}

// The common checks of a policy on one prompt: the invariants (the last `window` tokens
// protected), the same selection at any thread count and, where the policy promises it,
// nested kept sets. Returns the selection for further checks.
inline Selection check_policy(const Policy& policy, const PromptTensors& p, const BudgetPlan& plan, int window,
                              bool nested = true) {
  check_policy_invariants(policy, p, plan, window);
  check_thread_independent(policy, p, plan);
  Selection s = policy.select(p.view(), plan);
  if (nested) check_nested(s);
  return s;
}

// A spec with the number of recent tokens it protects.
struct SpecWindow {
  const char* spec;
  int window;
};

// Σ over (l, g) of kept counts of layer l at budget b.
inline long layer_kept(const Selection& s, int b, int l) {
  long n = 0;
  for (int g = 0; g < s.n_kv_heads(); ++g) n += s.count(b, l, g);
  return n;
}

}  // namespace kvsim::test
