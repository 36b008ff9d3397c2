#include <catch2/catch.hpp>

#include "support/policy_fixture.hpp"

using namespace kvsim;

TEST_CASE("h2o divides the attention a token received by the queries that saw it", "[policies][h2o]") {
  test::PromptShape sh;
  sh.L = 1, sh.H = 2, sh.Hkv = 1, sh.T = 5, sh.M = 1, sh.W = 2;
  PromptTensors p = test::random_prompt(sh, 11);
  // T − i = 5, 4, 3, 2, 1 queries see tokens 0..4. Hand-set column sums:
  //   head 0: 2.5 1.25 ... -> per visible query 0.5  0.5    0.5   0.125 1.0
  //   head 1:                                  0.25 0.125  0.25  0.75  0.25
  //   group mean:                              0.375 0.3125 0.375 0.4375 0.625
  p.layers[0].attn_colsum = {2.5f, 2.0f, 1.5f, 0.25f, 1.0f, /*h1*/ 1.25f, 0.5f, 0.75f, 1.5f, 0.25f};
  const auto h2o = make_policy("h2o:window=1");
  CHECK(h2o->spec() == "h2o:window=1,reduce=mean");
  CHECK(h2o->needs().colsum);
  CHECK(h2o->needs().window == 0);  // column sums only, no window queries
  const Selection s = h2o->select(p.view(), test::plan_of({1, 2, 3, 4}));
  // token 4 protected; then 3 (0.4375); then the 0.375 tie of 0 and 2 goes to the later token 2.
  CHECK(test::kept_set(s, 0, 0, 0) == std::set<int>{4});
  CHECK(test::kept_set(s, 1, 0, 0) == std::set<int>{3, 4});
  CHECK(test::kept_set(s, 2, 0, 0) == std::set<int>{2, 3, 4});
  CHECK(test::kept_set(s, 3, 0, 0) == std::set<int>{0, 2, 3, 4});
  // Raw column sums (no division) would rank token 0 (mean 1.875) first: the division matters.
  // max over the group: 0.5 0.5 0.5 0.75 1.0 -> with window=0, B=1 keeps the unprotected max (token 4),
  // B=3 keeps 4, 3 and the later of the 0.5 ties, 2.
  const Selection m = make_policy("h2o:window=0,reduce=max")->select(p.view(), test::plan_of({1, 3}));
  CHECK(test::kept_set(m, 0, 0, 0) == std::set<int>{4});
  CHECK(test::kept_set(m, 1, 0, 0) == std::set<int>{2, 3, 4});
}

TEST_CASE("h2o invariants, nesting and determinism on GQA shapes", "[policies][h2o]") {
  for (const auto& sh : test::gqa_shapes()) {
    const PromptTensors p = test::random_prompt(sh, 21 + sh.H);
    const auto plan = test::plan_of({1, 3, 6, 12, sh.T});
    for (const auto& [spec, w] : {test::SpecWindow{"h2o:window=4", 4}, {"h2o:window=4,reduce=max", 4}, {"h2o:window=0,reduce=sum", 0}})
      test::check_policy(*make_policy(spec), p, plan, w);
  }
}

TEST_CASE("h2o refuses bad parameters", "[policies][h2o]") {
  CHECK_THROWS_WITH(make_policy("h2o:window=-1"), Catch::Contains("window must be >= 0"));
  CHECK_THROWS_WITH(make_policy("h2o:kernel=3"), Catch::Contains("unknown parameter 'kernel'"));
  CHECK_THROWS_WITH(make_policy("h2o:reduce=median"), Catch::Contains("must be one of mean|max|sum"));
}
