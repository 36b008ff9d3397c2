#include <catch2/catch.hpp>

#include "support/policy_fixture.hpp"

using namespace kvsim;

namespace {

// L=1, H=Hkv=2 (G=1), T=6; h2o:window=1 as the inner scorer with hand-set per-head scores
// (column sums = score · (T − i)):
//   head 0: 8 7 6 1 2 +inf      head 1: 3 0 5 4 0.5 +inf
PromptTensors hand_prompt() {
  test::PromptShape sh;
  sh.L = 1, sh.H = 2, sh.Hkv = 2, sh.T = 6, sh.M = 1, sh.W = 2;
  PromptTensors p = test::random_prompt(sh, 13);
  p.layers[0].attn_colsum = {48, 35, 24, 3, 4, 1, /*h1*/ 18, 0, 20, 12, 1, 1};
  return p;
}

}  // namespace

TEST_CASE("adakv gives a layer's budget to the top scores across heads, above a floor", "[policies][adakv]") {
  const PromptTensors p = hand_prompt();
  const auto ada = make_policy("adakv(h2o:window=1)");
  CHECK(ada->spec() == "adakv(h2o:window=1,reduce=mean):alpha=0.2");
  CHECK(ada->needs().colsum);
  const Selection s = ada->select(p.view(), test::plan_of({1, 3, 4}));
  CHECK(s.shared_order());
  // B=3, alpha 0.2: floor ⌊0.6⌋ = 0; the layer keeps 6: +inf (h0), +inf (h1), 8, 7, 6 (head 0), 5 (head 1).
  CHECK(test::kept_set(s, 1, 0, 0) == std::set<int>{0, 1, 2, 5});
  CHECK(test::kept_set(s, 1, 0, 1) == std::set<int>{2, 5});
  CHECK(s.count(1, 0, 0) == 4);
  CHECK(s.count(1, 0, 1) == 2);
  // B=1: the two protected tokens, one per head.
  CHECK(test::kept_set(s, 0, 0, 0) == std::set<int>{5});
  CHECK(test::kept_set(s, 0, 0, 1) == std::set<int>{5});
  // B=4: 8 slots: +inf, +inf, 8, 7, 6, 5, 4, 3 -> head 0 {5,0,1,2}, head 1 {5,2,3,0}.
  CHECK(test::kept_set(s, 2, 0, 0) == std::set<int>{0, 1, 2, 5});
  CHECK(test::kept_set(s, 2, 0, 1) == std::set<int>{0, 2, 3, 5});
  // alpha 1: every head keeps its own top B, the inner's uniform selection.
  const Selection u = make_policy("adakv(h2o:window=1):alpha=1")->select(p.view(), test::plan_of({3}));
  CHECK(test::kept_set(u, 0, 0, 0) == std::set<int>{0, 1, 5});
  CHECK(test::kept_set(u, 0, 0, 1) == std::set<int>{2, 3, 5});
  // alpha 0.75, B=4: floor 3 per head ({5,0,1} and {5,2,3}), then 2 more across heads:
  // 6 (head 0, token 2), then 3 (head 1, token 0) beats 2 (head 0, token 4).
  const Selection f = make_policy("adakv(h2o:window=1):alpha=0.75")->select(p.view(), test::plan_of({4}));
  CHECK(test::kept_set(f, 0, 0, 0) == std::set<int>{0, 1, 2, 5});
  CHECK(test::kept_set(f, 0, 0, 1) == std::set<int>{0, 2, 3, 5});
}

