// The replay engine and `kvsim run` end to end, on traces of a random-weight model's real
// prefill (no ../shared needed): exact zeros, thread-count determinism, fail-fast errors.
#include <catch2/catch.hpp>

#include <fstream>
#include <functional>
#include <hdf5.h>
#include <limits>
#include <sstream>

#include "core/error.hpp"
#include "core/hash.hpp"
#include "sim/budget.hpp"
#include "sim/replay.hpp"
#include "sim/synthetic.hpp"
#include "sim/trace_set.hpp"
#include "support/policy_fixture.hpp"
#include "support/shared.hpp"
#include "support/trace_fixture.hpp"
#include "tracer/recorder.hpp"

using namespace kvsim;

TEST_CASE("replay: full is exactly zero, budget T is zero for every policy, recall monotone", "[sim]") {
  test::TempDir tmp;
  const Model m = random_model(test::small_config(), 3);
  test::TraceSpec spec;
  spec.T = 96, spec.W = 64;
  test::write_model_trace(tmp / "a.h5", m, spec);
  ReplayOptions ro;
  ro.traces = {tmp / "a.h5"};
  for (const auto& info : policy_registry()) ro.policies.push_back(info.wraps ? info.name + "(snapkv)" : info.name);
  ro.budgets = BudgetSweep::tokens({4, 8, 16, 24, 70, 96});
  const Replay replay(ro);
  REQUIRE(replay.total_prompts() == 3);
  const int P = static_cast<int>(ro.policies.size()), B = 6;
  int n = 0;
  replay.run([&](const PromptResult& r) {
    ++n;
    for (int p = 0; p < P; ++p) {
      INFO(ro.policies[p]);
      // laprox spends the budget model-wide (uneven per layer); compilerkv may keep fewer
      // (under-retention), so budget T need not keep everything.
      const bool model_wide = ro.policies[p] == "laprox", elastic = ro.policies[p] == "compilerkv";
      for (int b = 0; b < B; ++b) {
        long total = 0;
        for (int l = 0; l < r.n_layers; ++l) total += r.at(p, l, b).kept;
        if (model_wide) CHECK(total == static_cast<long>(r.budget_tokens[b]) * r.n_kv_heads * r.n_layers);
        if (elastic) CHECK(total <= static_cast<long>(r.budget_tokens[b]) * r.n_kv_heads * r.n_layers);
      }
      for (int l = 0; l < r.n_layers; ++l) {
        for (int b = 0; b < B; ++b) {
          const LayerMetrics& x = r.at(p, l, b);
          if (elastic && x.kept < static_cast<long>(r.budget_tokens[b]) * r.n_kv_heads) {
            CHECK(x.out_err >= 0.0);
          } else if (ro.policies[p] == "full" || b == B - 1) {
            CHECK(x.out_err == 0.0);
            CHECK(x.out_err_value == 0.0);
            CHECK(x.recall == 1.0);
          } else {
            CHECK(x.out_err > 0.0);
          }
          // Every policy here spends its whole budget except full (which ignores it).
          if (ro.policies[p] != "full" && !model_wide && !elastic) CHECK(x.kept == r.budget_tokens[b] * r.n_kv_heads);
          // Kept sets are nested across budgets for all these policies at these budgets
          // (pyramidkv equals snapkv below its pyramid threshold, docs/policies.md).
          if (b > 0) CHECK(x.recall >= r.at(p, l, b - 1).recall);
        }
      }
    }
  });
  CHECK(n == 3);
}

TEST_CASE("budgets: --ratio keeps int(T·(1 − r)) tokens per head, as kvpress", "[sim]") {
  // kvpress 0.5.x ScorerPress: n_kept = int(k_len * (1 - compression_ratio)), double product
  // then truncation. 4195 * (1 - 0.8) = 838.9999999999998 -> 838 (lround gave 839).
  const BudgetSweep r = BudgetSweep::parse("", "0.8,0.5");
  const BudgetPlan p = r.resolve(4195, "test");
  CHECK(p.per_head == std::vector<int>{838, 2097});  // 0.5: 2097.5 -> 2097 = ⌊T/2⌋
  CHECK(p.exact(0) == 4195 * (1 - 0.8));
  CHECK(p.exact(1) == 2097.5);
  // 1024 * (1 - 0.8) = 204.79999999999995 -> 204 (lround gave 205).
  CHECK(r.resolve(1024, "test").per_head[0] == 204);
  for (int T : {1, 3, 17, 99, 4097}) CHECK(r.resolve(T, "test").per_head[1] == std::max(1, T / 2));
  // Token budgets are their own exact value; at least 1 token whatever the ratio.
  const BudgetPlan t = BudgetSweep::tokens({5, 9}).resolve(20, "test");
  CHECK(t.per_head == std::vector<int>{5, 9});
  CHECK((t.exact(0) == 5.0 && t.exact(1) == 9.0));
  CHECK(BudgetSweep::ratios({0.9}).resolve(5, "test").per_head[0] == 1);
}

