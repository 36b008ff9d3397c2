// kvsim run and validate as MPI jobs (docs/scale-out.md): the same bytes as one process at
// 2 and 3 ranks (oversubscribed on a 2-core machine) and any thread count; a rank killed
// mid-run fails the job naming the rank and its prompt, leaves no output, and the rerun
// matches. And the encodings the ranks send, on their own (no MPI needed).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>

#include "core/bytes.hpp"
#include "sim/replay.hpp"
#include "sim/result_codec.hpp"
#include "sim/validation.hpp"
#include "support/mpi.hpp"
#include "support/shared.hpp"
#include "support/trace_fixture.hpp"

using namespace kvsim;

namespace {

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

const std::string kStoriesModel = test::shared_path("models/stories260K/stories260K.bin").string();

// `limit` TinyStories chunks of `prompt_len` tokens through stories260K into `out`, quietly.
void trace_stories(const std::filesystem::path& out, int prompt_len, int cont_len, int window, int limit) {
  const auto r = test::run_cli("trace --model " + kStoriesModel + " --input " +
                               test::shared_path("data/tinystories_valid_subset/tinystories_val.txt").string() +
                               " --prompt-len " + std::to_string(prompt_len) + " --cont-len " + std::to_string(cont_len) +
                               " --window " + std::to_string(window) + " --limit " + std::to_string(limit) +
                               " --quiet --out " + out.string());
  INFO(r.output);
  REQUIRE(r.status == 0);
}

// Two stories260K traces whose prompts differ 3x in length (load balancing), window 64.
struct StoriesSet {
  std::string traces, model;
};
StoriesSet trace_stories_set(const std::filesystem::path& dir) {
  std::string traces;
  for (const auto& [name, len] : {std::pair{"short.h5", 128}, std::pair{"long.h5", 384}}) {
    trace_stories(dir / name, len, 16, 64, 6);
    traces += " " + (dir / name).string();
  }
  return {traces, kStoriesModel};
}

void require_same_files(const std::filesystem::path& a, const std::filesystem::path& b,
                        const std::vector<std::string>& files) {
  for (const auto& f : files) {
    INFO(f);
    REQUIRE(std::filesystem::exists(a / f));
    CHECK(test::slurp(a / f) == test::slurp(b / f));
  }
}

}  // namespace

TEST_CASE("PromptResult as bytes: every field back bit for bit, kept sets as tokens or counts", "[mpi-codec][sim]") {
  test::TempDir tmp;
  const Model m = random_model(test::small_config(), 4);
  test::TraceSpec spec;
  spec.n_prompts = 2, spec.T = 64, spec.W = 32;
  test::write_model_trace(tmp / "a.h5", m, spec);
  ReplayOptions o;
  o.traces = {tmp / "a.h5"};
  o.policies = {"snapkv:window=8", "pyramidkv:window=8", "streamingllm"};
  o.budgets = BudgetSweep::tokens({4, 16, 64});
  o.keep_selections = true;
  const Replay replay(o);
  const PromptResult r = replay.replay_prompt(0, 1);
  for (bool tokens : {true, false}) {
    const PromptResult d = decode_prompt_result(encode_prompt_result(r, tokens), r.meta);
    CHECK(d.trace == r.trace);
    CHECK(d.meta == r.meta);
    CHECK(d.budget_tokens == r.budget_tokens);
    REQUIRE(d.metrics.size() == r.metrics.size());
    for (std::size_t k = 0; k < r.metrics.size(); ++k) {
      CHECK(same_bits(d.metrics[k].out_err, r.metrics[k].out_err));
      CHECK(same_bits(d.metrics[k].recall, r.metrics[k].recall));
      CHECK(d.metrics[k].kept == r.metrics[k].kept);
    }
    for (std::size_t k = 0; k < r.dnll_est_logit.size(); ++k) {
      CHECK(same_bits(d.dnll_est_sum[k], r.dnll_est_sum[k]));
      CHECK(same_bits(d.dnll_est_logit[k], r.dnll_est_logit[k]));
      CHECK(same_bits(d.dnll_est_kl[k], r.dnll_est_kl[k]));
    }
    REQUIRE(d.selections.size() == r.selections.size());
    for (std::size_t p = 0; p < r.selections.size(); ++p)
      for (int b = 0; b < 3; ++b) {
        CHECK(d.selections[p].total_kept(b) == r.selections[p].total_kept(b));
        for (int l = 0; l < r.n_layers; ++l)
          for (int g = 0; g < r.n_kv_heads; ++g) {
            const auto kd = d.selections[p].kept(b, l, g), kr = r.selections[p].kept(b, l, g);
            REQUIRE(kd.size() == kr.size());
            if (tokens) CHECK(std::equal(kd.begin(), kd.end(), kr.begin()));
          }
      }
  }
  // A message cut short is an error, not garbage.
  const std::string bytes = encode_prompt_result(r, true);
  CHECK_THROWS_AS(decode_prompt_result(std::string_view(bytes).substr(0, bytes.size() / 2), r.meta), Error);
}

