#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>

#include "support/policy_fixture.hpp"
#include "support/shared.hpp"
#include "policies/compilerkv.hpp"
#include "policies/decision_table.hpp"

using namespace kvsim;

namespace {

// L = 1, H = 2 query heads in one KV head (G = 2), T = 6, W = 2 window queries, d = 1.
// Window attention rows (positions 4 and 5; row 0 cannot see token 5):
//   head 0: .5 .1 .1 .1 .2 0  /  .3 .1 .1 .1 .2 .2
//   head 1: .1 .1 .5 .1 .2 0  /  .1 .1 .3 .1 .2 .2
// Σ over heads and rows: 1.0 .4 1.0 .4 .8 .4 (= w·H = 4); α = (T/w)/(L·H)·Σ = 1.5·Σ =
//   1.5 .6 1.5 .6 1.2 .6  (Σ α = T = 6)
// values |v| = 1 1 2 1 1 0, mean 1 → ρ = 1 1 2 1 1 0 → u = 1.5 .6 3.0 .6 1.2 0
// prompt_logprob of the window tokens 4, 5: −1, −2 → perplexity exp(1.5).
PromptTensors hand_prompt() {
  test::PromptShape sh;
  sh.L = 1, sh.H = 2, sh.Hkv = 1, sh.d = 1, sh.D = 2, sh.T = 6, sh.M = 2, sh.W = 2;
  PromptTensors p = test::random_prompt(sh, 3);
  p.layers[0].window_attn = {0.5f, 0.1f, 0.1f, 0.1f, 0.2f, 0.0f, 0.3f, 0.1f, 0.1f, 0.1f, 0.2f, 0.2f,
                             0.1f, 0.1f, 0.5f, 0.1f, 0.2f, 0.0f, 0.1f, 0.1f, 0.3f, 0.1f, 0.2f, 0.2f};
  const std::vector<float> v = {1, -1, 2, 1, 1, 0, 1, 1};  // [Hkv, T+M, d]; signs do not matter
  p.layers[0].values = v;
  p.prompt_logprob = {0, -3, -3, -3, -1, -2};
  return p;
}

}  // namespace

TEST_CASE("compilerkv: utility, entropy and perplexity by hand", "[policies][compilerkv]") {
  const PromptTensors p = hand_prompt();
  const CompilerKvState st = compilerkv_state(p.view(), 2);
  const std::vector<float> alpha = {1.5f, 0.6f, 1.5f, 0.6f, 1.2f, 0.6f}, u = {1.5f, 0.6f, 3.0f, 0.6f, 1.2f, 0.0f};
  for (int i = 0; i < 6; ++i) {
    CHECK(st.alpha[i] == Approx(alpha[i]).margin(1e-6));
    CHECK(st.utility[i] == Approx(u[i]).margin(1e-6));
  }
  // α/Σα = .25 .1 .25 .1 .2 .1
  const double H = -(2 * 0.25 * std::log(0.25) + 3 * 0.1 * std::log(0.1) + 0.2 * std::log(0.2));
  CHECK(st.entropy == Approx(H).epsilon(1e-6));
  CHECK(st.perplexity == Approx(std::exp(1.5)).epsilon(1e-6));
}

