// Decision tables: file format, relative-depth mapping, learners, compile determinism, exact
// rewards, the diff regression gate and shape refusal (docs/tables.md).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>
#include <tbb/global_control.h>

#include "sim/exact_decode.hpp"
#include "sim/replay.hpp"
#include "support/shared.hpp"
#include "support/trace_fixture.hpp"
#include "tables/analysis.hpp"
#include "tables/compiler.hpp"
#include "tables/learners.hpp"

using namespace kvsim;

namespace {

std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

void write_text(const std::filesystem::path& p, const std::string& text) { std::ofstream(p, std::ios::binary) << text; }

// Two small traces of a random-weight model (3 layers, 6 heads, 2 KV heads).
struct Traces {
  test::TempDir tmp;
  std::filesystem::path a, b;
  Traces() {
    const Model m = random_model(test::small_config(), 5);
    test::TraceSpec spec;
    spec.n_prompts = 4, spec.T = 64, spec.M = 8, spec.W = 16;
    a = tmp / "a.h5", b = tmp / "b.h5";
    test::write_model_trace(a, m, spec);
    spec.seed = 7, spec.task = "other";
    test::write_model_trace(b, m, spec);
  }
};

}  // namespace

TEST_CASE("tables: JSON round trip, format and version checks", "[tables]") {
  test::TempDir tmp;
  DecisionTable t = DecisionTable::defaults({3, 4, 2, 8, 32}, {32, 8, 16}, 4);
  CHECK(t.budgets == std::vector<int>{8, 16, 32});
  t.head_at(1, 2, 3) = 1.275f;
  t.gate_at(2, 0, 5, 1) = 0.93f;
  t.entropy_edges = quantile_edges({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, kEntropyBins);
  t.perplexity_edges = {1.5, 2.5, 3.5};
  t.provenance["learner"] = {{"name", "cql"}};
  write_table(t, tmp / "t.json");
  const std::string text = slurp(tmp / "t.json");
  CHECK(text.find("\"format\": \"kvsim-table\"") != std::string::npos);
  CHECK(text.find("\"format_version\": 2") != std::string::npos);
  CHECK(text.find("\"gate_mode\": \"absolute\"") != std::string::npos);
  const DecisionTable r = read_table(tmp / "t.json");
  CHECK(r.head == t.head);
  CHECK(r.gate == t.gate);
  CHECK(r.entropy_edges == t.entropy_edges);
  CHECK(r.perplexity_edges == t.perplexity_edges);
  CHECK(r.head_at(1, 2, 3) == 1.275f);
  CHECK(r.provenance["learner"]["name"] == "cql");
  // Defaults: +inf edges put everything in bin 0; written as "inf".
  const DecisionTable d = DecisionTable::defaults({1, 1, 1, 1, 1}, {4}, 2);
  CHECK(d.entropy_bin(1e9) == 0);
  CHECK(d.perplexity_bin(1e9) == 0);
  write_table(d, tmp / "d.json");
  CHECK(read_table(tmp / "d.json").entropy_edges == d.entropy_edges);
  // Nearest budget, ties to the smaller.
  CHECK(t.budget_index(12) == 0);
  CHECK(t.budget_index(13) == 1);
  CHECK(t.budget_index(1000) == 2);

  std::string bad = text;
  bad.replace(bad.find("\"format_version\": 2"), 19, "\"format_version\": 3");
  write_text(tmp / "v3.json", bad);
  CHECK_THROWS_WITH(read_table(tmp / "v3.json"), Catch::Contains("format_version 3 is not supported"));
  bad = text;
  bad.replace(bad.find("\"gate_mode\": \"absolute\""), 23, "\"gate_mode\": \"relative\"");
  write_text(tmp / "mode.json", bad);
  CHECK_THROWS_WITH(read_table(tmp / "mode.json"), Catch::Contains("unknown gate mode 'relative'"));
  // Arm grids: parsed and validated (count 0, step <= 0, lo > hi, log with lo <= 0).
  CHECK(ArmGrid::parse("0.8:1:0.01", "g").count() == 21);
  const ArmGrid lg = ArmGrid::parse("0.0001:0.2:21:log", "g");
  CHECK(lg.count() == 21);
  CHECK(lg.value(0) == 1e-4);
  CHECK(lg.value(20) == 0.2);
  CHECK(lg.value(10) == Approx(std::sqrt(1e-4 * 0.2)).epsilon(1e-5));
  CHECK(lg.nearest(lg.value(7)) == 7);
  CHECK(lg.nearest(0.01) == lg.nearest(0.0099));
  for (const char* b : {"0.8:1:0", "1:0.8:0.01", "0:1:5:log", "0.1:1:0:log", "0.8:1", "a:b:c", "0:1:1e-6"})
    CHECK_THROWS_AS(ArmGrid::parse(b, "--gate-arms"), InputError);
  write_text(tmp / "other.json", "{\"format\": \"something\"}");
  CHECK_THROWS_WITH(read_table(tmp / "other.json"), Catch::Contains("not a kvsim decision table"));
  bad = text;
  bad.replace(bad.find("\"n_heads\": 4"), 12, "\"n_heads\": 5");
  write_text(tmp / "shape.json", bad);
  CHECK_THROWS_WITH(read_table(tmp / "shape.json"), Catch::Contains("head [budgets, L, H]"));
  CHECK_THROWS_AS(read_table(tmp / "missing.json"), InputError);
}

TEST_CASE("tables: relative-depth mapping interpolates, head mismatch refused", "[tables]") {
  DecisionTable t = DecisionTable::defaults({3, 2, 1, 4, 8}, {8}, 4);
  // Layer values 1.0, 1.2, 1.4 (head 0) and thresholds 0.8, 0.9, 1.0.
  for (int l = 0; l < 3; ++l) {
    t.head_at(0, l, 0) = 1.0f + 0.2f * l;
    for (int e = 0; e < kEntropyBins; ++e)
      for (int q = 0; q < kPerplexityBins; ++q) t.gate_at(0, l, e, q) = 0.8f + 0.1f * l;
  }
  // 5 layers: relative depths 0, .25, .5, .75, 1 → source layers 0, .5, 1, 1.5, 2.
  const DecisionTable m = map_table_to_model(t, {5, 2, 1, 4, 8});
  const std::vector<float> expect = {1.0f, 1.1f, 1.2f, 1.3f, 1.4f};
  for (int l = 0; l < 5; ++l) {
    CHECK(m.head_at(0, l, 0) == Approx(expect[l]));
    CHECK(m.head_at(0, l, 1) == Approx(1.0));
    CHECK(m.gate_at(0, l, 3, 2) == Approx(0.8 + 0.05 * l));
  }
  // 2 layers: the ends.
  const DecisionTable two = map_table_to_model(t, {2, 2, 1, 4, 8});
  CHECK(two.head_at(0, 0, 0) == Approx(1.0));
  CHECK(two.head_at(0, 1, 0) == Approx(1.4));
  CHECK_THROWS_WITH(map_table_to_model(t, {3, 4, 1, 4, 8}), Catch::Contains("head counts differ"));
  CHECK_THROWS_WITH(map_table_to_model(t, {3, 2, 2, 4, 8}), Catch::Contains("head counts differ"));
  CHECK_THROWS_WITH(map_table_to_model(t, {5, 2, 1, 4, 8}, false), Catch::Contains("depth differs"));
}

TEST_CASE("tables: learners (CQL conservatism, ties keep the default)", "[tables]") {
  // Uniform data: the argmax is the best mean.
  ArmStats u(4);
  for (int k = 0; k < 5; ++k) u.add(0, -1.0), u.add(1, -0.5), u.add(2, -0.7), u.add(3, -0.9);
  CHECK(choose_arm(cql_fit(u, 0.75), 0) == 1);
  CHECK(best_mean_arm(u, 0) == 1);
  // Uneven data: arm 2 seen once with a slightly better reward than arm 1 seen 40 times;
  // the conservative fit keeps the well-observed arm, the plain mean does not.
  ArmStats e(3);
  for (int k = 0; k < 40; ++k) e.add(1, -0.50);
  for (int k = 0; k < 40; ++k) e.add(0, -0.60);
  e.add(2, -0.45);
  CHECK(best_mean_arm(e, 0) == 2);
  CHECK(choose_arm(cql_fit(e, 0.75), 0) == 1);
  const auto q = cql_fit(e, 0.75);
  CHECK(q[1] > q[2]);
  // Ties keep the default arm; no data keeps it too.
  ArmStats t(5);
  for (int a = 0; a < 5; ++a) t.add(a, -0.3);
  CHECK(choose_arm(cql_fit(t, 0.75), 3) == 3);
  CHECK(choose_arm(cql_fit(ArmStats(5), 0.75), 2) == 2);
  // UCB pulls every arm once, the default first.
  ArmStats s(3);
  CHECK(ucb_pick(s, 1) == 1);
  s.add(1, 0.0);
  CHECK(ucb_pick(s, 1) == 0);
}

TEST_CASE("tables: compile is deterministic across thread counts, tables load in compilerkv", "[tables][compile]") {
  Traces tr;
  const EvalSet set({tr.a, tr.b}, 8, std::size_t(1) << 30);
  REQUIRE(set.size() == 8);
  CHECK(set.logit_rewards());
  CompileOptions co;
  co.budgets = {12, 24};
  co.max_rounds = 2;
  auto compile_at = [&](int threads, const std::string& learner) {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads);
    co.learner = learner;
    CompileStats st;
    DecisionTable t = compile_table(set, co, &st);
    CHECK(st.counters.decisions > 0);
    CHECK(st.counters.measurements <= st.counters.decisions);
    return t;
  };
  for (const char* learner : {"cql", "ucb", "thompson"}) {
    INFO(learner);
    const DecisionTable one = compile_at(1, learner), two = compile_at(2, learner);
    CHECK(one.head == two.head);
    CHECK(one.gate == two.gate);
    CHECK(one.entropy_edges == two.entropy_edges);
    for (float x : one.head) CHECK((x >= 0.8f && x <= 1.5f));
    CHECK(one.gate_mode == GateMode::coverage);  // compile's default gate
    const float lo = static_cast<float>(one.gate_arms.value(0)), hi = static_cast<float>(one.gate_arms.value(one.gate_arms.count() - 1));
    CHECK(lo == 1e-4f);
    CHECK(hi == 0.2f);
    for (float x : one.gate) CHECK((x >= lo && x <= hi));
    CHECK(one.provenance["learner"]["name"] == learner);
    CHECK(one.provenance["traces"].size() == 2);
  }
  // The compiled table replays through `kvsim run`'s engine.
  test::TempDir tmp;
  const DecisionTable t = compile_at(2, "cql");
  write_table(t, tmp / "t.json");
  ReplayOptions ro;
  ro.traces = {tr.a};
  ro.policies = {"compilerkv:window=8,table=" + (tmp / "t.json").string(), "compilerkv:window=8"};
  ro.budgets = BudgetSweep::tokens({12, 24});
  const Replay replay(ro);
  replay.run([&](const PromptResult& r) {
    for (int b = 0; b < 2; ++b) CHECK(r.at(0, 0, b).kept <= 12L * (b + 1) * r.n_kv_heads);
  });
  // The CQL table's reward on its calibration set is at least the default table's (each
  // coordinate step only moves on evidence of a better reward).
  const DiffReport rep = diff_tables(set, DecisionTable::defaults(set.model(), {12, 24}, 8), t, {12, 24}, 0.0, 200, 1);
  CHECK(rep.rows[0].mean_diff >= -1e-9);
}

