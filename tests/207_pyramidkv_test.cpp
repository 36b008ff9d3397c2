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