TEST_CASE("compilerkv: threshold, clamp and under-retention by hand", "[policies][compilerkv]") {
  const PromptTensors p = hand_prompt();
  const CompilerKvState st = compilerkv_state(p.view(), 2);
  std::vector<float> s(6);
  const std::vector<float> ones = {1.0f, 1.0f};
  compilerkv_layer_scores(st, 0, ones, s);  // s = u on the prefix 0..3, +inf on the window 4, 5
  CHECK(std::isinf(s[4]));
  CHECK(std::isinf(s[5]));
  // τ 0.8: C = {0 (1.5), 2 (3.0)}, |C_w| = w + |C| = 4.
  // B = 3: clamp: window + the top 1 of C (token 2).
  auto c = compilerkv_elastic_count(s, 2, 0.8f, 3);
  CHECK(c.kept == 3);
  CHECK(c.candidates == 4);
  // B = 5: under-retention: only the 4 tokens of C_w are kept.
  c = compilerkv_elastic_count(s, 2, 0.8f, 5);
  CHECK(c.kept == 4);
  // τ 0.5: every prefix token is a candidate; B = 5 keeps 5.
  CHECK(compilerkv_elastic_count(s, 2, 0.5f, 5).kept == 5);
  // τ 3.5: nothing passes: the window only, whatever the budget.
  CHECK(compilerkv_elastic_count(s, 2, 3.5f, 6).kept == 2);
  // B = 1 < w: the most recent token.
  CHECK(compilerkv_elastic_count(s, 2, 0.8f, 1).kept == 1);
  // A head weight scales the veto: W_head = (0.5, 0.5) → s = .75 .3 1.5 .3: C = {2} at τ 0.8.
  const std::vector<float> halves = {0.5f, 0.5f};
  compilerkv_layer_scores(st, 0, halves, s);
  CHECK(compilerkv_elastic_count(s, 2, 0.8f, 6).kept == 3);

  // Through the policy with a table: the kept sets are the prefixes described above.
  test::TempDir tmp;
  DecisionTable t = DecisionTable::defaults(p.view().shape(), {3, 5}, 2);
  for (int e = 0; e < kEntropyBins; ++e)
    for (int q = 0; q < kPerplexityBins; ++q) t.gate_at(1, 0, e, q) = 3.5f;  // budget 5: nothing passes
  write_table(t, tmp / "t.json");
  const auto pol = make_policy("compilerkv:window=2,table=" + (tmp / "t.json").string());
  const Selection sel = pol->select(p.view(), test::plan_of({3, 5, 4}));
  CHECK(test::kept_set(sel, 0, 0, 0) == std::set<int>{2, 4, 5});     // τ 0.8, clamp
  CHECK(test::kept_set(sel, 1, 0, 0) == std::set<int>{4, 5});        // τ 3.5: the window only
  CHECK(test::kept_set(sel, 2, 0, 0) == std::set<int>{0, 2, 4, 5});  // B 4 → table budget 3 (tie → smaller): τ 0.8, under-retention
  CHECK(sel.total_kept(1) == 2);
}

TEST_CASE("compilerkv: coverage gate by hand, and through a table", "[policies][compilerkv]") {
  const PromptTensors p = hand_prompt();
  const CompilerKvState st = compilerkv_state(p.view(), 2);
  std::vector<float> s(6);
  const std::vector<float> ones = {1.0f, 1.0f};
  compilerkv_layer_scores(st, 0, ones, s);  // prefix scores 1.5 .6 3.0 .6, total 5.7; window +inf
  // Sorted: 3.0 (token 2), 1.5 (token 0), .6, .6; prefix sums 3.0, 4.5, 5.1, 5.7.
  // τ 0.5: target (1 − .5)·5.7 = 2.85 ≤ 3.0 → |C| = 1; |C_w| = 3.
  auto c = compilerkv_elastic_count(s, 2, 0.5f, 6, GateMode::coverage);
  CHECK(c.candidates == 3);
  CHECK(c.kept == 3);
  // τ 0.25: target 4.275 → 3.0 < 4.275 ≤ 4.5 → |C| = 2.
  CHECK(compilerkv_elastic_count(s, 2, 0.25f, 6, GateMode::coverage).candidates == 4);
  // τ 0.1: target 5.13 → 5.1 < 5.13 ≤ 5.7 → |C| = 4 (every prefix token).
  CHECK(compilerkv_elastic_count(s, 2, 0.1f, 6, GateMode::coverage).candidates == 6);
  // τ 0.2: target 4.56 → 4.5 < 4.56 ≤ 5.1 → |C| = 3; the budget 4 clamps it.
  c = compilerkv_elastic_count(s, 2, 0.2f, 4, GateMode::coverage);
  CHECK(c.candidates == 5);
  CHECK(c.kept == 4);
  // τ 0 takes every positive score; τ 1 nothing (the window only).
  CHECK(compilerkv_elastic_count(s, 2, 0.0f, 6, GateMode::coverage).kept == 6);
  CHECK(compilerkv_elastic_count(s, 2, 1.0f, 6, GateMode::coverage).kept == 2);
  // The same τ under the absolute rule means something else: 0.5 admits all four.
  CHECK(compilerkv_elastic_count(s, 2, 0.5f, 6, GateMode::absolute).kept == 6);

  // Through the policy: the default coverage table (τ 0.01) keeps all four prefix tokens at
  // B = 6; a table with τ 0.5 keeps {2} + window; the table's mode rules.
  const Selection def = make_policy("compilerkv:window=2,gate=coverage")->select(p.view(), test::plan_of({6}));
  CHECK(test::kept_set(def, 0, 0, 0) == std::set<int>{0, 1, 2, 3, 4, 5});
  test::TempDir tmp;
  DecisionTable t = DecisionTable::defaults(p.view().shape(), {6}, 2, GateMode::coverage);
  for (int e = 0; e < kEntropyBins; ++e)
    for (int q = 0; q < kPerplexityBins; ++q) t.gate_at(0, 0, e, q) = 0.5f;
  write_table(t, tmp / "cov.json");
  const std::string spec = "compilerkv:window=2,table=" + (tmp / "cov.json").string();
  CHECK(test::kept_set(make_policy(spec)->select(p.view(), test::plan_of({6})), 0, 0, 0) == std::set<int>{2, 4, 5});
  CHECK(test::kept_set(make_policy(spec + ",gate=coverage")->select(p.view(), test::plan_of({6})), 0, 0, 0) ==
        std::set<int>{2, 4, 5});
  CHECK_THROWS_WITH(make_policy(spec + ",gate=absolute"), Catch::Contains("compiled with the coverage gate"));
  CHECK_THROWS_WITH(make_policy("compilerkv:gate=relative"), Catch::Contains("unknown gate mode 'relative'"));
  // Coverage thresholds outside [0, 1] are refused when the table is read.
  t.gate_at(0, 0, 0, 0) = 1.5f;
  CHECK_THROWS_WITH(write_table(t, tmp / "bad.json"), Catch::Contains("must lie in [0, 1]"));
}