namespace {

// The fp32 tensors of one prompt straight from the tracer's forward pass, as PromptTensors.
class TensorSink : public PromptSink {
 public:
  explicit TensorSink(PromptTensors& pt) : pt_(pt) {}
  void layer(int l, const LayerView& v) override {
    LayerTensors& ly = pt_.layers[l];
    ly.keys.assign(v.keys.begin(), v.keys.end());
    ly.values.assign(v.values.begin(), v.values.end());
    ly.q_window.assign(v.q_window.begin(), v.q_window.end());
    ly.q_cont.assign(v.q_cont.begin(), v.q_cont.end());
    ly.attn_colsum.assign(v.attn_colsum.begin(), v.attn_colsum.end());
  }
  void outputs(const PromptOutputs&) override {}

 private:
  PromptTensors& pt_;
};

}  // namespace

TEST_CASE("kvsim run on an fp32 trace keeps the sets computed from the fp32 tensors directly", "[sim][cli][trace]") {
  test::TempDir tmp;
  const Model m = random_model(test::small_config(), 6);
  test::TraceSpec spec;
  spec.n_prompts = 2, spec.T = 64, spec.W = 16, spec.storage = KvStorage::kFp32;
  test::write_model_trace(tmp / "f32.h5", m, spec);
  const std::vector<std::string> policies = {"snapkv:window=16,kernel=5,pool=avg,reduce=mean",
                                             "h2o:window=4,reduce=mean", "knorm", "tova:window=1",
                                             "criticalkv(snapkv:window=16,kernel=5,pool=avg,reduce=mean):epsilon=0.0001,"
                                             "first_stage=0.5,reduce=mean",
                                             "pyramidkv:window=4,kernel=5,pool=avg,reduce=mean,beta=2,rounding=kvpress"};
  std::string list;
  for (const auto& p : policies) list += (list.empty() ? "" : ",") + p;
  const auto r = test::run_cli("run " + (tmp / "f32.h5").string() + " --policies '" + list +
                               "' --budget 4,16,40 --quiet --out " + (tmp / "r").string() + " --dump-kept " +
                               (tmp / "kept.csv").string());
  INFO(r.output);
  REQUIRE(r.status == 0);
  const std::string dump = test::slurp(tmp / "kept.csv");

  const TraceReader reader(tmp / "f32.h5");
  REQUIRE(reader.storage() == KvStorage::kFp32);
  const std::vector<float> w_o_flat = trace_w_o(m);  // [L, hidden, H*d]
  auto w_o = std::make_shared<std::vector<std::vector<float>>>();
  const std::size_t per_layer = w_o_flat.size() / m.config.n_layers;
  for (int l = 0; l < m.config.n_layers; ++l)
    w_o->emplace_back(w_o_flat.begin() + l * per_layer, w_o_flat.begin() + (l + 1) * per_layer);
  const CpuForward fwd(m);
  const BudgetSweep budgets = BudgetSweep::tokens({4, 16, 40});
  int lines = 0;
  for (std::size_t p = 0; p < reader.prompts().size(); ++p) {
    const PromptMeta& meta = reader.prompts()[p];
    PromptTensors pt;
    pt.id = meta.id, pt.task = meta.task;
    static_cast<ModelShape&>(pt) = m.config;
    pt.T = meta.n_prompt, pt.M = meta.n_cont, pt.W = meta.window, pt.w_o = w_o;
    pt.layers.resize(m.config.n_layers);
    const std::vector<std::int32_t> tokens = reader.read_outputs(p).tokens;
    TensorSink sink(pt);
    RecordOptions ro;
    ro.window = spec.W, ro.topk = spec.topk;
    record_prompt(fwd, std::vector<int>(tokens.begin(), tokens.end()), meta.n_prompt, ro, sink);
    // The trace holds these tensors bit for bit.
    for (int l = 0; l < pt.n_layers; ++l) {
      const LayerRecord rec = reader.read_layer(p, l);
      CHECK(rec.keys == pt.layers[l].keys);
      CHECK(rec.values == pt.layers[l].values);
      CHECK(rec.q_window == pt.layers[l].q_window);
      CHECK(rec.q_cont == pt.layers[l].q_cont);
    }
    pt.derive_attention(true, true);
    const BudgetPlan plan = budgets.resolve(pt.T, "direct");
    for (const auto& spec_text : policies) {
      const auto policy = make_policy(spec_text);
      REQUIRE(policy->spec() == spec_text);
      const Selection s = policy->select(pt.view(), plan);
      for (int b = 0; b < s.n_budgets(); ++b)
        for (int l = 0; l < s.n_layers(); ++l)
          for (int g = 0; g < s.n_kv_heads(); ++g) {
            const auto kept = test::kept_set(s, b, l, g);
            std::string line = "f32.h5," + meta.id + ",\"" + spec_text + "\"," + budgets.labels()[b] + "," +
                               std::to_string(l) + "," + std::to_string(g) + "," + std::to_string(kept.size()) + ",";
            bool first = true;
            for (int i : kept) line += (first ? "" : " ") + std::to_string(i), first = false;
            INFO(line);
            CHECK(dump.find(line + "\n") != std::string::npos);
            ++lines;
          }
    }
  }
  CHECK(lines == 2 * 6 * 3 * 3 * 2);
  CHECK(std::count(dump.begin(), dump.end(), '\n') == lines + 1);  // + the header
}

