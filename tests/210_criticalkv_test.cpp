#include <catch2/catch.hpp>

#include <cmath>
#include <numeric>

#include "support/policy_fixture.hpp"

using namespace kvsim;

namespace {

// One layer, one head, d = 1, T = 6, column sums for an inner h2o:window=1 (score · (T − i));
// d = 1 values 1 1 1 10 1 1 (+ the continuation's); w_o [D=2, H·d=1] = (1, 0.5)ᵀ, so
// ‖W_O v_i‖₁ = 1.5 |v_i|.
PromptTensors weighted_prompt(std::vector<float> colsum) {
  test::PromptShape sh;
  sh.L = 1, sh.H = 1, sh.Hkv = 1, sh.d = 1, sh.D = 2, sh.T = 6, sh.M = 1, sh.W = 1;
  PromptTensors p = test::random_prompt(sh, 23);
  p.layers[0].attn_colsum = std::move(colsum);
  p.layers[0].values = {1, 1, 1, 10, 1, 1, 1};
  p.w_o = std::make_shared<std::vector<std::vector<float>>>(std::vector<std::vector<float>>{{1.0f, 0.5f}});
  return p;
}

}  // namespace

TEST_CASE("criticalkv's second stage weighs scores by the projected value norm", "[policies][criticalkv]") {
  // h2o scores 0.5 0.4 0.3 0.2 0.1 +inf; stage-2 scores (s + 1e-4)·1.5·|v| ≈ 0.75 0.6 0.45 3.0 0.15 +inf.
  PromptTensors p = weighted_prompt({3.0f, 2.0f, 1.2f, 0.4f, 0.2f, 1.0f});
  const auto crit = make_policy("criticalkv(h2o:window=1)");
  CHECK(crit->spec() == "criticalkv(h2o:window=1,reduce=mean):epsilon=1e-4,first_stage=0.5,reduce=mean");
  CHECK(crit->needs().w_o);
  CHECK(crit->needs().colsum);
  const Selection s = crit->select(p.view(), test::plan_of({3, 4}));
  CHECK(s.n_orders() == 2);
  // B=4: stage 1 keeps ⌊0.5·4⌋ = 2 by score: 5 (+inf), 0; stage 2 ranks 1 2 3 4 by the weighted
  // score: 3 (3.0), 1 (0.6). Token 3's large value displaces token 2, which h2o alone keeps.
  CHECK(test::kept_set(s, 1, 0, 0) == std::set<int>{0, 1, 3, 5});
  CHECK(test::kept_set(make_policy("h2o:window=1")->select(p.view(), test::plan_of({4})), 0, 0, 0) ==
        std::set<int>{0, 1, 2, 5});
  // B=3: stage 1 keeps 1 (the protected 5), stage 2 keeps 3 and 0.
  CHECK(test::kept_set(s, 0, 0, 0) == std::set<int>{0, 3, 5});
  // first_stage=1 is the inner alone; first_stage=0 ranks everything by the weighted score.
  CHECK(test::kept_set(make_policy("criticalkv(h2o:window=1):first_stage=1")->select(p.view(), test::plan_of({4})), 0, 0, 0) ==
        std::set<int>{0, 1, 2, 5});
  CHECK(test::kept_set(make_policy("criticalkv(h2o:window=1):first_stage=0")->select(p.view(), test::plan_of({2})), 0, 0, 0) ==
        std::set<int>{3, 5});
  // A protected token stays protected even with a zero projected norm (+inf · 0 is not NaN here).
  p.layers[0].values[5] = 0.0f;
  const Selection z = make_policy("criticalkv(h2o:window=1):first_stage=0")->select(p.view(), test::plan_of({1, 2}));
  CHECK(test::kept_set(z, 0, 0, 0) == std::set<int>{5});
  CHECK(test::kept_set(z, 1, 0, 0) == std::set<int>{3, 5});
}

TEST_CASE("criticalkv keeps the scorer's sinks in both stages", "[policies][criticalkv][sink]") {
  // h2o scores 0.1 0.2 0.3 0.4 0.5 +inf; stage-2 scores ≈ .15 .3 .45 6.0 .75 +inf.
  const PromptTensors p = weighted_prompt({0.6f, 1.0f, 1.2f, 1.2f, 1.0f, 1.0f});
  const auto plan = test::plan_of({2, 4});
  // sink 0, B=4: stage 1 keeps 5, 4; stage 2 keeps 3 (6.0), 2 (.45): 0 and 1 dropped.
  CHECK(test::kept_set(make_policy("criticalkv(h2o:window=1)")->select(p.view(), plan), 1, 0, 0) ==
        std::set<int>{2, 3, 4, 5});
  const auto crit = make_policy("criticalkv(h2o:window=1,sink=2)");
  CHECK(crit->spec() == "criticalkv(h2o:window=1,reduce=mean,sink=2):epsilon=1e-4,first_stage=0.5,reduce=mean");
  const Selection on = crit->select(p.view(), plan);
  // sink 2, B=4: stage 1 (k1 = 2) keeps the sinks 0, 1; stage 2 keeps 5 (+inf) and 3 (6.0).
  CHECK(test::kept_set(on, 1, 0, 0) == std::set<int>{0, 1, 3, 5});
  // B=2: stage 1 keeps 0, stage 2 the next protected token in order, the sink 1 (not the window).
  CHECK(test::kept_set(on, 0, 0, 0) == std::set<int>{0, 1});
}

