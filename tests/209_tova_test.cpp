#include <catch2/catch.hpp>

#include "support/policy_fixture.hpp"

using namespace kvsim;

namespace {

// L = 1, H = Hkv = 2, T = 5: window_attn [H=2, W=2, T=5] with the last prompt query's rows
// (row 1) as given and 0.9s in row 0, which must not count.
PromptTensors last_query_prompt(const std::vector<float>& head0, const std::vector<float>& head1) {
  test::PromptShape sh;
  sh.L = 1, sh.H = 2, sh.Hkv = 2, sh.T = 5, sh.M = 1, sh.W = 2;
  PromptTensors p = test::random_prompt(sh, 17);
  auto& a = p.layers[0].window_attn;
  std::fill(a.begin(), a.end(), 0.9f);
  std::copy(head0.begin(), head0.end(), a.begin() + 5);
  std::copy(head1.begin(), head1.end(), a.begin() + 15);
  return p;
}

}  // namespace

TEST_CASE("tova keeps what the last prompt query attends to, one set per layer", "[policies][tova]") {
  //   head 0: 0.5   0.125 0.25 0      0.125
  //   head 1: 0.125 0.375 0    0.375  0.125
  //   mean:   0.3125 0.25 0.125 0.1875 0.125   (over all heads, for both KV heads)
  const PromptTensors p = last_query_prompt({0.5f, 0.125f, 0.25f, 0.0f, 0.125f}, {0.125f, 0.375f, 0.0f, 0.375f, 0.125f});
  const auto tova = make_policy("tova");
  CHECK(tova->spec() == "tova:window=1");
  CHECK(tova->needs().window == 1);
  const Selection s = tova->select(p.view(), test::plan_of({1, 2, 3}));
  for (int g = 0; g < 2; ++g) {  // the same set for both KV heads (G = 1 here: head 1 alone would keep 1, 3)
    CHECK(test::kept_set(s, 0, 0, g) == std::set<int>{4});  // the last token, protected as in kvpress
    CHECK(test::kept_set(s, 1, 0, g) == std::set<int>{0, 4});
    CHECK(test::kept_set(s, 2, 0, g) == std::set<int>{0, 1, 4});
  }
  // window=0, the paper: order 0 (0.3125), 1 (0.25), 3 (0.1875), then the 0.125 tie of 2 and 4 -> 4.
  const Selection paper = make_policy("tova:window=0")->select(p.view(), test::plan_of({2, 4}));
  CHECK(test::kept_set(paper, 0, 0, 1) == std::set<int>{0, 1});
  CHECK(test::kept_set(paper, 1, 0, 1) == std::set<int>{0, 1, 3, 4});
}

TEST_CASE("tova protects the sinks in the layer's one kept set", "[policies][tova][sink]") {
  // mean .0625 .0625 .3125 .4375 .125 -> sink 0: 4 | 3 2 ...; sink 2: 0 1 | 4 | 3 2 ...
  const PromptTensors p = last_query_prompt({0.0f, 0.125f, 0.25f, 0.5f, 0.125f}, {0.125f, 0.0f, 0.375f, 0.375f, 0.125f});
  const auto plan = test::plan_of({3, 4});
  const Selection off = make_policy("tova")->select(p.view(), plan);
  const Selection on = make_policy("tova:sink=2")->select(p.view(), plan);
  CHECK(make_policy("tova:sink=2")->spec() == "tova:window=1,sink=2");
  for (int g = 0; g < 2; ++g) {
    CHECK(test::kept_set(off, 0, 0, g) == std::set<int>{2, 3, 4});
    CHECK(test::kept_set(on, 0, 0, g) == std::set<int>{0, 1, 4});
    CHECK(test::kept_set(on, 1, 0, g) == std::set<int>{0, 1, 3, 4});
  }
}

TEST_CASE("tova invariants: one kept set per layer, nesting, determinism", "[policies][tova]") {
  for (const auto& sh : test::gqa_shapes()) {
    const PromptTensors p = test::random_prompt(sh, 61 + sh.H);
    const auto plan = test::plan_of({1, 3, 8, sh.T});
    for (const auto& [spec, w] : {test::SpecWindow{"tova", 1}, {"tova:window=0", 0}, {"tova:window=3", 3}}) {
      const Selection s = test::check_policy(*make_policy(spec), p, plan, w);
      for (int b = 0; b < s.n_budgets(); ++b)
        for (int l = 0; l < sh.L; ++l)
          for (int g = 1; g < sh.Hkv; ++g) CHECK(test::kept_set(s, b, l, g) == test::kept_set(s, b, l, 0));
    }
  }
}

TEST_CASE("tova refuses bad parameters", "[policies][tova]") {
  CHECK_THROWS_WITH(make_policy("tova:window=-2"), Catch::Contains("window must be >= 0"));
  CHECK_THROWS_WITH(make_policy("tova:reduce=max"), Catch::Contains("unknown parameter 'reduce'"));
  CHECK_THROWS_WITH(make_policy("tova(snapkv)"), Catch::Contains("takes no inner policy"));
}
