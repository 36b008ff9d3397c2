// kvsim validate with generation: greedy text from every compressed cache, scored against the
// trace's gold answers (sim/validation.hpp, docs/metrics.md "Task scores").
#include <catch2/catch.hpp>

#include <fstream>
#include <nlohmann/json.hpp>
#include <tbb/global_control.h>

#include "sim/validation.hpp"
#include "support/byte_tokenizer.hpp"
#include "support/shared.hpp"
#include "support/trace_fixture.hpp"
#include "tracer/cpu_forward.hpp"

using namespace kvsim;

namespace {

// small_config with its own classifier (tied to an N(0, 1) embedding, greedy text repeats one
// token and every policy writes the same).
ModelConfig untied_config() {
  ModelConfig c = test::small_config();
  c.tied_classifier = false;
  return c;
}

std::vector<nlohmann::json> read_jsonl(const std::filesystem::path& p) {
  std::vector<nlohmann::json> out;
  std::ifstream f(p);
  for (std::string line; std::getline(f, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

struct Fixture {
  test::TempDir tmp;
  Model model = random_model(untied_config(), 4);
  test::ByteTokenizer tok;
  Fixture(std::vector<std::string> answers, std::string task = "niah_single_1") {
    test::TraceSpec spec;
    spec.n_prompts = 3, spec.T = 64, spec.M = 8, spec.W = 16, spec.task = std::move(task);
    spec.answers = std::move(answers);
    test::write_model_trace(tmp / "a.h5", model, spec);
  }
  ReplayOptions options() const {
    ReplayOptions ro;
    ro.traces = {tmp / "a.h5"};
    ro.policies = {"full", "streamingllm", "snapkv:window=8", "knorm", "random"};
    ro.budgets = BudgetSweep::tokens({4, 16, 64});
    return ro;
  }
  GenerationOptions generation(int max_new) const {
    GenerationOptions g;
    g.max_new = max_new, g.tokenizer = &tok, g.bootstrap = 200, g.stop = {tok.eos_id()};
    return g;
  }
  // Runs validate at `threads` threads into DIR.
  std::unique_ptr<Validation> run(const std::string& dir, int threads) const {
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
    auto v = std::make_unique<Validation>(options(), model, generation(12));
    v->run();
    v->write(tmp / dir, false, nlohmann::json::object());
    return v;
  }
};

}  // namespace

TEST_CASE("validate --generate: the full cache's text is plain greedy decoding, scores recomputed from the text",
          "[fidelity][generate][task_score]") {
  // Upper-case letters and digits: ids 3 + byte are inside the model's vocabulary of 97.
  const std::vector<std::string> gold = {"A", "B", "C", "D", "E", "F", "1", "2"};
  const Fixture fx(gold);
  const auto vp = fx.run("v1", 1);
  const Validation& v = *vp;
  const auto lines = read_jsonl(fx.tmp / "v1" / "generations.jsonl");
  REQUIRE(lines.size() == 3 + 3 * 5 * 3);
  // FullKV: an independent greedy decode, one token at a time through the plain forward over
  // the trace's own (fp16-rounded) prompt keys/values, first token from the recorded top-1.
  const TraceReader reader(fx.tmp / "a.h5");
  const CpuForward fwd(fx.model);
  for (std::size_t i = 0; i < 3; ++i) {
    const ExactDecoder dec = exact_decoder(fwd, reader, i);
    KvCache kv(fx.model.config, 64 + 12);
    for (int l = 0; l < fx.model.config.n_layers; ++l)
      for (int g = 0; g < fx.model.config.n_kv_heads; ++g)
        for (int t = 0; t < 64; ++t)
          for (int e = 0; e < fx.model.config.head_dim; ++e) {
            const std::size_t src = (static_cast<std::size_t>(g) * dec.cache().stride + t) * fx.model.config.head_dim + e;
            const std::size_t dst = (static_cast<std::size_t>(g) * kv.capacity() + t) * fx.model.config.head_dim + e;
            kv.keys(l)[dst] = dec.cache().keys[l][src];
            kv.values(l)[dst] = dec.cache().values[l][src];
          }
    kv.set_length(64);
    std::vector<int> ids = {reader.read_outputs(i).cont_topk_ids[0]};
    while (static_cast<int>(ids.size()) < 12 && ids.back() != 2) {
      const MatrixRM logits = fwd.logits(fwd.forward(std::span(&ids.back(), 1), kv));
      int best = 0;
      for (int k = 1; k < logits.cols(); ++k)
        if (logits(0, k) > logits(0, best)) best = k;
      ids.push_back(best);
    }
    if (ids.back() == 2) ids.pop_back();
    const nlohmann::json& full = lines[i];
    CHECK(full["policy"] == "FullKV");
    CHECK(full["text"] == fx.tok.decode(ids));
    CHECK(full["gold"] == gold);
    CHECK(full["scorer"] == "ruler_all");
  }
  // Every point's score is the scorer applied to its text; `full` writes the FullKV text.
  bool some_differ = false, some_score = false;
  for (std::size_t k = 3; k < lines.size(); ++k) {
    const nlohmann::json& j = lines[k];
    const double s = task_score(Scorer::kRulerAll, j["text"].get<std::string>(), gold);
    CHECK(j["score"].get<double>() == Approx(s).margin(1e-12));
    const nlohmann::json& full = lines[std::stoi(j["prompt"].get<std::string>())];
    if (j["policy"] == "full" || j["budget"] == "64") CHECK(j["text"] == full["text"]);  // B = T keeps everything
    some_differ = some_differ || j["text"] != full["text"];
    some_score = some_score || s > 0;
  }
  CHECK(some_differ);
  CHECK(some_score);
  // scores.csv: full is 100% of FullKV (or undefined when FullKV scores 0 everywhere).
  for (const ScoreRow& r : v.scores())
    if (r.policy == 0) CHECK((std::isnan(r.pct_full) || r.pct_full == 1.0));
  // decisions: one row per (predictor, budget) plus the cells row.
  const auto d = v.decisions();
  CHECK(std::count_if(d.begin(), d.end(), [](const DecisionRow& r) { return r.predictor == "dnll_exact"; }) == 3 + 1);
  for (const char* f : {"scores.csv", "decisions.csv", "pairs.csv", "manifest.json"}) CHECK(std::filesystem::exists(fx.tmp / "v1" / f));
}

TEST_CASE("validate --generate: same bytes at 1 and 2 threads", "[fidelity][generate]") {
  const Fixture fx({"A", "B", "7"});
  (void)fx.run("v1", 1);
  (void)fx.run("v2", 2);
  for (const char* f : {"pairs.csv", "scores.csv", "decisions.csv", "generations.jsonl", "correlations.csv"})
    CHECK(test::slurp(fx.tmp / "v1" / f) == test::slurp(fx.tmp / "v2" / f));
}

TEST_CASE("validate --generate: malformed gold answers and scorers refused before any work", "[fidelity][generate][errors]") {
  const Fixture empty_answer({"A", ""});
  CHECK_THROWS_WITH(Validation(empty_answer.options(), empty_answer.model, empty_answer.generation(4)),
                    Catch::Contains("a.h5: prompt 000000: answers") && Catch::Contains("empty"));
  const Fixture ok({"A"});
  GenerationOptions g = ok.generation(4);
  g.scorer = "bleu";
  CHECK_THROWS_WITH(Validation(ok.options(), ok.model, g), Catch::Contains("--scorer") && Catch::Contains("bleu"));
  g = ok.generation(4);
  g.tokenizer = nullptr;
  CHECK_THROWS_WITH(Validation(ok.options(), ok.model, g), Catch::Contains("tokenizer"));
  const Fixture bad_scorer({"A"}, "qa");
  // A trace that names an unknown scorer for its prompts.
  test::TraceSpec spec;
  spec.n_prompts = 1, spec.T = 32, spec.M = 4, spec.W = 8, spec.answers = {"A"}, spec.scorer = "nonsense";
  test::write_model_trace(bad_scorer.tmp / "b.h5", bad_scorer.model, spec);
  ReplayOptions ro = bad_scorer.options();
  ro.traces = {bad_scorer.tmp / "b.h5"};
  ro.budgets = BudgetSweep::tokens({8});
  CHECK_THROWS_WITH(Validation(ro, bad_scorer.model, bad_scorer.generation(4)),
                    Catch::Contains("b.h5: prompt 000000: scorer") && Catch::Contains("nonsense"));
}