TEST_CASE("kvsim diff: exit 0 against itself, 3 for a damaged table, wrong shape refused", "[tables][cli]") {
  Traces tr;
  test::TempDir tmp;
  const std::string traces = tr.a.string() + " " + tr.b.string();
  const auto c = test::run_cli("compile " + traces + " --budget 12,24 --window 8 --max-rounds 1 --out " + (tmp / "t.json").string());
  INFO(c.output);
  REQUIRE(c.status == 0);
  CHECK(c.output.find("rewards/s") != std::string::npos);
  // The file itself is the same bytes at any thread count (no clock time or thread count in it).
  const auto c1 = test::run_cli("compile " + traces + " --budget 12,24 --window 8 --max-rounds 1 -t 1 --out " + (tmp / "t1.json").string());
  const auto c2 = test::run_cli("compile " + traces + " --budget 12,24 --window 8 --max-rounds 1 --threads 2 --out " + (tmp / "t2.json").string());
  REQUIRE((c1.status == 0 && c2.status == 0));
  std::string one = slurp(tmp / "t1.json");
  const std::size_t at = one.find("t1.json");  // the --out argument in provenance.command
  REQUIRE(at != std::string::npos);
  one.replace(at, 7, "t2.json");
  CHECK(one == slurp(tmp / "t2.json"));
  const auto same = test::run_cli("diff " + (tmp / "t.json").string() + " " + (tmp / "t.json").string() + " --traces " +
                                  traces + " --budget 12,24 --csv " + (tmp / "d.csv").string());
  INFO(same.output);
  CHECK(same.status == 0);
  CHECK(same.output.find("NEW is not worse") != std::string::npos);
  CHECK(slurp(tmp / "d.csv").rfind("scope,task,budget,n,reward_old", 0) == 0);
  // A budget above a prompt's length: one message naming the trace and the prompt, no output.
  for (const std::string& cmd : {"compile " + traces + " --budget 100000 --window 8 --out " + (tmp / "big.json").string(),
                                 "diff " + (tmp / "t.json").string() + " " + (tmp / "t.json").string() + " --traces " + traces +
                                     " --budget 100000"}) {
    const auto big = test::run_cli(cmd);
    INFO(big.output);
    CHECK(big.status == 1);
    CHECK(big.output.find(tr.a.string() + ": prompt 000000: budget 100000 is outside [1, T] (T = ") != std::string::npos);
  }
  CHECK_FALSE(std::filesystem::exists(tmp / "big.json"));
  // Damage: every coverage threshold 1 (drop all the utility mass) keeps the window only.
  DecisionTable t = read_table(tmp / "t.json");
  CHECK(t.gate_mode == GateMode::coverage);
  for (float& x : t.gate) x = 1.0f;
  write_table(t, tmp / "damaged.json");
  const auto worse = test::run_cli("diff " + (tmp / "t.json").string() + " " + (tmp / "damaged.json").string() +
                                   " --traces " + traces + " --budget 12,24");
  INFO(worse.output);
  CHECK(worse.status == 3);
  CHECK(worse.output.find("WORSE") != std::string::npos);
  // "default" names the default table of the other's shape: the window only is worse than it too.
  CHECK(test::run_cli("diff default " + (tmp / "damaged.json").string() + " --traces " + traces + " --budget 12,24").status == 3);
  const auto two_defaults = test::run_cli("diff default default --traces " + traces + " --budget 12");
  CHECK(two_defaults.status == 1);
  CHECK(two_defaults.output.find("at most one of the two tables may be 'default'") != std::string::npos);
  // The reverse direction is an improvement: exit 0.
  CHECK(test::run_cli("diff " + (tmp / "damaged.json").string() + " " + (tmp / "t.json").string() + " --traces " + traces +
                      " --budget 12,24").status == 0);
  // A table for another model shape: refused with one clear line, exit 1.
  write_table(DecisionTable::defaults({3, 4, 2, 16, 48}, {12}, 8), tmp / "wrong.json");
  const auto wrong = test::run_cli("diff " + (tmp / "t.json").string() + " " + (tmp / "wrong.json").string() + " --traces " +
                                   traces + " --budget 12");
  CHECK(wrong.status == 1);
  CHECK(wrong.output.find("head counts differ") != std::string::npos);
  const auto run = test::run_cli("run " + tr.a.string() + " --policies compilerkv:window=8,table=" + (tmp / "wrong.json").string() +
                                 " --budget 12 --quiet --out " + (tmp / "r").string());
  CHECK(run.status == 1);
  CHECK(run.output.find("a.h5: decision table compiled for L=3, H=4, Hkv=2 cannot be used") != std::string::npos);
  CHECK(!std::filesystem::exists(tmp / "r"));
  // transfer: a table against itself correlates perfectly where it varies.
  const auto tf = test::run_cli("transfer " + (tmp / "t.json").string() + " " + (tmp / "t.json").string());
  INFO(tf.output);
  CHECK(tf.status == 0);
  CHECK(tf.output.find("Spearman") != std::string::npos);
}

