#include <catch2/catch.hpp>

#include <numeric>

#include "policies/pyramidkv.hpp"
#include "support/policy_fixture.hpp"

using namespace kvsim;

TEST_CASE("pyramidkv layer budgets follow kvpress's formula and preserve the total", "[policies][pyramidkv]") {
  // L=4, T=100, window 4, beta 2, B=20: min = 20/2 = 10, max = 2·20 − 10 = 30; 100 >= 30 >= 10 >= 4.
  // step (30 − 10)/3 = 6.67: raw 30, 23.33, 16.67, 10 (sum 80 = 4·20); largest remainder: 30 23 17 10.
  CHECK(pyramid_layer_budgets(4, 100, 20, 4, 2.0) == std::vector<int>{30, 23, 17, 10});
  // T=40, B=25: min 12.5, max 37.5 >= T − w = 36 -> max 36, min 2·25 − 36 = 14; step 7.33:
  // raw 36, 28.67, 21.33, 14 (sum 100) -> 36 29 21 14.
  CHECK(pyramid_layer_budgets(4, 40, 25, 4, 2.0) == std::vector<int>{36, 29, 21, 14});
  // beta 20: min = 1 < window 4: the constraints fail, kvpress falls back to SnapKV's uniform B.
  CHECK(pyramid_layer_budgets(4, 100, 20, 4, 20.0) == std::vector<int>{20, 20, 20, 20});
  // beta 20 needs B >= 20·w: B=1600, w=64: min 80 >= 64, max 2·1600 − 80 = 3120 <= T − w = 3936;
  // 32 layers from 3120 down to 80.
  const auto deep = pyramid_layer_budgets(32, 4000, 1600, 64, 20.0);
  CHECK(deep.front() == 3120);
  CHECK(deep.back() == 80);
  CHECK(std::accumulate(deep.begin(), deep.end(), 0L) == 32L * 1600);
  // one layer, and B beyond T
  CHECK(pyramid_layer_budgets(1, 50, 30, 4, 2.0) == std::vector<int>{30});
  CHECK(pyramid_layer_budgets(3, 50, 80, 4, 2.0) == std::vector<int>{50, 50, 50});
  // total preserved and every layer in [0, T] over a sweep of shapes
  for (int L : {2, 3, 5, 7, 32})
    for (int T : {10, 37, 128, 1000})
      for (int w : {1, 4, 8})
        for (double beta : {1.0, 1.5, 2.0, 5.0, 20.0})
          for (int B = 0; B <= T + 3; B += 1 + T / 17) {
            const auto v = pyramid_layer_budgets(L, T, B, w, beta);
            REQUIRE(static_cast<int>(v.size()) == L);
            CHECK(std::accumulate(v.begin(), v.end(), 0L) == static_cast<long>(L) * std::min(B, T));
            for (int x : v) CHECK((x >= 0 && x <= T));
          }
}