TEST_CASE("kvsim run: same bytes at 1 and 2 threads, dump-kept, comparison table", "[sim][cli]") {
  test::TempDir tmp;
  const Model m = random_model(test::small_config(), 4);
  test::TraceSpec spec;
  spec.n_prompts = 4, spec.T = 96, spec.W = 64;
  test::write_model_trace(tmp / "a.h5", m, spec);
  spec.seed = 9, spec.task = "other";
  test::write_model_trace(tmp / "b.h5", m, spec);
  const std::string base = "run " + (tmp / "a.h5").string() + " " + (tmp / "b.h5").string() +
                           " --policies all --budget 4,8,16,96 --quiet";
  const auto r1 = test::run_cli(base + " --threads 1 --out " + (tmp / "r1").string() + " --dump-kept " + (tmp / "k1.csv").string());
  INFO(r1.output);
  REQUIRE(r1.status == 0);
  const auto r2 = test::run_cli(base + " --threads 2 --out " + (tmp / "r2").string() + " --dump-kept " + (tmp / "k2.csv").string());
  REQUIRE(r2.status == 0);
  for (const char* f : {"layers.csv", "summary.csv"}) CHECK(test::slurp(tmp / "r1" / f) == test::slurp(tmp / "r2" / f));
  CHECK(test::slurp(tmp / "k1.csv") == test::slurp(tmp / "k2.csv"));
  CHECK(r1.output.find("policy \\ budget") != std::string::npos);
  CHECK(r1.output.find("full ") != std::string::npos);
  // Rows: 2 traces × 4 prompts × P policies × 4 budgets × 3 layers, plus the header.
  const std::string layers = test::slurp(tmp / "r1" / "layers.csv");
  const auto lines = std::count(layers.begin(), layers.end(), '\n');
  CHECK((lines - 1) % (2 * 4 * 4 * 3) == 0);
  const std::string summary = test::slurp(tmp / "r1" / "summary.csv");
  CHECK(summary.find("task,other,") != std::string::npos);
  CHECK(summary.find("all,all,\"full\",96,8,96,96,") != std::string::npos);
  CHECK(std::filesystem::exists(tmp / "r1" / "manifest.json"));
  CHECK_FALSE(std::filesystem::exists(tmp / "r1.partial"));
  // The kept dump: one line per (trace, prompt, policy, budget, layer, KV head).
  const std::string kept = test::slurp(tmp / "k1.csv");
  CHECK(kept.find("a.h5,000000,\"streamingllm:sink=4\",4,0,0,4,0 1 2 3\n") != std::string::npos);
}