TEST_CASE("tables: exact rewards equal an independent exact decode of the policy's kept sets", "[tables][exact]") {
  test::TempDir tmp;
  const Model m = random_model(test::small_config(), 5);
  test::TraceSpec spec;
  spec.n_prompts = 3, spec.T = 64, spec.M = 8, spec.W = 16;
  test::write_model_trace(tmp / "a.h5", m, spec);
  const CpuForward fwd(m);
  const EvalSet set({tmp / "a.h5"}, 8, std::size_t(1) << 30, {}, &fwd);
  const EvalSet uncached({tmp / "a.h5"}, 8, 0, {}, &fwd);  // decoders built per use
  REQUIRE(set.cached_prompts() == 3);
  REQUIRE(uncached.cached_prompts() == 0);
  CHECK(set.exact_rewards());
  CHECK(set.reward_description() == "-exact delta-NLL (teacher-forced re-decode, sim/exact_decode.hpp, nats/token)");
  const std::vector<int> budgets = {12, 24};
  const DecisionTable def = DecisionTable::defaults(set.model(), budgets, 8);

  // The independent side: the compilerkv policy's own selections (replay engine, default
  // table) decoded by a fresh decoder through keep_mask / exact_delta_nll.
  ReplayOptions ro;
  ro.traces = {tmp / "a.h5"};
  ro.policies = {"compilerkv:window=8"};
  ro.budgets = BudgetSweep::tokens(budgets);
  ro.keep_selections = true;
  const Replay replay(ro);
  const TraceReader reader(tmp / "a.h5");
  const ModelConfig& c = m.config;
  int compressed = 0;
  for (std::size_t p = 0; p < set.size(); ++p) {
    const PromptResult pr = replay.replay_prompt(0, p);
    const Selection& sel = pr.selections[0];
    const ExactDecoder decoder = exact_decoder(fwd, reader, p);
    set.with_data(p, [&](const PromptEvalData& data) {
      REQUIRE(data.exact != nullptr);
      // The decoder's prompt K/V count against the cache cap.
      CHECK(data.exact->bytes() >= 2 * sizeof(float) * c.n_layers * c.n_kv_heads * (spec.T + spec.M) * c.head_dim);
      CHECK(data.bytes() > data.exact->bytes());
      for (int b = 0; b < 2; ++b) {
        INFO("prompt " << p << " budget " << budgets[b]);
        EvalCounters counters;
        std::vector<LayerOutcome> outs;
        const double reward = evaluate_table(set.prompt(p), data, def, budgets[b], outs, counters);
        CHECK(counters.task_rewards == 1);
        for (int l = 0; l < c.n_layers; ++l) {
          std::vector<std::int32_t> kept(sel.kept(b, l, 0).begin(), sel.kept(b, l, 0).end());
          std::sort(kept.begin(), kept.end());
          CHECK(outs[l].kept_tokens == kept);
          CHECK(outs[l].wo_delta.empty());  // the estimate is not computed for exact rewards
        }
        const double expect = -exact_delta_nll(decoder, sel, b);
        CHECK(reward == expect);
        compressed += reward != 0;
        double again = 0;
        uncached.with_data(p, [&](const PromptEvalData& d) { again = evaluate_table(uncached.prompt(p), d, def, budgets[b], outs, counters); });
        CHECK(again == reward);
      }
    });
  }
  CHECK(compressed > 0);

  // A full kept set: every token a gate candidate (thresholds at the lowest float) and B = T.
  DecisionTable all = DecisionTable::defaults(set.model(), {spec.T}, 8);
  for (float& x : all.gate) x = std::numeric_limits<float>::lowest();
  set.with_data(0, [&](const PromptEvalData& data) {
    EvalCounters counters;
    std::vector<LayerOutcome> outs;
    CHECK(evaluate_table(set.prompt(0), data, all, spec.T, outs, counters) == 0.0);
    for (const auto& o : outs) CHECK(o.kept == spec.T);
  });

  // Another model's weights: refused naming the trace.
  const Model other = random_model(test::small_config(), 6);
  const CpuForward other_fwd(other);
  CHECK_THROWS_WITH(EvalSet({tmp / "a.h5"}, 8, 0, {}, &other_fwd),
                    Catch::Contains("a.h5: recorded with other weights"));
}

