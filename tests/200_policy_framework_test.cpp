// The policy framework: spec strings, parameter refusal, score utilities, derived attention.
#include <catch2/catch.hpp>

#include "core/error.hpp"
#include "policies/score_utils.hpp"
#include "support/policy_fixture.hpp"

using namespace kvsim;

TEST_CASE("policy specs parse names, wrappers and parameters", "[policies][spec]") {
  const PolicySpec s = parse_policy_spec(" adakv(snapkv:window=32,kernel=7,pool=max):alpha=0.2 ");
  CHECK(s.name == "adakv");
  REQUIRE(s.inner);
  CHECK(s.inner->name == "snapkv");
  CHECK(s.inner->params == std::vector<std::pair<std::string, std::string>>{{"window", "32"}, {"kernel", "7"}, {"pool", "max"}});
  CHECK(s.params == std::vector<std::pair<std::string, std::string>>{{"alpha", "0.2"}});
  CHECK_THROWS_AS(parse_policy_spec("snapkv:window"), InputError);
  CHECK_THROWS_AS(parse_policy_spec("adakv(snapkv"), InputError);
  CHECK_THROWS_AS(parse_policy_spec("snapkv:window=1,window=2"), InputError);
  CHECK_THROWS_AS(parse_policy_spec(""), InputError);
}

TEST_CASE("policy lists split at top-level commas that start a new policy", "[policies][spec]") {
  CHECK(split_policy_list("full,streamingllm:sink=2,knorm random") ==
        std::vector<std::string>{"full", "streamingllm:sink=2", "knorm", "random"});
  CHECK(split_policy_list("adakv(snapkv:window=32,kernel=7):alpha=0.2,full") ==
        std::vector<std::string>{"adakv(snapkv:window=32,kernel=7):alpha=0.2", "full"});
  CHECK(split_policy_list("streamingllm:sink=2,seed=3") == std::vector<std::string>{"streamingllm:sink=2,seed=3"});
}

TEST_CASE("unknown policies and parameters are refused with the known names", "[policies][spec]") {
  CHECK_THROWS_WITH(make_policy("nosuch"), Catch::Contains("unknown policy 'nosuch'") && Catch::Contains("knorm"));
  CHECK_THROWS_WITH(make_policy("streamingllm:sinks=4"),
                    Catch::Contains("unknown parameter 'sinks'") && Catch::Contains("known: sink"));
  CHECK_THROWS_WITH(make_policy("streamingllm:sink=x"), Catch::Contains("not an integer"));
  CHECK_THROWS_WITH(make_policy("knorm(full)"), Catch::Contains("takes no inner policy"));
  CHECK(make_policy("streamingllm")->spec() == "streamingllm:sink=4");
  CHECK(make_policy("full")->spec() == "full");
}

TEST_CASE("order_by_score: descending, ties to the later token", "[policies][utils]") {
  const std::vector<float> s = {0.5f, 2.0f, 0.5f, 1.0f, 2.0f};
  std::vector<std::int32_t> o(5);
  order_by_score(s, o);
  CHECK(o == std::vector<std::int32_t>{4, 1, 3, 2, 0});
}

TEST_CASE("pool_same: avg counts the zero padding, max ignores it", "[policies][utils]") {
  std::vector<float> x = {3, 0, 0, 6, 0};
  pool_same(x, 3, PoolKind::kAvg);
  // by hand: (0+3+0)/3, (3+0+0)/3, (0+0+6)/3, (0+6+0)/3, (6+0+0)/3
  CHECK(x == std::vector<float>{1, 1, 2, 2, 2});
  std::vector<float> y = {-1, -5, -2, -7, -3};
  pool_same(y, 3, PoolKind::kMax);
  CHECK(y == std::vector<float>{-1, -1, -2, -2, -3});
  std::vector<float> z = {1, 2};
  pool_same(z, 1, PoolKind::kAvg);
  CHECK(z == std::vector<float>{1, 2});
}

