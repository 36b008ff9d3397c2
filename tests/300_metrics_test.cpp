// Layer metrics against a direct double-precision evaluation of the definitions
// (docs/metrics.md): renormalised softmax over the kept set, W_O-space and value-space errors,
// attention recall.
#include <catch2/catch.hpp>

#include <Eigen/Core>
#include <cmath>
#include <filesystem>

#include "metrics/layer_metrics.hpp"
#include "sim/replay.hpp"
#include "support/policy_fixture.hpp"
#include "support/shared.hpp"
#include "support/trace_fixture.hpp"

using namespace kvsim;

namespace {

struct Expected {
  double out_err = 0, out_err_value = 0, recall = 0;
  double least_share = 1;  // min over (h, t) of the surviving share (z_S + z_cont) / Z
};

// One layer's inputs in double: the continuation attention a[h] [M, N] (causal, rows summing
// to 1), values v[g] [N, d], W_O [D, H*d].
struct LayerInputs {
  std::vector<Eigen::MatrixXd> a, v;
  Eigen::MatrixXd wo;
};

// recorded: the simulator's fp32 attention (cont_attn) as it is; else recomputed in double
// from the queries and keys.
LayerInputs layer_inputs(const PromptTensors& p, int l, bool recorded) {
  const int H = p.n_heads, G = H / p.n_kv_heads, d = p.head_dim, T = p.T, M = p.M, N = T + M;
  const LayerTensors& ly = p.layers[l];
  LayerInputs in;
  for (int g = 0; g < p.n_kv_heads; ++g)
    in.v.push_back(Eigen::Map<const MatrixRM>(ly.values.data() + static_cast<std::size_t>(g) * N * d, N, d).cast<double>());
  for (int h = 0; h < H; ++h) {
    Eigen::MatrixXd a(M, N);
    for (int t = 0; t < M; ++t) {
      if (recorded) {
        for (int j = 0; j < N; ++j) a(t, j) = ly.cont_attn[(static_cast<std::size_t>(h) * M + t) * N + j];
        continue;
      }
      const float* k = ly.keys.data() + static_cast<std::size_t>(h / G) * N * d;
      const auto r = test::reference_attention(ly.q_cont.data() + (static_cast<std::size_t>(h) * M + t) * d, k, N, T + t, d);
      for (int j = 0; j < N; ++j) a(t, j) = r[j];
    }
    in.a.push_back(std::move(a));
  }
  in.wo = Eigen::Map<const MatrixRM>((*p.w_o)[l].data(), p.hidden, H * d).cast<double>();
  return in;
}

// Direct evaluation, from the kept side, of the kept sets kept[g] (prompt tokens) of one layer.
Expected direct(const PromptTensors& p, const LayerInputs& in, const std::vector<std::set<int>>& kept) {
  const int H = p.n_heads, G = H / p.n_kv_heads, d = p.head_dim, T = p.T, M = p.M;
  Eigen::MatrixXd o_full(M, H * d), o_s(M, H * d);
  Expected e;
  for (int h = 0; h < H; ++h) {
    Eigen::MatrixXd w = in.a[h];
    for (int j = 0; j < T; ++j)
      if (!kept[h / G].count(j)) w.col(j).setZero();
    o_full.middleCols(h * d, d) = (in.a[h] * in.v[h / G]).array().colwise() / in.a[h].rowwise().sum().array();
    o_s.middleCols(h * d, d) = (w * in.v[h / G]).array().colwise() / w.rowwise().sum().array();
    e.recall += (w.leftCols(T).rowwise().sum().array() / in.a[h].leftCols(T).rowwise().sum().array()).sum();
    e.least_share = std::min(e.least_share, (w.rowwise().sum().array() / in.a[h].rowwise().sum().array()).minCoeff());
  }
  const Eigen::MatrixXd delta = o_s - o_full;
  const Eigen::MatrixXd w_delta = delta * in.wo.transpose(), w_full = o_full * in.wo.transpose();
  for (int t = 0; t < M; ++t) {
    e.out_err += w_delta.row(t).norm() / w_full.row(t).norm() / M;
    e.out_err_value += delta.row(t).norm() / o_full.row(t).norm() / M;
  }
  e.recall /= static_cast<double>(H) * M;
  return e;
}

Expected direct(const PromptTensors& p, int l, const std::vector<std::set<int>>& kept) {
  return direct(p, layer_inputs(p, l, false), kept);
}

}  // namespace

