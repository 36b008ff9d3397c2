#include <catch2/catch.hpp>

#include "support/policy_fixture.hpp"

using namespace kvsim;

TEST_CASE("random: reproducible from the seed, nested, different per head", "[policies][random]") {
  const PromptTensors p = test::random_prompt({}, 3);
  const auto policy = make_policy("random");
  const auto plan = test::plan_of({4, 8, 16});
  const Selection a = policy->select(p.view(), plan), b = policy->select(p.view(), plan);
  CHECK(test::kept_set(a, 1, 1, 1) == test::kept_set(b, 1, 1, 1));
  CHECK(test::kept_set(a, 2, 0, 0) != test::kept_set(a, 2, 0, 1));
  CHECK(test::kept_set(a, 2, 0, 0) != test::kept_set(make_policy("random:seed=5")->select(p.view(), plan), 2, 0, 0));
  for (int l = 0; l < p.n_layers; ++l)
    for (int g = 0; g < p.n_kv_heads; ++g) {
      const auto k4 = test::kept_set(a, 0, l, g), k8 = test::kept_set(a, 1, l, g);
      CHECK(k4.size() == 4);
      CHECK(std::includes(k8.begin(), k8.end(), k4.begin(), k4.end()));
    }
  test::check_policy_invariants(*policy, p, plan);
}

TEST_CASE("random: every token equally likely to be kept", "[policies][random]") {
  // Over many prompt seeds, each of T = 24 tokens is kept with probability B/T = 1/4.
  test::PromptShape s;
  s.L = 1, s.H = 2, s.Hkv = 1;
  std::vector<int> hits(s.T, 0);
  const auto policy = make_policy("random");
  const int n = 400;
  for (int seed = 0; seed < n; ++seed) {
    PromptTensors p = test::random_prompt(s, 100 + seed);
    const Selection sel = policy->select(p.view(), test::plan_of({6}));
    for (int i : sel.kept(0, 0, 0)) ++hits[i];
  }
  for (int i = 0; i < s.T; ++i) CHECK(hits[i] == Approx(n * 0.25).margin(4 * std::sqrt(n * 0.25 * 0.75)));
}