TEST_CASE("kvsim run: bad inputs fail fast with one message and no output", "[sim][cli][errors]") {
  test::TempDir tmp;
  const Model m = random_model(test::small_config(), 5);
  test::TraceSpec spec;
  spec.W = 8;
  test::write_model_trace(tmp / "a.h5", m, spec);
  const std::string trace = (tmp / "a.h5").string();
  const std::string out = (tmp / "out").string();
  struct Case {
    std::string args, message;
  };
  const std::vector<Case> cases = {
      {"--policies nosuch --budget 8", "unknown policy 'nosuch'"},
      {"--policies streamingllm:sinks=3 --budget 8", "unknown parameter 'sinks'"},
      {"--policies full --budget 0", "budget 0 must be at least 1"},
      {"--policies full --budget 49", "budget 49 tokens per KV head is larger than the prompt (T = 48)"},
      {"--policies full --ratio 1.5", "must be in [0, 1)"},
      {"--policies full", "no budgets"},
  };
  for (const auto& c : cases) {
    const auto r = test::run_cli("run " + trace + " " + c.args + " --out " + out);
    INFO(c.args << "\n" << r.output);
    CHECK(r.status == 1);
    CHECK(r.output.find(c.message) != std::string::npos);
    CHECK(std::count(r.output.begin(), r.output.end(), '\n') == 1);
    CHECK_FALSE(std::filesystem::exists(out));
    CHECK_FALSE(std::filesystem::exists(out + ".partial"));
  }
  // A policy whose window exceeds the recorded one, and a trace missing a dataset a policy needs.
  const auto window = test::run_cli("run " + trace + " --policies snapkv --budget 8 --out " + out);
  CHECK(window.status == 1);
  CHECK(window.output.find("records a window of 8 queries but snapkv:window=64") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(out));
  std::filesystem::copy_file(tmp / "a.h5", tmp / "nocolsum.h5");
  {
    const hid_t f = H5Fopen((tmp / "nocolsum.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    REQUIRE(f >= 0);
    REQUIRE(H5Ldelete(f, "/prompts/000000/layers/0/attn_colsum", H5P_DEFAULT) >= 0);
    H5Fclose(f);
  }
  const auto nocolsum = test::run_cli("run " + (tmp / "nocolsum.h5").string() + " --policies h2o:window=4 --budget 8 --out " + out);
  CHECK(nocolsum.status == 1);
  CHECK(nocolsum.output.find("nocolsum.h5: dataset /prompts/000000/layers/0/attn_colsum is missing (needed by h2o)") !=
        std::string::npos);
  CHECK(std::count(nocolsum.output.begin(), nocolsum.output.end(), '\n') == 1);
  CHECK_FALSE(std::filesystem::exists(out));
  const auto missing = test::run_cli("run " + (tmp / "nope.h5").string() + " --budget 8 --out " + out);
  CHECK(missing.status == 1);
  CHECK(missing.output.find("nope.h5") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(out));
}

namespace {

// Budgets T/2+1 … T−1 as a --budget list: the kept sets where δ is summed from the dropped side.
std::string upper_half_budgets(int T) {
  std::string list;
  for (int b = T / 2 + 1; b < T; ++b) list += (list.empty() ? "" : ",") + std::to_string(b);
  return list;
}

// Every field of every row of a results CSV holds a number or a name (NaN would be written empty).
void check_no_empty_field(const std::filesystem::path& csv) {
  std::istringstream in(test::slurp(csv));
  int rows = 0;
  for (std::string line; std::getline(in, line); ++rows) {
    INFO(csv.filename().string() << ": " << line);
    CHECK(line.find(",,") == std::string::npos);
    CHECK(line.back() != ',');
    CHECK(line.find("nan") == std::string::npos);
    CHECK(line.find("inf") == std::string::npos);
  }
  CHECK(rows > 1);
}

// Sets every element of an fp16 dataset of a trace through `edit` (HDF5 converts to and from float).
void edit_dataset(const std::filesystem::path& file, const std::string& name, const std::function<void(std::vector<float>&)>& edit) {
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  REQUIRE(f >= 0);
  const hid_t d = H5Dopen2(f, name.c_str(), H5P_DEFAULT);
  REQUIRE(d >= 0);
  const hid_t space = H5Dget_space(d);
  std::vector<float> x(static_cast<std::size_t>(H5Sget_simple_extent_npoints(space)));
  REQUIRE(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x.data()) >= 0);
  edit(x);
  REQUIRE(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x.data()) >= 0);
  H5Sclose(space), H5Dclose(d), H5Fclose(f);
}

}  // namespace