TEST_CASE("compilerkv: sinks are protected ahead of the window and outside the gate", "[policies][compilerkv][sink]") {
  const PromptTensors p = hand_prompt();
  // sink 1: token 0 (u 1.5) is protected; the gate judges tokens 1..3 (u .6 3.0 .6).
  const CompilerKvState st = compilerkv_state(p.view(), 2, 1);
  CHECK(st.sink == 1);
  std::vector<float> s(6);
  const std::vector<float> ones = {1.0f, 1.0f};
  compilerkv_layer_scores(st, 0, ones, s);
  CHECK(std::isinf(s[0]));
  // absolute τ 0.8: C = {2}; kept = w + s + |C| = 4.
  CHECK(compilerkv_elastic_count(s, 2, 0.8f, 6, GateMode::absolute, 1).candidates == 4);
  // coverage τ 0.5: mass .6 + 3.0 + .6 = 4.2, target 2.1 ≤ 3.0 → |C| = 1 (the sink's 1.5 is not in the mass).
  CHECK(compilerkv_elastic_count(s, 2, 0.5f, 6, GateMode::coverage, 1).candidates == 4);
  const auto pol = make_policy("compilerkv:window=2,sink=1");
  const Selection sel = pol->select(p.view(), test::plan_of({6, 3, 1}));
  CHECK(test::kept_set(sel, 0, 0, 0) == std::set<int>{0, 2, 4, 5});
  CHECK(test::kept_set(sel, 1, 0, 0) == std::set<int>{0, 4, 5});  // B 3: sink, then the window
  CHECK(test::kept_set(sel, 2, 0, 0) == std::set<int>{0});        // B 1: the sink wins
  // A table compiled without sinks is refused by a policy with sinks (and vice versa).
  test::TempDir tmp;
  write_table(DecisionTable::defaults(p.view().shape(), {6}, 2), tmp / "t.json");
  CHECK_THROWS_WITH(make_policy("compilerkv:window=2,sink=1,table=" + (tmp / "t.json").string()),
                    Catch::Contains("compiled with sink 0"));
}