TEST_CASE("layer metrics equal the definitions for every budget of a sweep", "[metrics]") {
  test::PromptShape s;
  s.H = 6, s.Hkv = 2, s.T = 40, s.M = 5, s.D = 20;
  const PromptTensors p = test::random_prompt(s, 11);
  const PromptView v = p.view();
  // Budgets on both sides of T/2 (front and back sums) and the whole prompt.
  const auto plan = test::plan_of({1, 7, 20, 21, 33, 40});
  for (const char* spec : {"random", "knorm", "streamingllm:sink=2"}) {
    const Selection sel = make_policy(spec)->select(v, plan);
    for (int l = 0; l < s.L; ++l) {
      const LayerReference ref = layer_reference(v, l);
      std::vector<LayerMetrics> m(plan.per_head.size());
      layer_metrics(v, ref, sel, m);
      for (std::size_t b = 0; b < plan.per_head.size(); ++b) {
        std::vector<std::set<int>> kept;
        for (int g = 0; g < s.Hkv; ++g) kept.push_back(test::kept_set(sel, static_cast<int>(b), l, g));
        const Expected e = direct(p, l, kept);
        INFO(spec << " layer " << l << " budget " << plan.per_head[b]);
        CHECK(m[b].out_err == Approx(e.out_err).epsilon(2e-4).margin(1e-6));
        CHECK(m[b].out_err_value == Approx(e.out_err_value).epsilon(2e-4).margin(1e-6));
        CHECK(m[b].recall == Approx(e.recall).epsilon(1e-5));
        CHECK(m[b].kept == static_cast<long>(plan.per_head[b]) * s.Hkv);
      }
    }
  }
}

TEST_CASE("keeping everything gives exactly zero error and recall 1", "[metrics]") {
  test::PromptShape s;
  s.T = 30;
  const PromptTensors p = test::random_prompt(s, 12);
  const PromptView v = p.view();
  for (const char* spec : {"full", "random", "knorm"}) {
    const Selection sel = make_policy(spec)->select(v, test::plan_of({30}));
    for (int l = 0; l < s.L; ++l) {
      std::vector<LayerMetrics> m(1);
      layer_metrics(v, layer_reference(v, l), sel, m);
      CHECK(m[0].out_err == 0.0);
      CHECK(m[0].out_err_value == 0.0);
      CHECK(m[0].recall == Approx(1.0).epsilon(1e-12));
    }
  }
}

TEST_CASE("recall is non-decreasing in the budget for nested kept sets", "[metrics]") {
  test::PromptShape s;
  s.T = 64, s.M = 8;
  const PromptTensors p = test::random_prompt(s, 13, 3.0f);
  const PromptView v = p.view();
  std::vector<int> budgets;
  for (int b = 1; b <= 64; ++b) budgets.push_back(b);
  const auto plan = test::plan_of(budgets);
  for (const char* spec : {"random", "knorm", "streamingllm"}) {
    const Selection sel = make_policy(spec)->select(v, plan);
    for (int l = 0; l < s.L; ++l) {
      std::vector<LayerMetrics> m(budgets.size());
      layer_metrics(v, layer_reference(v, l), sel, m);
      for (std::size_t b = 1; b < budgets.size(); ++b) CHECK(m[b].recall >= m[b - 1].recall);
      CHECK(m.back().out_err == 0.0);
    }
  }
}