TEST_CASE("kvsim run: budgets T/2+1 … T-1 write no NaN (random model and stories260K, issue 15)", "[sim][cli]") {
  test::TempDir tmp;
  test::TraceSpec spec;
  spec.T = 96, spec.W = 64;
  test::write_model_trace(tmp / "a.h5", random_model(test::small_config(), 6), spec);
  std::vector<std::pair<std::filesystem::path, int>> traces = {{tmp / "a.h5", spec.T}};
  if (std::filesystem::exists(test::shared_path("models/stories260K/stories260K.bin"))) {
    // Chunks whose layer 0 leaves a surviving share of 1e-24 at these budgets.
    test::write_stories260k_trace(tmp / "s.h5", test::kStoriesTinyShareChunks);
    traces.push_back({tmp / "s.h5", 256});
  } else {
    WARN("SKIPPED (stories260K part): ../shared is absent");
  }
  for (const auto& [trace, T] : traces) {
    const auto out = tmp / ("r-" + trace.stem().string());
    const auto r = test::run_cli("run " + trace.string() + " --policies all --budget " + upper_half_budgets(T) +
                                 " --quiet --threads 2 --out " + out.string());
    INFO(r.output);
    REQUIRE(r.status == 0);
    check_no_empty_field(out / "layers.csv");
    check_no_empty_field(out / "summary.csv");
  }
}

TEST_CASE("replay: a non-finite metric is an error naming trace, prompt, policy, budget and layer", "[sim][errors]") {
  // Traces cannot hold NaN (reader and writer refuse it), but the surviving attention can
  // underflow: query 0 of head 0 in layer 0 meets key 5 with a logit 4e4 above every other,
  // so every other weight is exactly 0 in fp32 and a kept set without token 5 renormalises 0/0.
  test::TempDir tmp;
  test::TraceSpec spec;
  spec.n_prompts = 1, spec.W = 8, spec.logit_data = false;
  const ModelConfig c = test::small_config();
  test::write_model_trace(tmp / "a.h5", random_model(c, 7), spec);
  const int d = c.head_dim;
  edit_dataset(tmp / "a.h5", "/prompts/000000/layers/0/keys", [&](std::vector<float>& k) {
    std::fill_n(k.begin() + 5 * d, d, 100.0f);  // [Hkv, N, d]: KV head 0, token 5
  });
  edit_dataset(tmp / "a.h5", "/prompts/000000/layers/0/q_cont", [&](std::vector<float>& q) {
    std::fill_n(q.begin(), d, 100.0f);  // [H, M, d]: head 0, position 0
  });
  ReplayOptions ro;
  ro.traces = {tmp / "a.h5"};
  ro.policies = {"full", "streamingllm"};  // streamingllm keeps 0..3 and the most recent tokens
  ro.budgets = BudgetSweep::tokens({8, 40});
  const Replay replay(ro);
  const std::string message = "a.h5: prompt 000000: policy streamingllm:sink=4, budget 8 (8 tokens per head), layer 0: "
                              "out_err is NaN";
  CHECK_THROWS_AS(replay.replay_prompt(0, 0), TraceError);
  CHECK_THROWS_WITH(replay.replay_prompt(0, 0), Catch::Contains(message));
  const auto r = test::run_cli("run " + (tmp / "a.h5").string() + " -p full,streamingllm -b 8,40 -q -o " + (tmp / "r").string());
  INFO(r.output);
  CHECK(r.status == 1);
  CHECK(r.output.find(message) != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(tmp / "r"));
}