TEST_CASE("kvsim compile --reward exact: same bytes at 1 and 2 threads, refuses another model", "[tables][exact][cli]") {
  test::TempDir tmp;
  // The CLI loads a checkpoint: a random model in llama2.c's layout.
  test::TraceSpec spec;
  spec.n_prompts = 3, spec.T = 48, spec.M = 6, spec.W = 16;
  const test::CheckpointedTrace ct = test::write_checkpointed_trace(tmp.path(), spec);
  const std::string base = "compile " + ct.trace.string() + " --budget 12,24 --window 8 --max-rounds 1 --reward exact";
  const auto c1 = test::run_cli(base + " --model " + ct.checkpoint.string() + " -t 1 -o " + (tmp / "t1.json").string());
  INFO(c1.output);
  REQUIRE(c1.status == 0);
  CHECK(c1.output.find("rewards: -exact delta-NLL") != std::string::npos);
  const auto c2 = test::run_cli(base + " --model " + ct.checkpoint.string() + " --threads 2 -o " + (tmp / "t2.json").string());
  REQUIRE(c2.status == 0);
  std::string one = slurp(tmp / "t1.json");
  const std::size_t at = one.find("t1.json");  // the --out argument in provenance.command
  REQUIRE(at != std::string::npos);
  one.replace(at, 7, "t2.json");
  CHECK(one == slurp(tmp / "t2.json"));
  const DecisionTable t = read_table(tmp / "t1.json");
  CHECK(t.provenance["rewards"].get<std::string>().rfind("-exact delta-NLL", 0) == 0);
  CHECK(t.provenance["reward_model"].get<std::string>().find("m.bin") != std::string::npos);
  CHECK(t.provenance["evaluations"]["task_rewards_computed"].get<long>() > 0);

  // Other weights, same shape: refused before any work, nothing written.
  test::write_llama2c_checkpoint(tmp / "other.bin", random_model(test::small_llama2c_config(), 5));
  const auto weights = test::run_cli(base + " --model " + (tmp / "other.bin").string() + " -o " + (tmp / "w.json").string());
  CHECK(weights.status == 1);
  CHECK(weights.output.find("a.h5: recorded with other weights") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(tmp / "w.json"));
  // Another shape.
  ModelConfig deeper = test::small_llama2c_config();
  deeper.n_layers = 4;
  test::write_llama2c_checkpoint(tmp / "deeper.bin", random_model(deeper, 4));
  const auto shape = test::run_cli(base + " --model " + (tmp / "deeper.bin").string() + " -o " + (tmp / "s.json").string());
  CHECK(shape.status == 1);
  CHECK(shape.output.find("a.h5: recorded with another model shape") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(tmp / "s.json"));
  // Option errors.
  const auto no_model = test::run_cli(base + " -o " + (tmp / "n.json").string());
  CHECK(no_model.status == 1);
  CHECK(no_model.output.find("--reward exact needs --model") != std::string::npos);
  const auto unknown = test::run_cli("compile " + ct.trace.string() + " --budget 12 --window 8 --reward exakt -o " +
                                     (tmp / "u.json").string());
  CHECK(unknown.status == 1);
  CHECK(unknown.output.find("unknown --reward 'exakt' (estimate|exact)") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(tmp / "n.json"));
}