TEST_CASE("criticalkv equals a direct computation on GQA shapes (W_O blocks, group mean)", "[policies][criticalkv]") {
  for (const auto& sh : test::gqa_shapes()) {
    const PromptTensors p = test::random_prompt(sh, 81 + sh.H, 2.0f);
    const int T = p.T, N = p.T + p.M, d = p.head_dim, D = p.hidden, H = p.n_heads, G = H / p.n_kv_heads;
    const auto plan = test::plan_of({2, 5, 9, sh.T});
    // oracle (no protection) as the inner; first_stage 0.4; reference stage-2 score in double.
    const auto crit = make_policy("criticalkv(oracle):first_stage=0.4");
    const Selection s = crit->select(p.view(), plan);
    const Selection inner = make_policy("oracle")->select(p.view(), test::plan_of({0}));
    for (int l = 0; l < p.n_layers; ++l)
      for (int g = 0; g < p.n_kv_heads; ++g) {
        std::vector<double> s2(T);
        for (int i = 0; i < T; ++i) {
          double oracle = 0, norm = 0;
          for (int h = g * G; h < (g + 1) * G; ++h) {
            for (int t = 0; t < p.M; ++t) oracle += p.layers[l].cont_attn[(static_cast<std::size_t>(h) * p.M + t) * N + i];
            for (int r = 0; r < D; ++r) {
              double x = 0;
              for (int e = 0; e < d; ++e)
                x += static_cast<double>((*p.w_o)[l][static_cast<std::size_t>(r) * H * d + h * d + e]) *
                     p.layers[l].values[(static_cast<std::size_t>(g) * N + i) * d + e];
              norm += std::abs(x) / G;  // group mean of the per-head L1 norms
            }
          }
          s2[i] = (oracle + 1e-4) * norm;
        }
        for (int b = 0; b < s.n_budgets(); ++b) {
          const int B = std::min(plan.per_head[b], T), k1 = static_cast<int>(0.4 * B + 1e-9);
          const auto order1 = inner.order(0, l, g);
          std::set<int> expected(order1.begin(), order1.begin() + k1);
          std::vector<int> rest;
          for (int i = 0; i < T; ++i)
            if (!expected.count(i)) rest.push_back(i);
          std::sort(rest.begin(), rest.end(), [&](int a, int c) { return s2[a] > s2[c]; });
          expected.insert(rest.begin(), rest.begin() + (B - k1));
          CHECK(test::kept_set(s, b, l, g) == expected);
        }
      }
  }
}

TEST_CASE("criticalkv invariants and determinism, per-budget orders", "[policies][criticalkv]") {
  for (const auto& sh : test::gqa_shapes()) {
    const PromptTensors p = test::random_prompt(sh, 91 + sh.H);
    const auto plan = test::plan_of({1, 3, 6, 11, sh.T});
    // Orders differ per budget, but with uniform layer budgets both stage sizes grow with B, so
    // the kept sets still nest (criticalkv.hpp); pyramidkv's layer budgets need not grow.
    struct Case {
      const char* spec;
      int window;
      bool nested;
    };
    for (const auto& [spec, w, nested] : {Case{"criticalkv(snapkv:window=4)", 4, true},
                                          {"criticalkv(h2o:window=3):first_stage=0.25,reduce=max", 3, true},
                                          {"criticalkv(pyramidkv:window=4,beta=1.5):epsilon=0.01", 4, false}})
      CHECK(test::check_policy(*make_policy(spec), p, plan, w, nested).n_orders() == static_cast<int>(plan.per_head.size()));
  }
}

TEST_CASE("criticalkv refuses bad parameters", "[policies][criticalkv]") {
  CHECK_THROWS_WITH(make_policy("criticalkv(snapkv):first_stage=1.5"), Catch::Contains("first_stage must be in [0, 1]"));
  CHECK_THROWS_WITH(make_policy("criticalkv(snapkv):epsilon=-1"), Catch::Contains("epsilon must be a finite number >= 0"));
  CHECK_THROWS_WITH(make_policy("criticalkv(snapkv):alpha=0.2"), Catch::Contains("unknown parameter 'alpha'"));
  CHECK_THROWS_WITH(make_policy("criticalkv"), Catch::Contains("wraps a scorer"));
  CHECK_THROWS_WITH(make_policy("criticalkv(adakv(snapkv))"), Catch::Contains("no per-token score to wrap"));
}