TEST_CASE("criticalkv: the trace's recorded value norms give the same bytes as computing them", "[sim][cli][criticalkv]") {
  // value_wo_l1 is written from the values as stored, by the function criticalkv falls back to
  // (core/value_norm.hpp): a trace with it and one without must replay to the same bytes.
  const Model m = random_model(test::small_config(), 4);
  for (KvStorage storage : {KvStorage::kFp16, KvStorage::kBf16, KvStorage::kFp32}) {
    test::TempDir tmp;
    std::filesystem::create_directories(tmp / "with");
    std::filesystem::create_directories(tmp / "without");
    test::TraceSpec spec;
    spec.n_prompts = 2, spec.T = 96, spec.W = 64, spec.storage = storage;
    test::write_model_trace(tmp / "with" / "a.h5", m, spec);
    spec.value_norms = false;
    test::write_model_trace(tmp / "without" / "a.h5", m, spec);
    {
      const TraceReader with(tmp / "with" / "a.h5"), without(tmp / "without" / "a.h5");
      CHECK(with.read_layer(0, 1).value_wo_l1.size() == static_cast<std::size_t>(m.config.n_heads) * 96);
      CHECK(without.read_layer(0, 1).value_wo_l1.empty());
    }
    std::string out[2];
    for (int k = 0; k < 2; ++k) {
      const auto dir = tmp / (k == 0 ? "with" : "without");
      const auto r = test::run_cli("run " + (dir / "a.h5").string() +
                                   " --policies 'criticalkv(snapkv),criticalkv(h2o):first_stage=0,criticalkv(pyramidkv)'"
                                   " --budget 4,8,16,40 --quiet --out " + (dir / "r").string() + " --dump-kept " +
                                   (dir / "k.csv").string());
      INFO(r.output);
      REQUIRE(r.status == 0);
      out[k] = test::slurp(dir / "r" / "layers.csv") + test::slurp(dir / "r" / "summary.csv") + test::slurp(dir / "k.csv");
    }
    INFO("storage " << storage_name(storage));
    CHECK(out[0] == out[1]);
  }
}

namespace {

// How far a bf16-projection replay is from the fp32 one, over all prompts, policies, budgets
// (and layers): the largest relative deviation of out_err and dnll_est_sum, and of the
// logit-space estimates relative to the largest magnitude among the prompt's points (the
// first-order estimate is a signed sum that crosses zero, where no relative bound can hold).
// out_err_value and recall have no GEMM in between and must be the same bytes.
struct Bf16Deviation {
  double out_err = 0, est_sum = 0, est_logit = 0, est_kl = 0;
};
Bf16Deviation bf16_projection_deviation(const std::filesystem::path& trace, const std::vector<int>& budgets) {
  ReplayOptions ro;
  ro.traces = {trace};
  for (const auto& info : policy_registry()) ro.policies.push_back(info.wraps ? info.name + "(snapkv)" : info.name);
  ro.budgets = BudgetSweep::tokens(budgets);
  std::vector<PromptResult> fp32;
  Replay(ro).run([&](const PromptResult& r) { fp32.push_back(r); });
  ro.projection = ProjectionPrecision::kBf16;
  std::size_t i = 0;
  Bf16Deviation dev;
  auto relative = [](double got, double want, double scale) { return std::abs(got - want) / std::max(scale, 1e-12); };
  auto scale_of = [](const std::vector<double>& x) {
    double m = 0;
    for (double v : x) m = std::isnan(v) ? m : std::max(m, std::abs(v));
    return m;
  };
  Replay(ro).run([&](const PromptResult& r) {
    const PromptResult& f = fp32.at(i++);
    REQUIRE(r.metrics.size() == f.metrics.size());
    for (std::size_t k = 0; k < r.metrics.size(); ++k) {
      INFO("metric " << k << " of prompt " << r.meta->id);
      dev.out_err = std::max(dev.out_err, relative(r.metrics[k].out_err, f.metrics[k].out_err, std::abs(f.metrics[k].out_err)));
      CHECK(r.metrics[k].out_err_value == f.metrics[k].out_err_value);
      CHECK(r.metrics[k].recall == f.metrics[k].recall);
    }
    const double logit_scale = scale_of(f.dnll_est_logit), kl_scale = scale_of(f.dnll_est_kl);
    for (std::size_t k = 0; k < r.dnll_est_sum.size(); ++k) {
      dev.est_sum = std::max(dev.est_sum, relative(r.dnll_est_sum[k], f.dnll_est_sum[k], std::abs(f.dnll_est_sum[k])));
      if (std::isnan(f.dnll_est_logit[k])) continue;
      dev.est_logit = std::max(dev.est_logit, relative(r.dnll_est_logit[k], f.dnll_est_logit[k], logit_scale));
      dev.est_kl = std::max(dev.est_kl, relative(r.dnll_est_kl[k], f.dnll_est_kl[k], kl_scale));
    }
  });
  CHECK(i == fp32.size());
  WARN("bf16 vs fp32 projection, largest relative deviation: out_err " << dev.out_err << ", dnll_est_sum " << dev.est_sum
       << ", dnll_est_logit " << dev.est_logit << " and dnll_est_kl " << dev.est_kl << " (of the prompt's largest)");
  return dev;
}

// At D = 64 bf16 rounding averages over few outputs: every metric within 5e-3 of fp32.
void check_small_model_deviation(const Bf16Deviation& dev) {
  CHECK(dev.out_err > 0);  // the bf16 path did run
  CHECK(dev.out_err <= 5e-3);
  CHECK(dev.est_sum <= 5e-3);
  CHECK(dev.est_logit <= 5e-3);
  CHECK(dev.est_kl <= 5e-3);
}

}  // namespace

