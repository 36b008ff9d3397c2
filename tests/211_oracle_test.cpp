#include <catch2/catch.hpp>

#include "support/policy_fixture.hpp"

using namespace kvsim;

namespace {

// Attention recall of the continuation queries of KV head g: Σ over its query heads and the
// continuation positions of the attention paid to the kept prompt tokens.
double recall(const PromptTensors& p, const Selection& s, int b, int l, int g) {
  const int G = p.n_heads / p.n_kv_heads, N = p.T + p.M;
  double r = 0;
  for (int i : s.kept(b, l, g))
    for (int h = g * G; h < (g + 1) * G; ++h)
      for (int t = 0; t < p.M; ++t) r += p.layers[l].cont_attn[(static_cast<std::size_t>(h) * p.M + t) * N + i];
  return r;
}

}  // namespace

TEST_CASE("oracle keeps the prompt tokens the continuation attends to", "[policies][oracle]") {
  test::PromptShape sh;
  sh.L = 1, sh.H = 2, sh.Hkv = 1, sh.T = 4, sh.M = 2, sh.W = 1;
  PromptTensors p = test::random_prompt(sh, 19);
  // cont_attn [H=2, M=2, T+M=6]; columns 4, 5 are continuation keys (never selectable).
  //   head 0, t0: 0.5 0 0.25 0 | 0.25 0       t1: 0 0.125 0.25 0 | 0.375 0.25
  //   head 1, t0: 0.25 0 0 0.5 | 0.25 0       t1: 0.125 0 0 0.25 | 0.25 0.375
  //   sum over t and heads: 0.875 0.125 0.5 0.75 -> order 0, 3, 2, 1
  //   max over heads of the per-head sums (0.5 0.125 0.5 0 and 0.375 0 0 0.75): 0.5 0.125 0.5 0.75 -> 3
  p.layers[0].cont_attn = {0.5f,  0, 0.25f, 0,     0.25f, 0,     0, 0.125f, 0.25f, 0, 0.375f, 0.25f,
                           0.25f, 0, 0,     0.5f, 0.25f, 0, 0.125f, 0,      0,     0.25f, 0.25f, 0.375f};
  const auto oracle = make_policy("oracle");
  CHECK(oracle->spec() == "oracle:window=0,reduce=sum");
  CHECK(oracle->needs().cont_attn);
  CHECK(oracle->needs().window == 0);
  const Selection s = oracle->select(p.view(), test::plan_of({1, 2, 3}));
  CHECK(test::kept_set(s, 0, 0, 0) == std::set<int>{0});  // not the most recent token: nothing protected
  CHECK(test::kept_set(s, 1, 0, 0) == std::set<int>{0, 3});
  CHECK(test::kept_set(s, 2, 0, 0) == std::set<int>{0, 2, 3});
  CHECK(test::kept_set(make_policy("oracle:reduce=max")->select(p.view(), test::plan_of({1})), 0, 0, 0) == std::set<int>{3});
  CHECK(test::kept_set(make_policy("oracle:reduce=mean")->select(p.view(), test::plan_of({1})), 0, 0, 0) == std::set<int>{0});
  const Selection w = make_policy("oracle:window=1")->select(p.view(), test::plan_of({1, 2}));
  CHECK(test::kept_set(w, 0, 0, 0) == std::set<int>{3});
  CHECK(test::kept_set(w, 1, 0, 0) == std::set<int>{0, 3});
  // sink=2: 0, 1 first, then 3, 2: token 1 (the least attended) is kept, 2 (B=3) and 3 (B=2) are not.
  const Selection sk = make_policy("oracle:sink=2")->select(p.view(), test::plan_of({1, 2, 3}));
  CHECK(make_policy("oracle:sink=2")->spec() == "oracle:window=0,reduce=sum,sink=2");
  CHECK(test::kept_set(sk, 0, 0, 0) == std::set<int>{0});
  CHECK(test::kept_set(sk, 1, 0, 0) == std::set<int>{0, 1});
  CHECK(test::kept_set(sk, 2, 0, 0) == std::set<int>{0, 1, 3});
}

TEST_CASE("oracle is an upper bound on attention recall, with the usual invariants", "[policies][oracle]") {
  for (const auto& sh : test::gqa_shapes()) {
    const PromptTensors p = test::random_prompt(sh, 71 + sh.H, 3.0f);
    const auto plan = test::plan_of({1, 3, 6, 12, sh.T});
    const auto oracle = make_policy("oracle");
    const Selection s = test::check_policy(*oracle, p, plan, 0);
    test::check_policy(*make_policy("oracle:window=3,reduce=max"), p, plan, 3);
    for (const char* other : {"snapkv:window=4", "h2o:window=4", "tova", "knorm", "streamingllm", "random"}) {
      const Selection o = make_policy(other)->select(p.view(), plan);
      for (int b = 0; b < s.n_budgets(); ++b)
        for (int l = 0; l < sh.L; ++l)
          for (int g = 0; g < sh.Hkv; ++g) CHECK(recall(p, s, b, l, g) >= recall(p, o, b, l, g) - 1e-6);
    }
  }
}

TEST_CASE("oracle refuses bad parameters", "[policies][oracle]") {
  CHECK_THROWS_WITH(make_policy("oracle:window=-1"), Catch::Contains("window must be >= 0"));
  CHECK_THROWS_WITH(make_policy("oracle:reduce=min"), Catch::Contains("must be one of mean|max|sum"));
  CHECK_THROWS_WITH(make_policy("oracle:future=1"), Catch::Contains("unknown parameter 'future'"));
}