TEST_CASE("layer metrics stay accurate when the kept set holds almost no attention", "[metrics]") {
  // One layer, T = 32, M = 3, 2 query heads on 1 KV head. The order is 0, 1, …, T−1; at
  // every budget the kept tokens plus the continuation hold `share` of each query's mass, the
  // dropped tokens the rest: the regime where the dropped-side sums cancel (issue 15).
  test::PromptShape s;
  s.L = 1, s.H = 2, s.Hkv = 1, s.d = 8, s.D = 12, s.T = 32, s.M = 3;
  const std::vector<int> budgets = {8, 16, 17, 24, 31};
  for (const double share : {1e-9, 1e-7, 1e-5}) {
    for (std::size_t b = 0; b < budgets.size(); ++b) {
      PromptTensors p = test::random_prompt(s, 21);
      const int N = s.T + s.M, k = budgets[b];
      Rng rng(22 + b);
      auto& a = p.layers[0].cont_attn;
      for (int h = 0; h < s.H; ++h)
        for (int t = 0; t < s.M; ++t) {
          float* row = a.data() + (static_cast<std::size_t>(h) * s.M + t) * N;
          double kept = 0, dropped = 0;
          for (int j = 0; j <= s.T + t; ++j) (j < k || j >= s.T ? kept : dropped) += row[j] = static_cast<float>(0.1 + rng.uniform());
          for (int j = 0; j <= s.T + t; ++j)
            row[j] = static_cast<float>(j < k || j >= s.T ? row[j] * share / kept : row[j] * (1 - share) / dropped);
          for (int j = s.T + t + 1; j < N; ++j) row[j] = 0.0f;
        }
      const PromptView v = p.view();
      Selection sel(1, 1, 1, 1, s.T);
      for (int i = 0; i < s.T; ++i) sel.order(0, 0, 0)[i] = i;
      sel.count(0, 0, 0) = k;
      std::vector<LayerMetrics> m(1);
      layer_metrics(v, layer_reference(v, 0), sel, m);
      std::set<int> kept_set;
      for (int i = 0; i < k; ++i) kept_set.insert(i);
      const Expected e = direct(p, layer_inputs(p, 0, true), {kept_set});
      INFO("share " << share << " kept " << k << ": out_err " << m[0].out_err << " vs " << e.out_err);
      CHECK(std::isfinite(m[0].out_err));
      CHECK(m[0].out_err == Approx(e.out_err).epsilon(1e-5));
      CHECK(m[0].out_err_value == Approx(e.out_err_value).epsilon(1e-5));
      CHECK(m[0].recall == Approx(e.recall).epsilon(1e-5));
    }
  }
}

TEST_CASE("stories260K: every policy at budgets T/2+1 … T-1 agrees with the kept-side computation", "[metrics][shared]") {
  KVSIM_REQUIRE_SHARED(test::shared_path("models/stories260K/stories260K.bin"));
  test::TempDir tmp;
  test::write_stories260k_trace(tmp / "s.h5", test::kStoriesTinyShareChunks);
  const TraceReader reader(tmp / "s.h5");
  std::vector<std::string> specs;
  PolicyNeeds needs;
  for (const auto& info : policy_registry()) {
    specs.push_back(info.wraps ? info.name + "(snapkv)" : info.name);
    needs = merge(needs, make_policy(specs.back())->needs());
  }
  const int T = 256;
  std::vector<int> budgets;
  for (int b = T / 2 + 1; b < T; ++b) budgets.push_back(b);
  const auto plan = test::plan_of(budgets);
  double worst = 0, least_share = 1;
  for (std::size_t q = 0; q < reader.prompts().size(); ++q) {
    const PromptTensors p = load_prompt(reader, q, needs, read_all_w_o(reader), 1);
    REQUIRE(p.T == T);
    const PromptView v = p.view();
    for (int l = 0; l < p.n_layers; ++l) {
      const LayerReference ref = layer_reference(v, l);
      const LayerInputs in = layer_inputs(p, l, true);
      for (const auto& spec : specs) {
        const Selection sel = make_policy(spec)->select(v, plan);
        std::vector<LayerMetrics> m(budgets.size());
        layer_metrics(v, ref, sel, m);
        for (std::size_t b = 0; b < budgets.size(); ++b) {
          std::vector<std::set<int>> kept;
          for (int g = 0; g < p.n_kv_heads; ++g) kept.push_back(test::kept_set(sel, static_cast<int>(b), l, g));
          const Expected e = direct(p, in, kept);
          INFO("prompt " << p.id << " layer " << l << " " << spec << " budget " << budgets[b]);
          REQUIRE(std::isfinite(m[b].out_err));
          REQUIRE(std::isfinite(m[b].out_err_value));
          CHECK(m[b].out_err == Approx(e.out_err).epsilon(1e-5).margin(1e-12));
          CHECK(m[b].out_err_value == Approx(e.out_err_value).epsilon(1e-5).margin(1e-12));
          CHECK(m[b].recall == Approx(e.recall).epsilon(1e-5));
          // (Below ~1e-9 the double reference itself, a difference o_S − o, is the less exact.)
          if (e.out_err > 1e-9) worst = std::max(worst, std::abs(m[b].out_err / e.out_err - 1));
          least_share = std::min(least_share, e.least_share);
        }
      }
    }
  }
  WARN("largest relative deviation of out_err (> 1e-9) from the kept-side double computation: " << worst
       << "; least surviving share " << least_share);
  CHECK(least_share < 1e-20);  // the chunks do reach the regime of issue 15
}