TEST_CASE("replay: a bf16 W_O projection at 8B width (D = 4096) is within 1e-3 relative of fp32", "[sim][gemm_bf16]") {
  // Llama-3-8B's attention shape (32 heads, 8 KV heads, head_dim 128, hidden 4096), 2 layers:
  // the error of ‖W_O δ‖ from bf16 inputs averages over the D outputs.
  test::TempDir tmp;
  SyntheticSpec spec;
  spec.model = synthetic_shape("llama3-8b");
  spec.model.n_layers = 2;
  spec.T = 256, spec.M = 8, spec.W = 64, spec.n_prompts = 2;
  write_synthetic_trace(tmp / "w.h5", spec);
  const Bf16Deviation dev = bf16_projection_deviation(tmp / "w.h5", {8, 32, 64, 128, 200});
  CHECK(dev.out_err > 0);  // the bf16 path did run
  CHECK(dev.out_err <= 1e-3);
  CHECK(dev.est_sum <= 1e-3);
}

TEST_CASE("replay: a bf16 W_O projection on small models (D = 64) stays within 5e-3 of fp32", "[sim][gemm_bf16]") {
  test::TempDir tmp;
  const Model m = random_model(test::small_config(), 5);
  test::TraceSpec spec;
  spec.T = 96, spec.W = 64;
  test::write_model_trace(tmp / "a.h5", m, spec);
  const Bf16Deviation dev = bf16_projection_deviation(tmp / "a.h5", {4, 16, 48, 80, 95});
  check_small_model_deviation(dev);
}

TEST_CASE("replay: a bf16 W_O projection on stories260K stays within 5e-3 of fp32", "[sim][gemm_bf16][shared]") {
  KVSIM_REQUIRE_SHARED(test::shared_path("models/stories260K/stories260K.bin"));
  test::TempDir tmp;
  test::write_stories260k_trace(tmp / "s.h5", {0, 1, 634});
  const Bf16Deviation dev = bf16_projection_deviation(tmp / "s.h5", {16, 64, 128, 200, 250});
  check_small_model_deviation(dev);
}

TEST_CASE("kvsim run --projection bf16: same bytes at 1 and 2 threads, and a bad precision is refused", "[sim][cli][gemm_bf16]") {
  test::TempDir tmp;
  const Model m = random_model(test::small_config(), 4);
  test::TraceSpec spec;
  spec.n_prompts = 3, spec.T = 96, spec.W = 64;
  test::write_model_trace(tmp / "a.h5", m, spec);
  const std::string base = "run " + (tmp / "a.h5").string() + " --policies all --budget 4,8,16,60 --quiet";
  std::string out[2];
  for (int t = 1; t <= 2; ++t) {
    const auto dir = tmp / ("r" + std::to_string(t));
    const auto r = test::run_cli(base + " --projection bf16 --threads " + std::to_string(t) + " --out " + dir.string());
    INFO(r.output);
    REQUIRE(r.status == 0);
    out[t - 1] = test::slurp(dir / "layers.csv") + test::slurp(dir / "summary.csv");
    CHECK(test::slurp(dir / "manifest.json").find("\"projection\": \"bf16\"") != std::string::npos);
  }
  CHECK(out[0] == out[1]);
  const auto bad = test::run_cli(base + " --projection fp8 --out " + (tmp / "bad").string());
  CHECK(bad.status != 0);
  CHECK(bad.output.find("--projection: 'fp8' is not a precision (fp32 or bf16)") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(tmp / "bad"));
}

