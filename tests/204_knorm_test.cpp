#include <catch2/catch.hpp>

#include "support/policy_fixture.hpp"

using namespace kvsim;

TEST_CASE("knorm keeps the keys of smallest norm", "[policies][knorm]") {
  test::PromptShape sh;
  sh.L = 1, sh.H = 2, sh.Hkv = 1, sh.d = 2, sh.T = 5, sh.M = 1, sh.W = 2;
  PromptTensors p = test::random_prompt(sh, 4);
  // Hand-set keys: norms 5, 1, 3, 0.5, 2 for tokens 0..4 (the continuation key is ignored).
  p.layers[0].keys = {3, 4, 1, 0, 0, 3, 0.3f, 0.4f, 0, 2, 9, 9};
  const Selection s = make_policy("knorm")->select(p.view(), test::plan_of({2, 3}));
  CHECK(test::kept_set(s, 0, 0, 0) == std::set<int>{1, 3});
  CHECK(test::kept_set(s, 1, 0, 0) == std::set<int>{1, 3, 4});
  const PromptTensors q = test::random_prompt({}, 5);
  test::check_policy_invariants(*make_policy("knorm"), q, test::plan_of({2, 8, 24}));
}
