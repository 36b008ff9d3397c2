// Layer metrics against a direct double-precision evaluation of the definitions
// (DESIGN.md §5): renormalised softmax over the kept set, W_O-space and value-space errors,
// attention recall.
#include <catch2/catch.hpp>

#include <cmath>

#include "metrics/layer_metrics.hpp"
#include "support/policy_fixture.hpp"

using namespace kvsim;

namespace {

struct Expected {
  double out_err = 0, out_err_value = 0, recall = 0;
};

// Direct evaluation for the kept sets kept[g] (prompt tokens) of one layer.
Expected direct(const PromptTensors& p, int l, const std::vector<std::set<int>>& kept) {
  const int H = p.n_heads, G = H / p.n_kv_heads, d = p.head_dim, D = p.hidden, T = p.T, M = p.M, N = T + M;
  const LayerTensors& ly = p.layers[l];
  const std::vector<float>& wo = (*p.w_o)[l];
  Expected e;
  for (int t = 0; t < M; ++t) {
    std::vector<double> o_full(H * d, 0.0), o_s(H * d, 0.0);
    for (int h = 0; h < H; ++h) {
      const int g = h / G;
      const float* k = ly.keys.data() + static_cast<std::size_t>(g) * N * d;
      const auto a = test::reference_attention(ly.q_cont.data() + (static_cast<std::size_t>(h) * M + t) * d, k, N, T + t, d);
      double z_all = 0, z_s = 0, z_p = 0, z_sp = 0;
      for (int j = 0; j <= T + t; ++j) {
        const bool in_s = j >= T || kept[g].count(j);
        z_all += a[j];
        if (in_s) z_s += a[j];
        if (j < T) z_p += a[j], z_sp += in_s ? a[j] : 0.0;
        for (int c = 0; c < d; ++c) {
          const double v = ly.values[(static_cast<std::size_t>(g) * N + j) * d + c];
          o_full[h * d + c] += a[j] * v;
          if (in_s) o_s[h * d + c] += a[j] * v;
        }
      }
      for (int c = 0; c < d; ++c) o_full[h * d + c] /= z_all, o_s[h * d + c] /= z_s;
      e.recall += z_sp / z_p;
    }
    double n_wd = 0, n_wo = 0, n_d = 0, n_o = 0;
    for (int r = 0; r < D; ++r) {
      double wd = 0, wf = 0;
      for (int c = 0; c < H * d; ++c) {
        wd += wo[static_cast<std::size_t>(r) * H * d + c] * (o_s[c] - o_full[c]);
        wf += wo[static_cast<std::size_t>(r) * H * d + c] * o_full[c];
      }
      n_wd += wd * wd, n_wo += wf * wf;
    }
    for (int c = 0; c < H * d; ++c) n_d += (o_s[c] - o_full[c]) * (o_s[c] - o_full[c]), n_o += o_full[c] * o_full[c];
    e.out_err += std::sqrt(n_wd / n_wo) / M;
    e.out_err_value += std::sqrt(n_d / n_o) / M;
  }
  e.recall /= static_cast<double>(H) * M;
  return e;
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
