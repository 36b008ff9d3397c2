// Fidelity mode: exact continuation re-decode against an independent masked forward, exact
// zeros, trace (fp16) vs memory (fp32) K/V, the logit-space estimate's algebra, estimates in
// PromptResult / summary.csv, and `kvsim validate` end to end.
#include <catch2/catch.hpp>

#include <cmath>
#include <sstream>

#include "core/rng.hpp"
#include "metrics/logit_estimate.hpp"
#include "sim/exact_decode.hpp"
#include "sim/validation.hpp"
#include "support/reference_forward.hpp"
#include "support/shared.hpp"
#include "support/trace_fixture.hpp"

using namespace kvsim;

namespace {

std::vector<int> random_tokens(int n, int vocab, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<int> t(n);
  for (auto& x : t) x = static_cast<int>(rng.below(vocab));
  return t;
}

std::vector<std::uint8_t> random_keep(int L, int Hkv, int T, double p, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<std::uint8_t> keep(static_cast<std::size_t>(L) * Hkv * T);
  for (auto& k : keep) k = rng.uniform() < p ? 1 : 0;
  return keep;
}

// Mean over x_{T+1..T+M-1} of −log p from logits rows predicting them.
template <class Row>
double mean_nll(const std::vector<int>& tokens, int T, int V, Row row) {
  const int N = static_cast<int>(tokens.size());
  double s = 0;
  for (int pos = T; pos + 1 < N; ++pos) {
    const float* z = row(pos);
    double mx = z[0];
    for (int v = 1; v < V; ++v) mx = std::max(mx, static_cast<double>(z[v]));
    double e = 0;
    for (int v = 0; v < V; ++v) e += std::exp(z[v] - mx);
    s += mx + std::log(e) - z[tokens[pos + 1]];
  }
  return s / (N - T - 1);
}

// The acceptance check: a fresh prefill over prompt + continuation whose continuation rows are
// masked to the kept prompt tokens gives the NLL that exact mode gives when fed that forward's
// own fp32 prompt K/V. Also against the naive scalar forward (tests/support).
void check_against_masked_prefill(const Model& m, const std::vector<int>& tokens, int T, std::uint64_t seed) {
  const ModelConfig& c = m.config;
  const int N = static_cast<int>(tokens.size());
  const CpuForward fwd(m);
  const auto keep = random_keep(c.n_layers, c.n_kv_heads, T, 0.4, seed);
  KvCache cache(c, N);
  ForwardOptions fo;
  fo.keep = keep, fo.keep_len = T;
  const MatrixRM logits = fwd.logits(fwd.forward(tokens, cache, fo));
  const double nll_prefill = mean_nll(tokens, T, c.vocab, [&](int pos) { return logits.row(pos).data(); });

  const auto ref = test::reference_forward(m, tokens, keep, T);
  const double nll_naive = mean_nll(tokens, T, c.vocab, [&](int pos) { return ref.logits[pos].data(); });

  PromptCache pc;
  pc.T = T, pc.stride = N;
  for (int l = 0; l < c.n_layers; ++l) {
    pc.keys.emplace_back(cache.keys(l), cache.keys(l) + static_cast<std::size_t>(c.n_kv_heads) * N * c.head_dim);
    pc.values.emplace_back(cache.values(l), cache.values(l) + static_cast<std::size_t>(c.n_kv_heads) * N * c.head_dim);
  }
  const ExactDecoder dec(fwd, pc, std::vector<int>(tokens.begin() + T, tokens.end()));
  const ExactResult r = dec.decode(keep);
  INFO("exact " << r.nll << " prefill " << nll_prefill << " naive " << nll_naive);
  CHECK(std::abs(r.nll - nll_prefill) < 1e-4);
  CHECK(std::abs(r.nll - nll_naive) < 1e-4);
  // Compression changed something, and the reference is the unmasked prefill.
  CHECK(std::abs(r.delta_nll) > 1e-4);
  KvCache full_cache(c, N);
  const MatrixRM full_logits = fwd.logits(fwd.forward(tokens, full_cache));
  CHECK(std::abs(dec.reference().nll - mean_nll(tokens, T, c.vocab, [&](int pos) { return full_logits.row(pos).data(); })) < 1e-4);
  CHECK(r.kl > 0);
}

}  // namespace

TEST_CASE("exact decode: equals a fresh masked prefill (random model)", "[fidelity][exact]") {
  const Model m = random_model(test::small_config(), 11);
  check_against_masked_prefill(m, random_tokens(40 + 9, m.config.vocab, 5), 40, 7);
}

TEST_CASE("exact decode: equals a fresh masked prefill (stories260K)", "[fidelity][exact][real][shared]") {
  const auto ckpt = test::shared_path("models/stories260K/stories260K.bin");
  KVSIM_REQUIRE_SHARED(ckpt);
  const Model m = load_model(ckpt);
  check_against_masked_prefill(m, random_tokens(96 + 16, m.config.vocab, 6), 96, 8);
}

