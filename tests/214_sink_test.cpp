// The `sink` parameter of the window-based policies (score_utils.hpp, docs/policies.md): the
// first min(sink, T) prompt tokens protected like the window, inside the budget, ahead of the
// window. Hand-checked examples: h2o, snapkv and pyramidkv here; adakv, tova, criticalkv,
// oracle and laprox next to their own fixtures (tests/208 to 212).
#include <catch2/catch.hpp>

#include <algorithm>
#include <string>

#include "policies/pyramidkv.hpp"
#include "policies/score_utils.hpp"
#include "support/policy_fixture.hpp"
#include "support/trace_fixture.hpp"

using namespace kvsim;

namespace {

// `spec` with sink=n on its scorer: inside the parentheses of a wrapper.
std::string with_sink(const std::string& spec, int n) {
  const std::size_t close = spec.find(')'), end = close == std::string::npos ? spec.size() : close;
  const std::string scorer = spec.substr(0, end);
  return scorer + (scorer.find(':') == std::string::npos ? ":" : ",") + "sink=" + std::to_string(n) + spec.substr(end);
}

// Every window-based policy (and the wrappers over them), with the window it protects and
// whether it promises nested kept sets.
struct SinkCase {
  const char* spec;
  int window;
  bool nested;
};
const std::vector<SinkCase> kCases = {
    {"h2o:window=3", 3, true},
    {"snapkv:window=4", 4, true},
    {"snapkv:window=4,kernel=7,pool=max,reduce=max", 4, true},
    {"pyramidkv:window=4,beta=1.5", 4, false},
    {"adakv(snapkv:window=4)", 4, true},
    {"adakv(h2o:window=2,reduce=max):alpha=0.5", 2, true},
    {"adakv(pyramidkv:window=4,beta=1.5)", 4, false},
    {"tova", 1, true},
    {"tova:window=3", 3, true},
    {"criticalkv(snapkv:window=4)", 4, true},
    {"criticalkv(pyramidkv:window=4,beta=1.5):epsilon=0.01", 4, false},
    {"laprox:window=4", 4, true},
    {"laprox:window=4,reduce=attn_first,pool_at=attention", 4, true},
    {"oracle", 0, true},
    {"oracle:window=2", 2, true},
};

// The protected tokens of a row in priority order (the sinks, earliest first, then the
// window, latest first): every (layer, KV head) keeps the first min(count, n) of them.
void check_protected(const Selection& s, int T, int sink, int window) {
  std::vector<int> prot;
  for (int i = 0; i < std::min(sink, T); ++i) prot.push_back(i);
  for (int i = T - 1; i >= std::max(std::min(sink, T), T - window); --i) prot.push_back(i);
  for (int b = 0; b < s.n_budgets(); ++b)
    for (int l = 0; l < s.n_layers(); ++l)
      for (int g = 0; g < s.n_kv_heads(); ++g) {
        const std::set<int> kept = test::kept_set(s, b, l, g);
        const int n = std::min(s.count(b, l, g), static_cast<int>(prot.size()));
        for (int k = 0; k < n; ++k) CHECK(kept.count(prot[k]) == 1);
      }
}

}  // namespace