TEST_CASE("stacked W_O projection of every policy equals the per-policy and kept-side computations", "[metrics]") {
  // layer_metrics_stacked (one GEMM per layer for all policies, the replay's path) against
  // layer_metrics per policy (one GEMM per policy, the path before issue 14) and the direct
  // kept-side evaluation in double on the same recorded attention: within 1e-5 relative.
  test::PromptShape s;
  s.L = 2, s.H = 8, s.Hkv = 2, s.d = 16, s.D = 96, s.T = 160, s.M = 6, s.W = 64;
  const auto plan = test::plan_of({3, 17, 80, 81, 120, 159, 160});
  const int B = static_cast<int>(plan.per_head.size());
  std::vector<std::string> specs;
  for (const auto& info : policy_registry()) specs.push_back(info.wraps ? info.name + "(snapkv)" : info.name);
  for (std::uint64_t seed : {21u, 22u, 23u}) {
    const PromptTensors p = test::random_prompt(s, seed, seed == 23 ? 4.0f : 1.5f);
    const PromptView v = p.view();
    std::vector<Selection> sels;
    for (const auto& spec : specs) sels.push_back(make_policy(spec)->select(v, plan));
    std::vector<const Selection*> stack;
    for (const auto& sel : sels) stack.push_back(&sel);
    const std::size_t md = static_cast<std::size_t>(s.M) * s.D, P = sels.size();
    for (int l = 0; l < s.L; ++l) {
      const LayerReference ref = layer_reference(v, l);
      const LayerInputs in = layer_inputs(p, l, true);
      std::vector<LayerMetrics> stacked(P * B);
      std::vector<float> stacked_wo(P * B * md);
      layer_metrics_stacked(v, ref, stack, stacked, stacked_wo);
      for (std::size_t k = 0; k < P; ++k) {
        std::vector<LayerMetrics> one(B);
        std::vector<float> one_wo(B * md);
        layer_metrics(v, ref, sels[k], one, one_wo);
        for (int b = 0; b < B; ++b) {
          const LayerMetrics& m = stacked[k * B + b];
          std::vector<std::set<int>> kept;
          for (int g = 0; g < s.Hkv; ++g) kept.push_back(test::kept_set(sels[k], b, l, g));
          const Expected e = direct(p, in, kept);
          INFO("seed " << seed << " layer " << l << " " << specs[k] << " budget " << plan.per_head[b]);
          CHECK(m.out_err == Approx(one[b].out_err).epsilon(1e-5).margin(1e-12));
          CHECK(m.out_err_value == one[b].out_err_value);  // no GEMM in between: the same bytes
          CHECK(m.recall == one[b].recall);
          CHECK(m.kept == one[b].kept);
          CHECK(m.out_err == Approx(e.out_err).epsilon(1e-5).margin(1e-9));
          CHECK(m.out_err_value == Approx(e.out_err_value).epsilon(1e-5).margin(1e-9));
          CHECK(m.recall == Approx(e.recall).epsilon(1e-6));
          double worst = 0, scale = 0;
          for (std::size_t i = 0; i < md; ++i) {
            scale = std::max(scale, static_cast<double>(std::abs(one_wo[b * md + i])));
            worst = std::max(worst, static_cast<double>(std::abs(stacked_wo[(k * B + b) * md + i] - one_wo[b * md + i])));
          }
          CHECK(worst <= 1e-5 * scale);
        }
      }
    }
  }
}