TEST_CASE("PromptValidation as bytes: points, NaN scores and generations come back exactly", "[mpi-codec][sim]") {
  PromptValidation v;
  FidelityPoint p;
  p.trace = 3, p.prompt = "000007", p.task = "niah", p.policy = 2, p.budget = 1, p.budget_tokens = 48;
  p.kept_per_head = 47.5, p.keeps_all = true, p.out_err = 0.125, p.est_sum = 1.0 / 3, p.est_logit = -0.0;
  p.est_kl = std::numeric_limits<double>::quiet_NaN(), p.exact_nll = 2.5, p.exact_dnll = 1e-300, p.exact_kl = 0;
  p.generated_tokens = 7, p.text = "a \"quoted\"\nline";
  v.points = {p, p};
  v.points[1].score = 0.75;
  v.generation.push_back({1, "000007", "niah", "ruler_all", {"a", "b c"}, "text", 1.0, 9});
  v.seconds_exact = 0.5, v.generation_jobs = 4;
  const PromptValidation d = decode_prompt_validation(encode_prompt_validation(v));
  REQUIRE(d.points.size() == 2);
  CHECK(d.points[0].prompt == "000007");
  CHECK(d.points[0].keeps_all);
  CHECK(same_bits(d.points[0].est_logit, -0.0));
  CHECK(std::isnan(d.points[0].est_kl));
  CHECK(std::isnan(d.points[0].score));
  CHECK(d.points[1].score == 0.75);
  CHECK(same_bits(d.points[0].est_sum, 1.0 / 3));
  CHECK(d.points[0].text == p.text);
  REQUIRE(d.generation.size() == 1);
  CHECK(d.generation[0].gold == std::vector<std::string>{"a", "b c"});
  CHECK(d.generation[0].generated_tokens == 9);
  CHECK(d.generation_jobs == 4);
}

TEST_CASE("mpirun -np 2 and 3: kvsim run and validate write the bytes of one process", "[mpi][shared]") {
  KVSIM_REQUIRE_MPI_AND_STORIES();
  test::TempDir tmp;
  const StoriesSet set = trace_stories_set(tmp.path());
  const std::string run = "run" + set.traces + " --policies all --budget 16,32,64 --quiet";
  const auto one = test::run_cli(run + " --out " + (tmp / "run1").string() + " --dump-kept " + (tmp / "k1.csv").string());
  INFO(one.output);
  REQUIRE(one.status == 0);
  const std::string validate = "validate" + set.traces + " --model " + set.model +
                               " --policies 'full,streamingllm,snapkv:window=8,laprox:window=8,compilerkv:window=8'"
                               " --budget 16,48 --generate 4 --quiet";
  const auto v1 = test::run_cli(validate + " --out " + (tmp / "val1").string());
  INFO(v1.output);
  REQUIRE(v1.status == 0);
  for (int ranks : {2, 3})
    for (int threads : {1, 2}) {
      const std::string tag = std::to_string(ranks) + "x" + std::to_string(threads);
      INFO(tag);
      const auto r = test::run_mpi(ranks, run + " --threads " + std::to_string(threads) + " --out " +
                                              (tmp / ("run" + tag)).string() + " --dump-kept " + (tmp / ("k" + tag)).string());
      INFO(r.output);
      REQUIRE(r.status == 0);
      require_same_files(tmp / "run1", tmp / ("run" + tag), {"layers.csv", "summary.csv", "kept.csv"});
      CHECK(test::slurp(tmp / "k1.csv") == test::slurp(tmp / ("k" + tag)));
      // The manifest says how the job ran.
      CHECK(test::slurp(tmp / ("run" + tag) / "manifest.json").find("\"ranks\": " + std::to_string(ranks)) != std::string::npos);
      if (threads == 2) continue;  // validate once per rank count
      const auto v = test::run_mpi(ranks, validate + " --out " + (tmp / ("val" + tag)).string());
      INFO(v.output);
      REQUIRE(v.status == 0);
      require_same_files(tmp / "val1", tmp / ("val" + tag),
                         {"pairs.csv", "correlations.csv", "rankings.csv", "scores.csv", "decisions.csv", "generations.jsonl"});
    }
}