TEST_CASE("sink: h2o keeps the first tokens ahead of the window, inside the budget", "[policies][sink][h2o]") {
  test::PromptShape sh;
  sh.L = 1, sh.H = 2, sh.Hkv = 1, sh.T = 6, sh.M = 1, sh.W = 2;
  PromptTensors p = test::random_prompt(sh, 11);
  // Both heads: column sums = score · (T − i) with scores 0.1 0.15 0.4 0.3 0.2 (token 5: window=1).
  p.layers[0].attn_colsum = {0.6f, 0.75f, 1.6f, 0.9f, 0.4f, 1.0f, /*h1*/ 0.6f, 0.75f, 1.6f, 0.9f, 0.4f, 1.0f};
  const auto plan = test::plan_of({1, 2, 3, 4});
  const Selection off = make_policy("h2o:window=1")->select(p.view(), plan);
  const auto sinks = make_policy("h2o:window=1,sink=2");
  CHECK(sinks->spec() == "h2o:window=1,reduce=mean,sink=2");
  const Selection on = sinks->select(p.view(), plan);
  // sink 0: the window (5), then 2, 3, 4: tokens 0 and 1 (the lowest scores) are dropped.
  CHECK(test::kept_set(off, 2, 0, 0) == std::set<int>{2, 3, 5});
  CHECK(test::kept_set(off, 3, 0, 0) == std::set<int>{2, 3, 4, 5});
  // sink 2: the order is 0, 1 (sinks), 5 (window), then 2, 3, 4. B < sink + window: sinks win.
  CHECK(test::kept_set(on, 0, 0, 0) == std::set<int>{0});
  CHECK(test::kept_set(on, 1, 0, 0) == std::set<int>{0, 1});
  CHECK(test::kept_set(on, 2, 0, 0) == std::set<int>{0, 1, 5});
  CHECK(test::kept_set(on, 3, 0, 0) == std::set<int>{0, 1, 2, 5});
  for (int b = 0; b < 4; ++b) CHECK(on.total_kept(b) == plan.per_head[b]);
}

TEST_CASE("sink: snapkv pools between the sinks and the window", "[policies][sink][snapkv]") {
  test::PromptShape sh;
  sh.L = 1, sh.H = 1, sh.Hkv = 1, sh.T = 8, sh.M = 1, sh.W = 1;
  PromptTensors p = test::random_prompt(sh, 5);
  // window row a = .05 .4 .1 0 .6 0 .2 | .5 (token 7: window=1), kernel 3, avg (÷3, zero padding):
  //   sink 0, pooled over 0..6: .15 .1833 .1667 .2333 .2 .2667 .0667 -> order 7 | 5 3 4 1 2 0 6
  //   sink 2, pooled over 2..6 only (.1 0 .6 0 .2): token 2 .0333 (token 1's .4 no longer leaks
  //   in), 3 .2333, 4 .2, 5 .2667, 6 .0667 -> order 0 1 | 7 | 5 3 4 6 2
  p.layers[0].window_attn = {0.05f, 0.4f, 0.1f, 0.0f, 0.6f, 0.0f, 0.2f, 0.5f};
  const auto plan = test::plan_of({2, 4, 7});
  const Selection off = make_policy("snapkv:window=1,kernel=3")->select(p.view(), plan);
  const Selection on = make_policy("snapkv:window=1,kernel=3,sink=2")->select(p.view(), plan);
  CHECK(test::kept_set(off, 1, 0, 0) == std::set<int>{3, 4, 5, 7});
  CHECK(test::kept_set(off, 2, 0, 0) == std::set<int>{0, 1, 2, 3, 4, 5, 7});
  CHECK(test::kept_set(on, 0, 0, 0) == std::set<int>{0, 1});
  CHECK(test::kept_set(on, 1, 0, 0) == std::set<int>{0, 1, 5, 7});
  CHECK(test::kept_set(on, 2, 0, 0) == std::set<int>{0, 1, 3, 4, 5, 6, 7});
}

