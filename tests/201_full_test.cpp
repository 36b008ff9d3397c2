#include <catch2/catch.hpp>

#include "support/policy_fixture.hpp"

using namespace kvsim;

TEST_CASE("full keeps every prompt token at every budget", "[policies][full]") {
  const PromptTensors p = test::random_prompt({}, 1);
  const auto policy = make_policy("full");
  CHECK_FALSE(policy->respects_budget());
  const Selection s = policy->select(p.view(), test::plan_of({1, 8, 24}));
  for (int b = 0; b < 3; ++b)
    for (int l = 0; l < p.n_layers; ++l)
      for (int g = 0; g < p.n_kv_heads; ++g) CHECK(test::kept_set(s, b, l, g).size() == static_cast<std::size_t>(p.T));
  test::check_policy_invariants(*policy, p, test::plan_of({1, 8, 24}));
}