TEST_CASE("reduce_group: mean, max and sum over a group of 3", "[policies][utils]") {
  // H = 6, Hkv = 2 (G = 3, not a power of two), T = 2
  const std::vector<float> per_head = {1, 2, 3, 0, 5, 1, /*g1*/ 0, 0, 3, 3, 6, 0};
  std::vector<float> out(4);
  reduce_group(per_head, 6, 2, 2, GroupReduce::kMean, out);
  CHECK(out == std::vector<float>{3, 1, 3, 1});
  reduce_group(per_head, 6, 2, 2, GroupReduce::kMax, out);
  CHECK(out == std::vector<float>{5, 2, 6, 3});
  reduce_group(per_head, 6, 2, 2, GroupReduce::kSum, out);
  CHECK(out == std::vector<float>{9, 3, 9, 3});
}

TEST_CASE("allocate splits a total proportionally within caps", "[policies][utils]") {
  CHECK(allocate({1, 1, 2}, {100, 100, 100}, 8) == std::vector<int>{2, 2, 4});
  // 10 by weights 1:1:1 -> 3.33 each; the leftover unit goes to the first (ties to lower index)
  CHECK(allocate({1, 1, 1}, {100, 100, 100}, 10) == std::vector<int>{4, 3, 3});
  // a capped entry's excess flows to the others; the total is preserved
  CHECK(allocate({10, 1, 1}, {5, 100, 100}, 15) == std::vector<int>{5, 5, 5});
  // caps too small for the total: everything capped
  CHECK(allocate({1, 1}, {2, 3}, 10) == std::vector<int>{2, 3});
}

TEST_CASE("derived attention equals a direct double-precision softmax", "[policies][attention]") {
  test::PromptShape s;
  s.H = 6, s.Hkv = 2, s.T = 30, s.M = 5, s.W = 7;
  const PromptTensors p = test::random_prompt(s, 7);
  const int N = s.T + s.M, G = s.H / s.Hkv;
  for (int l = 0; l < s.L; ++l)
    for (int h = 0; h < s.H; ++h) {
      const float* k = p.layers[l].keys.data() + static_cast<std::size_t>(h / G) * N * s.d;
      for (int r = 0; r < s.W; ++r) {
        const auto ref = test::reference_attention(p.layers[l].q_window.data() + (static_cast<std::size_t>(h) * s.W + r) * s.d,
                                                   k, s.T, s.T - s.W + r, s.d);
        for (int i = 0; i < s.T; ++i)
          REQUIRE(p.layers[l].window_attn[(static_cast<std::size_t>(h) * s.W + r) * s.T + i] == Approx(ref[i]).margin(1e-6));
      }
      for (int t = 0; t < s.M; ++t) {
        const auto ref = test::reference_attention(p.layers[l].q_cont.data() + (static_cast<std::size_t>(h) * s.M + t) * s.d,
                                                   k, N, s.T + t, s.d);
        for (int j = 0; j < N; ++j)
          REQUIRE(p.layers[l].cont_attn[(static_cast<std::size_t>(h) * s.M + t) * N + j] == Approx(ref[j]).margin(1e-6));
      }
    }
  // the last window row is the last prompt query: its attention sums to 1 over the prompt
  double sum = 0;
  for (int i = 0; i < s.T; ++i) sum += p.layers[0].window_attn[static_cast<std::size_t>(s.W - 1) * s.T + i];
  CHECK(sum == Approx(1.0).epsilon(1e-5));
}

TEST_CASE("check_selection rejects duplicates and over-budget selections", "[policies][selection]") {
  Selection s(1, 1, 1, 1, 4);
  auto o = s.order(0, 0, 0);
  o[0] = 0, o[1] = 1, o[2] = 1, o[3] = 3;
  s.count(0, 0, 0) = 2;
  CHECK_THROWS_WITH(check_selection(s, test::plan_of({2}), "x"), Catch::Contains("not a permutation"));
  o[2] = 2;
  CHECK_NOTHROW(check_selection(s, test::plan_of({2}), "x"));
  s.count(0, 0, 0) = 3;
  CHECK_THROWS_WITH(check_selection(s, test::plan_of({2}), "x"), Catch::Contains("more than 2"));
  CHECK_NOTHROW(check_selection(s, test::plan_of({2}), "x", /*respects_budget=*/false));
}