TEST_CASE("stacked layer metrics compute each distinct kept set once, and keeping everything costs nothing", "[metrics]") {
  // δ depends on the kept set only: a point whose kept sets equal an earlier point's on every KV
  // head shares its rows (no δ sums, no GEMM rows), one that keeps every token has δ = 0 and
  // needs none. The flops returned count what was computed; the values are the same bytes.
  test::PromptShape s;
  s.L = 2, s.H = 8, s.Hkv = 2, s.d = 16, s.D = 96, s.T = 160, s.M = 6, s.W = 64;
  const auto plan = test::plan_of({3, 17, 80, 120, 160});
  const int B = static_cast<int>(plan.per_head.size());
  const PromptTensors p = test::random_prompt(s, 31, 2.0f);
  const PromptView v = p.view();
  const Selection snap = make_policy("snapkv")->select(v, plan), h2o = make_policy("h2o")->select(v, plan);
  const Selection full = make_policy("full")->select(v, plan);
  const std::size_t md = static_cast<std::size_t>(s.M) * s.D;
  for (int l = 0; l < s.L; ++l) {
    const LayerReference ref = layer_reference(v, l);
    auto run = [&](std::vector<const Selection*> stack, std::vector<LayerMetrics>& m, std::vector<float>& wo) {
      m.assign(stack.size() * B, {});
      wo.assign(stack.size() * B * md, -1.0f);
      return layer_metrics_stacked(v, ref, stack, m, wo);
    };
    std::vector<LayerMetrics> one, two, three, f;
    std::vector<float> one_wo, two_wo, three_wo, f_wo;
    const double f1 = run({&snap}, one, one_wo), f2 = run({&snap, &snap}, two, two_wo);
    const double f3 = run({&snap, &h2o, &snap}, three, three_wo), f0 = run({&full}, f, f_wo);
    CHECK(f2 == f1);  // the copy costs nothing
    std::vector<LayerMetrics> sh;
    std::vector<float> sh_wo;
    const double f_sh = run({&snap, &h2o}, sh, sh_wo), f_h2o = run({&h2o}, sh, sh_wo);
    CHECK(f3 == f_sh);  // the second snapkv is free
    CHECK(f_sh <= f1 + f_h2o);  // and h2o's points that keep snapkv's sets too (the window alone at small budgets)
    for (int b = 0; b < B; ++b) {
      INFO("layer " << l << " budget " << plan.per_head[b]);
      for (const auto* m : {&two[B + b], &three[2 * B + b]}) {
        CHECK(m->out_err == one[b].out_err);
        CHECK(m->out_err_value == one[b].out_err_value);
        CHECK(m->recall == one[b].recall);
        CHECK(m->kept == one[b].kept);
      }
      CHECK(std::equal(two_wo.begin() + (B + b) * md, two_wo.begin() + (B + b + 1) * md, one_wo.begin() + b * md));
      CHECK(std::equal(three_wo.begin() + (2 * B + b) * md, three_wo.begin() + (2 * B + b + 1) * md, one_wo.begin() + b * md));
      // full: every prompt token kept, at every budget.
      CHECK(f[b].out_err == 0.0);
      CHECK(f[b].out_err_value == 0.0);
      CHECK(f[b].recall == 1.0);
      CHECK(f[b].kept == static_cast<long>(s.Hkv) * s.T);
      CHECK(std::all_of(f_wo.begin() + b * md, f_wo.begin() + (b + 1) * md, [](float x) { return x == 0.0f; }));
    }
    // Budget T keeps everything for snapkv too: no δ rows, zero error.
    CHECK(one[B - 1].out_err == 0.0);
    CHECK(f0 == 0.0);  // nothing computed for full (the reference is computed once per layer, elsewhere)
  }
}