TEST_CASE("trace set: shared state read once per trace, items in order, checks in order, prompts as read_prompt reads them", "[sim]") {
  test::TempDir tmp;
  const Model m = random_model(test::small_config(), 3);
  test::TraceSpec spec;
  test::write_model_trace(tmp / "a.h5", m, spec);
  spec.n_prompts = 2, spec.seed = 2;
  test::write_model_trace(tmp / "b.h5", m, spec);
  std::vector<std::string> calls;
  TraceSet::Checks checks;
  checks.opened = [&](std::size_t t, const TraceReader& r) { calls.push_back("opened " + std::to_string(t) + " " + r.path().filename().string()); };
  checks.loaded = [&](std::size_t t, const TraceReader&, const TraceWO& w_o) {
    calls.push_back("loaded " + std::to_string(t) + " " + std::to_string(w_o.size()));
  };
  const TraceSet set({tmp / "a.h5", tmp / "b.h5"}, checks, true);
  const int L = test::small_config().n_layers;
  CHECK(calls == std::vector<std::string>{"opened 0 a.h5", "loaded 0 " + std::to_string(L), "opened 1 b.h5",
                                          "loaded 1 " + std::to_string(L)});
  REQUIRE(set.size() == 2);
  CHECK(set.total_prompts() == 5);
  const std::vector<TraceItem> items = set.items();
  REQUIRE(items.size() == 5);
  for (std::size_t k = 0; k < items.size(); ++k) {
    CHECK(items[k].trace == (k < 3 ? 0u : 1u));
    CHECK(items[k].prompt == (k < 3 ? k : k - 3));
  }
  for (std::size_t t = 0; t < 2; ++t) {
    const TraceReader& r = set.reader(t);
    CHECK(set.hash(t) == hex64(hash_file(set.paths()[t])));
    CHECK(*set.w_o(t) == *read_all_w_o(r));
    CHECK(set.final_norm(t) == r.read_final_norm());
    CHECK((set.classifier(t) != nullptr) == r.has_classifier());
    if (set.classifier(t)) CHECK(*set.classifier(t) == r.read_classifier());
  }
  PolicyNeeds needs;
  needs.prompt_logprob = true;
  const ReadPrompt a = set.read_prompt(1, 1, needs, 7);
  const ReadPrompt b = read_prompt(set.reader(1), 1, needs, read_all_w_o(set.reader(1)), 7);
  CHECK(a.tensors.w_o == set.w_o(1));  // shared, not copied
  REQUIRE(a.tensors.layers.size() == b.tensors.layers.size());
  for (std::size_t l = 0; l < a.tensors.layers.size(); ++l) {
    CHECK(a.tensors.layers[l].keys == b.tensors.layers[l].keys);
    CHECK(a.tensors.layers[l].values == b.tensors.layers[l].values);
    CHECK(a.tensors.layers[l].q_cont == b.tensors.layers[l].q_cont);
  }
  CHECK(a.tensors.prompt_logprob == b.tensors.prompt_logprob);
  CHECK(a.outputs.tokens == b.outputs.tokens);
  CHECK(a.tensors.seed == 7);

  // A check that fails stops the set at that trace, its error as thrown.
  checks.opened = [](std::size_t t, const TraceReader& r) {
    if (t == 1) fail<InputError>(r.path().string(), ": refused");
  };
  checks.loaded = {};
  CHECK_THROWS_WITH(TraceSet({tmp / "a.h5", tmp / "b.h5"}, checks), Catch::Contains("b.h5: refused"));
  CHECK_THROWS_AS(TraceSet({tmp / "a.h5", tmp / "missing.h5"}), TraceError);

  // Replay hands back the prompt it read: the same tensors, the same result.
  ReplayOptions ro;
  ro.traces = {tmp / "a.h5", tmp / "b.h5"};
  ro.policies = {"streamingllm", "snapkv:window=8"};
  ro.budgets = BudgetSweep::tokens({8, 16});
  const Replay replay(ro);
  CHECK(replay.traces().total_prompts() == 5);
  ReadPrompt read;
  const PromptResult r1 = replay.replay_prompt(1, 0, read);
  const PromptResult r2 = replay.replay_prompt(1, 0);
  CHECK(read.outputs.tokens == set.read_prompt(1, 0, needs, 0).outputs.tokens);
  CHECK(read.tensors.layers[0].keys == set.read_prompt(1, 0, needs, 0).tensors.layers[0].keys);
  REQUIRE(r1.metrics.size() == r2.metrics.size());
  for (std::size_t k = 0; k < r1.metrics.size(); ++k) CHECK(r1.metrics[k].out_err == r2.metrics[k].out_err);
}