TEST_CASE("exact decode: full and budget >= T give exactly 0, trace fp16 K/V close to fp32", "[fidelity][exact]") {
  test::TempDir tmp;
  const Model m = random_model(test::small_config(), 3);
  test::TraceSpec spec;
  spec.n_prompts = 2, spec.T = 64, spec.M = 8, spec.W = 16;
  test::write_model_trace(tmp / "a.h5", m, spec);
  ReplayOptions ro;
  ro.traces = {tmp / "a.h5"};
  ro.policies = {"full", "snapkv:window=8", "streamingllm", "random", "knorm"};
  ro.budgets = BudgetSweep::tokens({8, 16, 64});
  ro.keep_selections = true;
  const Replay replay(ro);
  const CpuForward fwd(m);
  check_model_matches(m, replay.trace(0));
  const PromptResult r = replay.replay_prompt(0, 0);
  const ExactDecoder dec = exact_decoder(fwd, replay.trace(0), 0);
  const auto exact = exact_sweep(dec, r.selections);
  const int B = 3;
  for (int p = 0; p < 5; ++p)
    for (int b = 0; b < B; ++b) {
      INFO(ro.policies[p] << " budget " << b);
      const ExactResult& e = exact[static_cast<std::size_t>(p) * B + b];
      if (p == 0 || b == 2) {
        CHECK(e.delta_nll == 0.0);
        CHECK(e.kl == 0.0);
        CHECK(r.est_sum(p, b) == 0.0);
        CHECK(r.est_logit(p, b) == 0.0);
        CHECK(estimated_delta_nll(r, p, b) == 0.0);
      } else {
        CHECK(e.delta_nll != 0.0);
        CHECK(e.kl > 0.0);
        CHECK(r.est_kl(p, b) > 0.0);
      }
      CHECK(exact_delta_nll(dec, r.selections[p], b) == e.delta_nll);
    }
  // The trace's fp16 K/V vs the fp32 K/V of a fresh prefill: same decode up to fp16 rounding.
  const PromptOutputs outs = replay.trace(0).read_outputs(0);
  const std::vector<int> tokens(outs.tokens.begin(), outs.tokens.end());
  KvCache cache(m.config, static_cast<int>(tokens.size()));
  fwd.forward(tokens, cache);
  PromptCache pc;
  pc.T = spec.T, pc.stride = static_cast<int>(tokens.size());
  const std::size_t n = static_cast<std::size_t>(m.config.n_kv_heads) * pc.stride * m.config.head_dim;
  for (int l = 0; l < m.config.n_layers; ++l)
    pc.keys.emplace_back(cache.keys(l), cache.keys(l) + n), pc.values.emplace_back(cache.values(l), cache.values(l) + n);
  const ExactDecoder mem(fwd, pc, std::vector<int>(tokens.begin() + spec.T, tokens.end()));
  const auto keep = keep_mask(r.selections[1], 0);
  CHECK(mem.decode(keep).nll == Approx(dec.decode(keep).nll).margin(1e-2));
  CHECK(mem.reference().nll == Approx(dec.reference().nll).margin(1e-2));
  // The continuation's first token is predicted by prefill: its log-prob is the trace's.
  (void)outs;
}

TEST_CASE("logit estimate: matches the exact NLL change of a small residual perturbation", "[fidelity][estimate]") {
  // Final norm + classifier only: with K = V the support is the whole vocabulary, so the
  // estimate is the second-order Taylor expansion of the true change.
  const int T = 1, M = 3, D = 12, V = 9;
  Rng rng(4);
  std::vector<float> resid(M * D), gain(D), cls(V * D), dr(M * D);
  for (auto& x : resid) x = static_cast<float>(rng.normal());
  for (auto& x : gain) x = static_cast<float>(0.5 + rng.uniform());
  for (auto& x : cls) x = static_cast<float>(rng.normal());
  for (auto& x : dr) x = static_cast<float>(1e-3 * rng.normal());
  std::vector<std::int32_t> tokens = {0, 3, 5, 7}, ids(M * V);
  for (int t = 0; t < M; ++t)
    for (int v = 0; v < V; ++v) ids[t * V + v] = v;
  LogitEstimateInput in;
  in.T = T, in.M = M, in.D = D, in.V = V, in.K = V, in.cont_residual = resid, in.final_norm = gain;
  in.norm_eps = 1e-5, in.classifier = cls, in.tokens = tokens, in.cont_topk_ids = ids;
  const LogitEstimator est(in);
  auto nll = [&](const std::vector<float>& r, int t) {
    double ss = 0;
    for (int e = 0; e < D; ++e) ss += static_cast<double>(r[t * D + e]) * r[t * D + e];
    const double rms = std::sqrt(ss / D + 1e-5);
    std::vector<double> z(V, 0.0);
    for (int v = 0; v < V; ++v)
      for (int e = 0; e < D; ++e) z[v] += cls[v * D + e] * gain[e] * r[t * D + e] / rms;
    double mx = *std::max_element(z.begin(), z.end()), s = 0;
    for (double x : z) s += std::exp(x - mx);
    return mx + std::log(s) - z[tokens[T + t + 1]];
  };
  std::vector<float> moved = resid;
  for (int i = 0; i < M * D; ++i) moved[i] += dr[i];
  double truth = 0;
  for (int t = 0; t + 1 < M; ++t) truth += nll(moved, t) - nll(resid, t);
  truth /= M - 1;
  const LogitEstimate e = est.estimate(dr);
  INFO("estimate " << e.dnll << " truth " << truth);
  CHECK(e.dnll == Approx(truth).epsilon(1e-3).margin(1e-9));
  CHECK(est.estimate(std::vector<float>(M * D, 0.0f)).dnll == 0.0);
}