TEST_CASE("adakv over a scorer with sinks keeps them in every head", "[policies][adakv][sink]") {
  const PromptTensors p = hand_prompt();
  // sink=2: tokens 0 and 1 score +inf too; each head's order is 0, 1 (sinks), 5 (window), then
  // its scores (head 0: 2 4 3, head 1: 2 3 4). Across heads the +inf ties go sinks first,
  // then the lower head, so every head gets its sinks before any window token.
  const Selection s = make_policy("adakv(h2o:window=1,sink=2)")->select(p.view(), test::plan_of({2, 3, 4}));
  for (int g = 0; g < 2; ++g) {
    CHECK(test::kept_set(s, 0, 0, g) == std::set<int>{0, 1});        // B=2 < sink + window: the sinks
    CHECK(test::kept_set(s, 1, 0, g) == std::set<int>{0, 1, 5});     // B=3: 6 slots, all protected
    CHECK(test::kept_set(s, 2, 0, g) == std::set<int>{0, 1, 2, 5});  // B=4: + 6 (head 0), 5 (head 1)
  }
  // sink 0 at B=3 (above): head 1 keeps {2, 5}, dropping 0 and 1.
  CHECK(test::kept_set(make_policy("adakv(h2o:window=1)")->select(p.view(), test::plan_of({3})), 0, 0, 1) ==
        std::set<int>{2, 5});
}

TEST_CASE("adakv invariants, nesting, determinism and uneven counts on GQA shapes", "[policies][adakv]") {
  for (const auto& sh : test::gqa_shapes()) {
    const PromptTensors p = test::random_prompt(sh, 51 + sh.H, 3.0f);
    const auto plan = test::plan_of({2, 4, 5, 9, 14, sh.T});
    struct Case {
      const char* spec;
      int window, floor_at_9;  // ⌊alpha·9⌋
    };
    for (const auto& [spec, w, floor_at_9] : {Case{"adakv(snapkv:window=4)", 4, 1}, {"adakv(h2o:window=2,reduce=max):alpha=0.5", 2, 4},
                                              {"adakv(knorm):alpha=0", 0, 0}}) {
      const Selection s = test::check_policy(*make_policy(spec), p, plan, w);
      for (int b = 0; b < s.n_budgets(); ++b)
        for (int l = 0; l < sh.L; ++l) {
          CHECK(test::layer_kept(s, b, l) == static_cast<long>(sh.Hkv) * std::min(plan.per_head[b], sh.T));
          if (plan.per_head[b] == 9)
            for (int g = 0; g < sh.Hkv; ++g) CHECK(s.count(b, l, g) >= floor_at_9);
        }
    }
  }
  // adakv over pyramidkv (the paper's Ada-Pyramid) keeps the inner's layer budgets.
  test::PromptShape sh;
  sh.L = 4, sh.H = 6, sh.Hkv = 2, sh.T = 40;
  const PromptTensors p = test::random_prompt(sh, 57);
  const Selection s = make_policy("adakv(pyramidkv:window=4,beta=2)")->select(p.view(), test::plan_of({25}));
  const std::vector<long> layer = {36, 29, 21, 14};  // tests/207: pyramid budgets of L=4, T=40, B=25, w=4, beta=2
  bool uneven = false;
  for (int l = 0; l < sh.L; ++l) {
    CHECK(test::layer_kept(s, 0, l) == layer[l] * sh.Hkv);
    uneven = uneven || s.count(0, l, 0) != s.count(0, l, 1);
  }
  CHECK(uneven);
}

TEST_CASE("adakv refuses bad parameters and non-scorers", "[policies][adakv]") {
  CHECK_THROWS_WITH(make_policy("adakv(snapkv):alpha=1.5"), Catch::Contains("alpha must be in [0, 1]"));
  CHECK_THROWS_WITH(make_policy("adakv(snapkv):alpha=-0.1"), Catch::Contains("alpha must be in [0, 1]"));
  CHECK_THROWS_WITH(make_policy("adakv(snapkv):beta=2"), Catch::Contains("unknown parameter 'beta'"));
  CHECK_THROWS_WITH(make_policy("adakv"), Catch::Contains("wraps a scorer"));
  CHECK_THROWS_WITH(make_policy("adakv(full)"), Catch::Contains("no per-token score to wrap"));
  CHECK_THROWS_WITH(make_policy("adakv(criticalkv(snapkv))"), Catch::Contains("no per-token score to wrap"));
  CHECK_THROWS_WITH(make_policy("adakv(snapkv:kernel=2)"), Catch::Contains("kernel must be odd"));
}