TEST_CASE("pyramidkv rounding=kvpress: kvpress's get_layer_budget, each layer rounded on its own", "[policies][pyramidkv]") {
  // SmolLM2 (30 layers), T = 4195, r = 0.5, window 64, beta 20 (kvpress's defaults).
  // kvpress: q_len·(1 − r) = 2097.5 (exact in double); max_capacity_prompt = 64 + 2097.5 = 2161.5;
  //   min = 2097.5/20 = 104.875, max = 2·2097.5 − 104.875 = 4090.125 < T − 64 = 4131 (no clamp);
  //   4195 >= 4090.125 >= 104.875 >= 64: the pyramid; steps = 3985.25/29 = 137.4224138;
  //   raw[l] = 4090.125 − l·137.4224138 = 4090.125, 3952.703, 3815.280, 3677.858, 3540.435, 3403.013,
  //   3265.591, 3128.168, 2990.746, 2853.323, 2715.901, 2578.478, 2441.056, 2303.634, 2166.211,
  //   2028.789, 1891.366, 1753.944, 1616.522, 1479.099, 1341.677, 1204.254, 1066.832, 929.409,
  //   791.987, 654.565, 517.142, 379.720, 242.297, 104.875; round() each (no halves) below.
  //   Σ = 62925 = 30·2097.5.
  const std::vector<int> kvpress = {4090, 3953, 3815, 3678, 3540, 3403, 3266, 3128, 2991, 2853,
                                    2716, 2578, 2441, 2304, 2166, 2029, 1891, 1754, 1617, 1479,
                                    1342, 1204, 1067, 929,  792,  655,  517,  380,  242,  105};
  const double kept = 4195 * (1 - 0.5);
  CHECK(pyramid_layer_budgets_kvpress(30, 4195, kept, 64, 20.0) == kvpress);
  CHECK(std::accumulate(kvpress.begin(), kvpress.end(), 0L) == 62925);
  // kvsim's largest remainders take the integer B = int(2097.5) = 2097: min 104.85, max 4089.15,
  // step 137.3896552, raw 4089.15, 3951.760, 3814.371, ... 104.85 (floors sum to 62893, the 17
  // largest remainders get +1): Σ = 62910 = 30·2097 exactly.
  const std::vector<int> largest_remainder = {4089, 3952, 3814, 3677, 3540, 3402, 3265, 3127, 2990, 2853,
                                              2715, 2578, 2440, 2303, 2166, 2028, 1891, 1754, 1616, 1479,
                                              1341, 1204, 1067, 929,  792,  654,  517,  380,  242,  105};
  CHECK(pyramid_layer_budgets(30, 4195, 2097, 64, 20.0) == largest_remainder);
  int differ = 0;
  for (int l = 0; l < 30; ++l) {
    CHECK(kvpress[l] - largest_remainder[l] >= 0);
    CHECK(kvpress[l] - largest_remainder[l] <= 1);
    differ += kvpress[l] != largest_remainder[l];
  }
  CHECK(differ == 15);  // 15 of 30 layers keep one token more in kvpress

  // Python's round() takes halves to the even integer: --budget 21 (kept = 21 exactly), L=4,
  // T=100, w=4, beta 2: min 10.5, max 31.5, step 7: raw 31.5, 24.5, 17.5, 10.5 -> 32 24 18 10.
  CHECK(pyramid_layer_budgets_kvpress(4, 100, 21.0, 4, 2.0) == std::vector<int>{32, 24, 18, 10});
  // The fallback keeps round(q_len·(1 − r)), not int(): 4195·(1 − 0.8) = 838.9999999999998
  // -> 839 in every layer (min 41.95 < 64), one more than the per-head budget int() = 838.
  CHECK(pyramid_layer_budgets_kvpress(3, 4195, 4195 * (1 - 0.8), 64, 20.0) == std::vector<int>{839, 839, 839});
  CHECK(pyramid_layer_budgets_kvpress(2, 5, 2.5, 4, 20.0) == std::vector<int>{2, 2});  // half to even
  CHECK(pyramid_layer_budgets_kvpress(2, 7, 3.5, 4, 20.0) == std::vector<int>{4, 4});
  // One layer: kvpress divides by zero; kvsim falls back. Clamp at T=40 (B 25, w 4, beta 2):
  // max 37.5 >= 36 -> 36, min 14, step 7.33: 36, 28.67, 21.33, 14 -> 36 29 21 14.
  CHECK(pyramid_layer_budgets_kvpress(1, 50, 30.0, 4, 2.0) == std::vector<int>{30});
  CHECK(pyramid_layer_budgets_kvpress(4, 40, 25.0, 4, 2.0) == std::vector<int>{36, 29, 21, 14});
}