TEST_CASE("estimates: a trace without classifier/cont_residual falls back to the sum, summary.csv", "[fidelity][estimate]") {
  test::TempDir tmp;
  const Model m = random_model(test::small_config(), 3);
  test::TraceSpec spec;
  spec.n_prompts = 1, spec.T = 48, spec.M = 6;
  spec.logit_data = false;
  test::write_model_trace(tmp / "old.h5", m, spec);
  ReplayOptions ro;
  ro.traces = {tmp / "old.h5"};
  ro.policies = {"streamingllm"};
  ro.budgets = BudgetSweep::tokens({8});
  const Replay replay(ro);
  const PromptResult r = replay.replay_prompt(0, 0);
  CHECK(std::isnan(r.est_logit(0, 0)));
  CHECK(r.est_sum(0, 0) > 0);
  CHECK(estimated_delta_nll(r, 0, 0) == r.est_sum(0, 0));
  CHECK(replay.trace(0).read_outputs(0).cont_residual.empty());
  CHECK_FALSE(replay.trace(0).has_classifier());

  const auto run = test::run_cli("run " + (tmp / "old.h5").string() + " -p streamingllm -b 8 -q -o " + (tmp / "r").string());
  REQUIRE(run.status == 0);
  const std::string summary = test::slurp(tmp / "r" / "summary.csv");
  CHECK(summary.rfind("scope,name,policy,budget,n_prompts,budget_tokens,kept_per_head,kept_bytes,out_err,out_err_value,"
                      "recall,dnll_est_sum,dnll_est_logit\n", 0) == 0);
  CHECK(summary.find(",\n") != std::string::npos);  // the logit estimate's field is empty
}

TEST_CASE("kvsim validate: runs, same bytes at 1 and 2 threads, refuses another model", "[fidelity][cli]") {
  test::TempDir tmp;
  // The CLI loads a checkpoint: a random model in llama2.c's layout.
  test::TraceSpec spec;
  spec.n_prompts = 3, spec.T = 64, spec.M = 8, spec.W = 16;
  const test::CheckpointedTrace ct = test::write_checkpointed_trace(tmp.path(), spec);
  const std::string base = "validate " + ct.trace.string() + " --model " + ct.checkpoint.string() +
                           " -p full,streamingllm,snapkv:window=8,random -b 8,16,64 -q";
  const auto r1 = test::run_cli(base + " -t 1 -o " + (tmp / "v1").string());
  INFO(r1.output);
  REQUIRE(r1.status == 0);
  const auto r2 = test::run_cli(base + " -t 2 -o " + (tmp / "v2").string());
  REQUIRE(r2.status == 0);
  for (const char* f : {"pairs.csv", "correlations.csv", "rankings.csv"}) CHECK(test::slurp(tmp / "v1" / f) == test::slurp(tmp / "v2" / f));
  CHECK(r1.output.find("spearman") != std::string::npos);
  const std::string pairs = test::slurp(tmp / "v1" / "pairs.csv");
  CHECK(std::count(pairs.begin(), pairs.end(), '\n') == 1 + 3 * 4 * 3);
  CHECK(pairs.find("a.h5,000000,synthetic,\"full\",8,8,64,0,0,0,0,") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(tmp / "v1.partial"));

  // Another model's weights: refused before any work, nothing written.
  const Model other = random_model(test::small_llama2c_config(), 5);
  test::write_model_trace(tmp / "b.h5", other, spec);
  const auto bad = test::run_cli("validate " + (tmp / "b.h5").string() + " --model " + ct.checkpoint.string() +
                                 " -p streamingllm -b 8 -q -o " + (tmp / "v3").string());
  INFO(bad.output);
  CHECK(bad.status == 1);
  CHECK(bad.output.find("other weights") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(tmp / "v3"));
}