TEST_CASE("compilerkv: a version-1 table loads as the absolute gate and selects as before", "[policies][compilerkv][tables]") {
  const PromptTensors p = hand_prompt();
  test::TempDir tmp;
  // A version-1 file as kvsim wrote it before gate modes existed (no gate_mode, grids
  // without "scale"); thresholds 0.8 at B = 3 and 3.5 at B = 5.
  std::string gate3, gate5;  // [20 entropy bins][4 perplexity bins] of one layer
  for (int e = 0; e < kEntropyBins; ++e) {
    gate3 += std::string(e ? "," : "") + "[0.8,0.8,0.8,0.8]";
    gate5 += std::string(e ? "," : "") + "[3.5,3.5,3.5,3.5]";
  }
  std::string inf19;
  for (int k = 0; k < kEntropyBins - 1; ++k) inf19 += std::string(k ? "," : "") + "\"inf\"";
  const std::string v1 = std::string("{\"format\": \"kvsim-table\", \"format_version\": 1, \"policy\": \"compilerkv\",\n") +
                         "\"model\": {\"n_layers\": 1, \"n_heads\": 2, \"n_kv_heads\": 1, \"head_dim\": 1, \"hidden\": 2},\n" +
                         "\"window\": 2, \"budgets\": [3, 5],\n" +
                         "\"head_arms\": {\"lo\": 0.8, \"hi\": 1.5, \"step\": 0.025, \"count\": 29},\n" +
                         "\"gate_arms\": {\"lo\": 0.8, \"hi\": 1.0, \"step\": 0.01, \"count\": 21},\n" +
                         "\"defaults\": {\"head\": 1.0, \"gate\": 0.8},\n" +
                         "\"bins\": {\"entropy_edges\": [" + inf19 + "], \"perplexity_edges\": [\"inf\", \"inf\", \"inf\"]},\n" +
                         "\"head\": [[[1.0, 1.0]], [[1.0, 1.0]]],\n" +
                         "\"gate\": [[[" + gate3 + "]], [[" + gate5 + "]]],\n" +
                         "\"provenance\": {}}\n";
  std::ofstream(tmp / "v1.json", std::ios::binary) << v1;
  const DecisionTable r = read_table(tmp / "v1.json");
  CHECK(r.gate_mode == GateMode::absolute);
  CHECK(r.gate_arms.log_count == 0);
  CHECK(r.gate_arms.count() == 21);
  CHECK(r.gate_at(1, 0, 7, 2) == 3.5f);
  // The kept sets of the absolute rule (hand-checked in "threshold, clamp and under-retention").
  const auto pol = make_policy("compilerkv:window=2,table=" + (tmp / "v1.json").string());
  const Selection sel = pol->select(p.view(), test::plan_of({3, 5, 4}));
  CHECK(test::kept_set(sel, 0, 0, 0) == std::set<int>{2, 4, 5});
  CHECK(test::kept_set(sel, 1, 0, 0) == std::set<int>{4, 5});
  CHECK(test::kept_set(sel, 2, 0, 0) == std::set<int>{0, 2, 4, 5});
  // Written back it becomes version 2 with gate_mode absolute, and selects the same.
  write_table(r, tmp / "v2.json");
  const DecisionTable r2 = read_table(tmp / "v2.json");
  CHECK(r2.gate_mode == GateMode::absolute);
  CHECK(r2.gate == r.gate);
  const Selection sel2 = make_policy("compilerkv:window=2,table=" + (tmp / "v2.json").string())->select(p.view(), test::plan_of({3, 5, 4}));
  for (int b = 0; b < 3; ++b) CHECK(test::kept_set(sel2, b, 0, 0) == test::kept_set(sel, b, 0, 0));
}

TEST_CASE("compilerkv: invariants on GQA shapes, kept set shared by a layer's heads, may keep fewer", "[policies][compilerkv]") {
  for (const auto& sh : test::gqa_shapes()) {
    const PromptTensors p = test::random_prompt(sh, 8);
    const int w = std::min(4, sh.W);
    const auto pol = make_policy("compilerkv:window=" + std::to_string(w));
    const auto plan = test::plan_of({2, 5, 8, sh.T});
    const Selection s = test::check_policy(*pol, p, plan, w, false);
    bool fewer = false;
    for (int b = 0; b < s.n_budgets(); ++b) {
      fewer = fewer || s.total_kept(b) < static_cast<long>(plan.per_head[b]) * sh.L * sh.Hkv;
      for (int l = 0; l < sh.L; ++l)
        for (int g = 1; g < sh.Hkv; ++g) CHECK(test::kept_set(s, b, l, g) == test::kept_set(s, b, l, 0));
    }
    CHECK(fewer);  // at B = T the default threshold 0.8 keeps fewer than all tokens
  }
  CHECK(make_policy("compilerkv")->needs().prompt_logprob);
  CHECK_THROWS_AS(make_policy("compilerkv:table=/nonexistent/t.json"), InputError);
}

TEST_CASE("compilerkv: a table for another model shape is refused clearly", "[policies][compilerkv][tables]") {
  test::TempDir tmp;
  ModelShape other{2, 6, 2, 8, 48};
  write_table(DecisionTable::defaults(other, {4}, 4), tmp / "t.json");
  const auto pol = make_policy("compilerkv:window=4,table=" + (tmp / "t.json").string());
  try {
    pol->check_model({2, 4, 2, 8, 32});
    FAIL("expected InputError");
  } catch (const InputError& e) {
    const std::string what = e.what();
    CHECK(what.find("head counts differ") != std::string::npos);
    CHECK(what.find("H=6") != std::string::npos);
  }
  // Another depth maps by relative depth (accepted).
  CHECK_NOTHROW(pol->check_model({5, 6, 2, 8, 48}));
  // Window mismatch refused at construction.
  CHECK_THROWS_WITH(make_policy("compilerkv:window=8,table=" + (tmp / "t.json").string()),
                    Catch::Contains("compiled with window 4"));
}