TEST_CASE("sink: pyramidkv takes the sinks off every layer's budget", "[policies][sink][pyramidkv]") {
  // kvpress's formula with the protected count w + sink in place of w. L=4, T=40, w=4, β=2, B=25:
  //   sink 0 (tests/207): 36 29 21 14
  //   sink 2, protected 6: min 12.5, max 37.5 >= T − 6 = 34 -> max 34, min 50 − 34 = 16,
  //   step 6: 34 28 22 16 (sum 100)
  CHECK(pyramid_layer_budgets(4, 40, 25, 4 + 2, 2.0) == std::vector<int>{34, 28, 22, 16});
  // beta 2, B=20, T=100: min 10 covers w=4 but not w + sink = 12: kvpress's uniform fallback.
  CHECK(pyramid_layer_budgets(4, 100, 20, 4 + 8, 2.0) == std::vector<int>{20, 20, 20, 20});
  test::PromptShape sh;
  sh.L = 4, sh.H = 6, sh.Hkv = 2, sh.T = 40, sh.W = 6;
  PromptTensors p = test::random_prompt(sh, 41);
  // No window attention on tokens 0..3: tokens 0 and 1 pool to 0, the lowest scores.
  for (auto& ly : p.layers)
    for (std::size_t row = 0; row < ly.window_attn.size() / sh.T; ++row)
      std::fill_n(ly.window_attn.begin() + row * sh.T, 4, 0.0f);
  const Selection off = make_policy("pyramidkv:window=4,beta=2")->select(p.view(), test::plan_of({25}));
  const Selection on = make_policy("pyramidkv:window=4,beta=2,sink=2")->select(p.view(), test::plan_of({25}));
  const std::vector<int> budgets = {34, 28, 22, 16};
  for (int l = 0; l < sh.L; ++l)
    for (int g = 0; g < sh.Hkv; ++g) {
      CHECK(test::kept_set(off, 0, l, g).count(0) == 0);
      CHECK(test::kept_set(off, 0, l, g).count(1) == 0);
      CHECK(on.count(0, l, g) == budgets[l]);
      const std::set<int> kept = test::kept_set(on, 0, l, g);
      for (int i : {0, 1, 36, 37, 38, 39}) CHECK(kept.count(i) == 1);
    }
  CHECK(on.total_kept(0) == 25L * sh.L * sh.Hkv);
}

TEST_CASE("sink=0 is the published definition: the same spec and selection as without it", "[policies][sink]") {
  for (const auto& sh : test::gqa_shapes())
    for (std::uint64_t seed : {1, 2, 3}) {
      const PromptTensors p = test::random_prompt(sh, 300 + seed + sh.H, 2.0f);
      const auto plan = test::plan_of({1, 3, 6, 11, sh.T});
      for (const auto& c : kCases) {
        INFO(c.spec << " T=" << sh.T << " H=" << sh.H << " Hkv=" << sh.Hkv << " seed " << seed);
        const auto plain = make_policy(c.spec), zero = make_policy(with_sink(c.spec, 0));
        CHECK(zero->spec() == plain->spec());
        CHECK(plain->spec().find("sink") == std::string::npos);
        CHECK(test::same_selection(plain->select(p.view(), plan), zero->select(p.view(), plan)));
      }
    }
}

TEST_CASE("sink: protected in every (layer, KV head), inside the budget, on GQA shapes", "[policies][sink]") {
  for (const auto& sh : test::gqa_shapes()) {
    const PromptTensors p = test::random_prompt(sh, 400 + sh.H, 2.0f);
    // Budgets below, at and above sink + window.
    const auto plan = test::plan_of({1, 2, 3, 5, 7, 10, 14, sh.T});
    for (const auto& c : kCases)
      for (int sink : {1, 2, 5}) {
        const std::string spec = with_sink(c.spec, sink);
        INFO(spec << " T=" << sh.T << " H=" << sh.H << " Hkv=" << sh.Hkv);
        const auto policy = make_policy(spec);
        CHECK(policy->spec().find(",sink=" + std::to_string(sink)) != std::string::npos);
        // The window is kept only once the sinks are (check_protected), not from count >= window.
        const Selection s = test::check_policy(*policy, p, plan, /*window=*/0, c.nested);
        check_protected(s, sh.T, sink, c.window);
        for (int b = 0; b < s.n_budgets(); ++b)
          CHECK(s.total_kept(b) == static_cast<long>(std::min(plan.per_head[b], sh.T)) * sh.L * sh.Hkv);
      }
  }
}