TEST_CASE("mpirun: a rank killed mid-run fails the job naming it, leaves no output, and the rerun matches", "[mpi][shared]") {
  KVSIM_REQUIRE_MPI_AND_STORIES();
  test::TempDir tmp;
  const StoriesSet set = trace_stories_set(tmp.path());
  const std::string run = "run" + set.traces + " --policies all --budget 16,32 --quiet --out " + (tmp / "out").string();
  const auto one = test::run_cli(run.substr(0, run.size() - (tmp / "out").string().size()) + (tmp / "one").string());
  REQUIRE(one.status == 0);
  for (const char* fault : {"1:2", "2:3", "0:2"}) {
    INFO(fault);
    const auto killed = test::run_command("KVSIM_FAULT_KILL=" + std::string(fault) + " " + test::mpirun_kvsim(3) + " " + run);
    INFO(killed.output);
    CHECK(killed.status != 0);
    const std::string rank = std::string("rank ") + fault[0];
    // A worker's death is named by rank 0 (its process is gone) with the prompt it was on;
    // rank 0's own by the launcher.
    if (fault[0] != '0') {
      CHECK(killed.output.find(rank + " (pid ") != std::string::npos);
      CHECK(killed.output.find("died while on ") != std::string::npos);
      CHECK(killed.output.find(".h5 prompt 0000") != std::string::npos);
    } else {
      CHECK(killed.output.find("process rank 0") != std::string::npos);
    }
    CHECK_FALSE(std::filesystem::exists(tmp / "out"));
    // Rank 0 removed its partial directory, unless it was the one killed; a later run replaces it.
    if (fault[0] != '0') CHECK_FALSE(std::filesystem::exists(tmp / "out.partial"));
  }
  const auto again = test::run_mpi(3, run);
  INFO(again.output);
  REQUIRE(again.status == 0);
  require_same_files(tmp / "one", tmp / "out", {"layers.csv", "summary.csv", "kept.csv"});
}

TEST_CASE("mpirun: ranks that see other files under the same paths are refused before any work", "[mpi][shared]") {
  KVSIM_REQUIRE_MPI_AND_STORIES();
  test::TempDir tmp;
  // Two working directories, each with its own t.h5 (3 and 4 prompts): rank 0 runs in a/, rank 1
  // in b/ (an MPMD launch), as ranks on nodes with different local copies would.
  for (const auto& [dir, n] : {std::pair{"a", 3}, std::pair{"b", 4}}) {
    std::filesystem::create_directories(tmp / dir);
    trace_stories(tmp / dir / "t.h5", 64, 8, 16, n);
  }
  const std::string args = " run t.h5 --policies snapkv:window=8 --budget 16 --quiet --out out";
  const auto r = test::run_command("timeout -k 10 300 mpirun --oversubscribe --allow-run-as-root -np 1 --wdir " + (tmp / "a").string() + " " +
                                   KVSIM_BINARY + args + " : -np 1 --wdir " + (tmp / "b").string() + " " + KVSIM_BINARY + args);
  INFO(r.output);
  CHECK(r.status != 0);
  CHECK(r.output.find("rank(s) 1 see another trace set than rank 0") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(tmp / "a" / "out"));
  CHECK_FALSE(std::filesystem::exists(tmp / "a" / "out.partial"));
}