TEST_CASE("kvsim compile --gate absolute|coverage and --gate-arms: the table records its gate", "[tables][cli]") {
  Traces tr;
  test::TempDir tmp;
  const std::string base = "compile " + tr.a.string() + " --budget 12,24 --window 8 --max-rounds 1 --out ";
  const auto abs = test::run_cli(base + (tmp / "abs.json").string() + " --gate absolute");
  INFO(abs.output);
  REQUIRE(abs.status == 0);
  const DecisionTable a = read_table(tmp / "abs.json");
  CHECK(a.gate_mode == GateMode::absolute);
  CHECK(a.gate_arms.count() == 21);
  for (float x : a.gate) CHECK((x >= 0.8f && x <= 1.0f));
  CHECK(slurp(tmp / "abs.json").find("\"gate_mode\": \"absolute\"") != std::string::npos);
  const auto grid = test::run_cli(base + (tmp / "g.json").string() + " --gate-arms 0.001:0.5:7:log");
  REQUIRE(grid.status == 0);
  const DecisionTable g = read_table(tmp / "g.json");
  CHECK(g.gate_mode == GateMode::coverage);
  CHECK(g.gate_arms.log_count == 7);
  for (float x : g.gate) CHECK((x >= 0.001f && x <= 0.5f));
  // Bad gate options: one clear line, exit 1, no table.
  for (const auto& [opt, msg] : {std::pair{"--gate relative", "unknown gate mode 'relative'"},
                                 std::pair{"--gate-arms 1:0.5:0.1", "lo <= hi"},
                                 std::pair{"--gate-arms 0.1:0.5:0", "step must be > 0"},
                                 std::pair{"--gate-arms 0:1:5:log", "lo > 0"}}) {
    const auto bad = test::run_cli(base + (tmp / "bad.json").string() + " " + opt);
    INFO(bad.output);
    CHECK(bad.status == 1);
    CHECK(bad.output.find(msg) != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(tmp / "bad.json"));
  }
}