TEST_CASE("pyramidkv rounding=kvpress through the policy: the plan's exact budget, slack, spec", "[policies][pyramidkv]") {
  CHECK(make_policy("pyramidkv")->spec() == "pyramidkv:window=64,kernel=5,pool=avg,reduce=mean,beta=20");
  CHECK(make_policy("pyramidkv:rounding=largest_remainder")->spec() ==
        "pyramidkv:window=64,kernel=5,pool=avg,reduce=mean,beta=20");
  const auto kv = make_policy("pyramidkv:window=4,beta=2,rounding=kvpress");
  CHECK(kv->spec() == "pyramidkv:window=4,kernel=5,pool=avg,reduce=mean,beta=2,rounding=kvpress");
  CHECK(kv->budget_slack() == 2);
  CHECK(make_policy("pyramidkv")->budget_slack() == 0);
  CHECK(make_policy("adakv(pyramidkv:rounding=kvpress)")->budget_slack() == 2);
  CHECK_THROWS_WITH(make_policy("pyramidkv:rounding=nearest"),
                    Catch::Contains("rounding='nearest' must be one of largest_remainder|kvpress"));

  test::PromptShape sh;
  sh.L = 4, sh.H = 6, sh.Hkv = 2, sh.T = 100, sh.W = 6;
  const PromptTensors p = test::random_prompt(sh, 47);
  // A ratio plan as BudgetSweep resolves it: r = 0.79 -> 100·(1 − 0.79) = 20.999999999999996 -> B 20.
  BudgetPlan plan;
  plan.per_head = {20};
  plan.per_head_exact = {100 * (1 - 0.79)};
  const Selection s = kv->select(p.view(), plan);
  const Selection snap = make_policy("snapkv:window=4")->select(p.view(), plan);
  // min 10.499999999999998, max 31.499999999999993, step 7: raw 31.499999999999993,
  // 24.499999999999996, 17.5, 10.5 -> 31 24 18 10: 83 tokens per KV head over 4 layers, above
  // 4·B = 80 (within the slack of 2 per layer).
  const std::vector<int> expected = {31, 24, 18, 10};
  CHECK(pyramid_layer_budgets_kvpress(4, 100, plan.per_head_exact[0], 4, 2.0) == expected);
  for (int l = 0; l < sh.L; ++l)
    for (int g = 0; g < sh.Hkv; ++g) {
      CHECK(s.count(0, l, g) == expected[l]);
      const auto a = s.order(0, l, g), b = snap.order(0, l, g);
      CHECK(std::equal(a.begin(), a.end(), b.begin(), b.end()));
    }
  CHECK_NOTHROW(check_selection(s, plan, kv->spec(), true, kv->budget_slack()));
  // Without the exact value (a token budget) the rule reads B itself.
  const Selection t = kv->select(p.view(), test::plan_of({21}));
  for (int l = 0; l < sh.L; ++l) CHECK(t.count(0, l, 0) == std::vector<int>{32, 24, 18, 10}[l]);
  for (const auto& shape : test::gqa_shapes()) {
    const PromptTensors q = test::random_prompt(shape, 53 + shape.H);
    test::check_policy(*make_policy("pyramidkv:window=4,beta=1.5,rounding=kvpress"), q,
                       test::plan_of({4, 8, 12, shape.T}), 4, /*nested=*/false);
  }
}

TEST_CASE("pyramidkv keeps snapkv's order with per-layer counts", "[policies][pyramidkv]") {
  test::PromptShape sh;
  sh.L = 4, sh.H = 6, sh.Hkv = 2, sh.T = 40, sh.W = 6;
  const PromptTensors p = test::random_prompt(sh, 41);
  const auto pyr = make_policy("pyramidkv:window=4,beta=2");
  CHECK(pyr->spec() == "pyramidkv:window=4,kernel=5,pool=avg,reduce=mean,beta=2");
  CHECK(pyr->needs().window == 4);
  const auto plan = test::plan_of({25, 10});
  const Selection s = pyr->select(p.view(), plan);
  const Selection snap = make_policy("snapkv:window=4")->select(p.view(), plan);
  const std::vector<int> expected = {36, 29, 21, 14};  // by hand above
  for (int l = 0; l < sh.L; ++l)
    for (int g = 0; g < sh.Hkv; ++g) {
      CHECK(s.count(0, l, g) == expected[l]);
      const auto a = s.order(0, l, g), b = snap.order(0, l, g);
      CHECK(std::equal(a.begin(), a.end(), b.begin(), b.end()));
    }
  CHECK(s.total_kept(0) == 25L * sh.L * sh.Hkv);
  CHECK(s.total_kept(1) == 10L * sh.L * sh.Hkv);
  for (const auto& shape : test::gqa_shapes()) {
    const PromptTensors q = test::random_prompt(shape, 43 + shape.H);
    const auto policy = make_policy("pyramidkv:window=4,beta=1.5,pool=max");
    const auto sweep = test::plan_of({4, 8, 12, shape.T});
    const Selection sel = test::check_policy(*policy, q, sweep, 4, /*nested=*/false);  // not promised (pyramidkv.hpp)
    for (int b = 0; b < sel.n_budgets(); ++b)
      CHECK(sel.total_kept(b) == static_cast<long>(std::min(sweep.per_head[b], shape.T)) * shape.L * shape.Hkv);
  }
}

TEST_CASE("pyramidkv refuses bad parameters", "[policies][pyramidkv]") {
  CHECK_THROWS_WITH(make_policy("pyramidkv:beta=0.5"), Catch::Contains("beta must be a finite number >= 1"));
  CHECK_THROWS_WITH(make_policy("pyramidkv:beta=inf"), Catch::Contains("beta must be a finite number >= 1"));
  CHECK_THROWS_WITH(make_policy("pyramidkv:kernel=6"), Catch::Contains("kernel must be odd"));
  CHECK_THROWS_WITH(make_policy("pyramidkv:alpha=1"), Catch::Contains("unknown parameter 'alpha'"));
}