TEST_CASE("sink larger than the prompt clamps to T: every budget keeps the first tokens", "[policies][sink]") {
  for (const auto& sh : test::gqa_shapes()) {
    const PromptTensors p = test::random_prompt(sh, 500 + sh.H);
    const auto plan = test::plan_of({1, 4, sh.T - 1, sh.T, sh.T + 5});
    for (const auto& c : kCases) {
      const std::string spec = with_sink(c.spec, 1000);
      INFO(spec << " T=" << sh.T);
      const Selection s = make_policy(spec)->select(p.view(), plan);
      REQUIRE_NOTHROW(check_selection(s, plan, spec));
      for (int b = 0; b < s.n_budgets(); ++b) {
        const int B = std::min(plan.per_head[b], sh.T);
        std::set<int> first;
        for (int i = 0; i < B; ++i) first.insert(i);
        for (int l = 0; l < sh.L; ++l)
          for (int g = 0; g < sh.Hkv; ++g) CHECK(test::kept_set(s, b, l, g) == first);
      }
    }
  }
}

TEST_CASE("sink: refused when negative or not an integer, and where nothing is protected", "[policies][sink]") {
  for (const char* spec : {"h2o", "snapkv", "pyramidkv", "tova", "laprox", "oracle", "adakv(snapkv)", "criticalkv(h2o)"}) {
    INFO(spec);
    CHECK_THROWS_WITH(make_policy(with_sink(spec, -1)), Catch::Contains("parameter sink must be >= 0, got -1"));
  }
  CHECK_THROWS_WITH(make_policy("snapkv:sink=two"), Catch::Contains("sink='two' is not an integer"));
  // knorm and random protect nothing: no sink (docs/policies.md).
  CHECK_THROWS_WITH(make_policy("knorm:sink=4"), Catch::Contains("unknown parameter 'sink'"));
  CHECK_THROWS_WITH(make_policy("random:sink=4"), Catch::Contains("unknown parameter 'sink'"));
}

TEST_CASE("sink: wrappers take it inside the parentheses, on their scorer", "[policies][sink][adakv][criticalkv]") {
  CHECK(make_policy("adakv(snapkv:sink=4)")->spec() == "adakv(snapkv:window=64,kernel=5,pool=avg,reduce=mean,sink=4):alpha=0.2");
  CHECK_THROWS_WITH(make_policy("adakv(snapkv):sink=4"),
                    Catch::Contains("parameter 'sink' belongs to the wrapped scorer snapkv") &&
                        Catch::Contains("adakv(snapkv:sink=4)"));
  CHECK_THROWS_WITH(make_policy("criticalkv(pyramidkv):sink=2,first_stage=0.4"),
                    Catch::Contains("belongs to the wrapped scorer pyramidkv") && Catch::Contains("criticalkv(pyramidkv:sink=2)"));
  // A parameter neither declares is still the generic error.
  CHECK_THROWS_WITH(make_policy("adakv(knorm):sink=4"), Catch::Contains("unknown parameter 'sink' (known: alpha)"));
}

TEST_CASE("sink: every window-based policy declares it, and kvsim policies lists it", "[policies][sink][cli]") {
  for (const auto& info : policy_registry()) {
    const auto it = std::find_if(info.params.begin(), info.params.end(), [](const ParamInfo& p) { return p.name == "sink"; });
    const bool window_based = info.name == "h2o" || info.name == "snapkv" || info.name == "pyramidkv" ||
                              info.name == "tova" || info.name == "laprox" || info.name == "oracle" ||
                              info.name == "compilerkv";
    INFO(info.name);
    if (window_based) {
      REQUIRE(it != info.params.end());
      CHECK(it->default_value == "0");
    } else if (info.name == "streamingllm") {
      REQUIRE(it != info.params.end());
      CHECK(it->default_value == "4");
    } else {
      CHECK(it == info.params.end());  // wrappers take their scorer's; knorm, random, full: none
    }
  }
  const test::CliResult r = test::run_cli("policies");
  REQUIRE(r.status == 0);
  // One `sink` line per window-based policy, plus streamingllm's.
  CHECK(test::count_occurrences(r.output, "\n    sink ") == 8);
  CHECK_THAT(r.output, Catch::Contains("sink         default 0        first tokens always kept, ahead of the window"));
}
