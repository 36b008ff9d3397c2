#include <catch2/catch.hpp>

#include "support/policy_fixture.hpp"

using namespace kvsim;

TEST_CASE("streamingllm keeps the sinks and the most recent tokens", "[policies][streamingllm]") {
  const PromptTensors p = test::random_prompt({}, 2);  // T = 24
  const auto policy = make_policy("streamingllm");     // sink 4
  const Selection s = policy->select(p.view(), test::plan_of({3, 10, 24}));
  // B = 10: tokens 0..3 and 18..23 (by hand: 4 sinks + the 6 most recent)
  CHECK(test::kept_set(s, 1, 1, 0) == std::set<int>{0, 1, 2, 3, 18, 19, 20, 21, 22, 23});
  // B = 3 <= sink: the first three sinks
  CHECK(test::kept_set(s, 0, 0, 1) == std::set<int>{0, 1, 2});
  CHECK(test::kept_set(s, 2, 0, 0).size() == 24u);
  const Selection s1 = make_policy("streamingllm:sink=1")->select(p.view(), test::plan_of({4}));
  CHECK(test::kept_set(s1, 0, 0, 0) == std::set<int>{0, 21, 22, 23});
  test::check_policy_invariants(*policy, p, test::plan_of({1, 5, 12}), /*window=*/0);
  CHECK_THROWS_WITH(make_policy("streamingllm:sink=-1"), Catch::Contains("sink must be >= 0"));
}
