#include <catch2/catch.hpp>

#include <algorithm>
#include <limits>
#include <numeric>

#include "support/policy_fixture.hpp"

using namespace kvsim;

namespace {

// SnapKV written out directly (docs/methods.md), double precision: [L, Hkv, T].
std::vector<double> reference_snapkv(const PromptTensors& p, int w, int k, bool max_pool) {
  const int T = p.T, W = p.W, H = p.n_heads, G = H / p.n_kv_heads, P = T - w;
  std::vector<double> out(static_cast<std::size_t>(p.n_layers) * p.n_kv_heads * T, 0.0);
  for (int l = 0; l < p.n_layers; ++l)
    for (int h = 0; h < H; ++h) {
      std::vector<double> a(P, 0.0);
      for (int r = W - w; r < W; ++r)
        for (int i = 0; i < P; ++i) a[i] += p.layers[l].window_attn[(static_cast<std::size_t>(h) * W + r) * T + i] / w;
      for (int i = 0; i < P; ++i) {
        double x = max_pool ? -1e300 : 0.0;
        for (int j = i - k / 2; j <= i + k / 2; ++j) {
          if (j < 0 || j >= P) continue;  // zero padding (avg) / ignored (max)
          x = max_pool ? std::max(x, a[j]) : x + a[j] / k;
        }
        out[(static_cast<std::size_t>(l) * p.n_kv_heads + h / G) * T + i] += x / G;
      }
      for (int i = P; i < T; ++i) out[(static_cast<std::size_t>(l) * p.n_kv_heads + h / G) * T + i] = 1e300;
    }
  return out;
}

// Top-B of a reference score row (ties to the later token).
std::set<int> top(const std::vector<double>& s, std::size_t offset, int T, int B) {
  std::vector<int> idx(T);
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) {
    return s[offset + a] > s[offset + b] || (s[offset + a] == s[offset + b] && a > b);
  });
  return {idx.begin(), idx.begin() + B};
}

}  // namespace

TEST_CASE("snapkv pools the window attention over the non-window prefix only", "[policies][snapkv]") {
  test::PromptShape sh;
  sh.L = 1, sh.H = 2, sh.Hkv = 1, sh.T = 8, sh.M = 1, sh.W = 3;
  PromptTensors p = test::random_prompt(sh, 3);
  // window_attn [H=2, W=3, T=8]; window=2 reads rows 1 and 2 (row 0 is outside the window: 9s).
  // Rows 1 and 2 are equal, so their mean a is:
  //   head 0: 0.75 0 0    0 0.375 0     | tokens 6, 7 (window): 0.9  0.1
  //   head 1: 0    0 0.75 0 0     0.375 | 3.0 (would leak into token 5 if the window were pooled)
  // avg pool k=3 over the prefix 0..5 (zero padding, /3):
  //   head 0: 0.25 0.25 0    0.125 0.125 0.125
  //   head 1: 0    0.25 0.25 0.25  0.125 0.125
  //   mean:   0.125 0.25 0.125 0.1875 0.125 0.125   -> order 7 6 | 1 3 | 5 4 2 0 (ties to the later)
  const std::vector<float> a0 = {0.75f, 0, 0, 0, 0.375f, 0, 0.9f, 0.1f}, a1 = {0, 0, 0.75f, 0, 0, 0.375f, 3.0f, 0};
  auto& wa = p.layers[0].window_attn;
  std::fill(wa.begin(), wa.end(), 9.0f);
  for (int r = 1; r < 3; ++r) {
    std::copy(a0.begin(), a0.end(), wa.begin() + r * 8);
    std::copy(a1.begin(), a1.end(), wa.begin() + (3 + r) * 8);
  }
  const auto snap = make_policy("snapkv:window=2,kernel=3");
  CHECK(snap->spec() == "snapkv:window=2,kernel=3,pool=avg,reduce=mean");
  CHECK(snap->needs().window == 2);
  const Selection s = snap->select(p.view(), test::plan_of({1, 3, 4, 5}));
  CHECK(test::kept_set(s, 0, 0, 0) == std::set<int>{7});  // B < window: the most recent
  CHECK(test::kept_set(s, 1, 0, 0) == std::set<int>{1, 6, 7});
  CHECK(test::kept_set(s, 2, 0, 0) == std::set<int>{1, 3, 6, 7});
  CHECK(test::kept_set(s, 3, 0, 0) == std::set<int>{1, 3, 5, 6, 7});
  // kernel 1 (no pooling): mean a = 0.375 0 0.375 0 0.1875 0.1875 -> B=4 keeps 2, 0 and the window.
  const Selection k1 = make_policy("snapkv:window=2,kernel=1")->select(p.view(), test::plan_of({4}));
  CHECK(test::kept_set(k1, 0, 0, 0) == std::set<int>{0, 2, 6, 7});
  // max pool k=3: head 0: 0.75 0.75 0 0.375 0.375 0.375; head 1: 0 0.75 0.75 0.75 0.375 0.375;
  // mean 0.375 0.75 0.375 0.5625 0.375 0.375 -> B=5 keeps 1, 3, 5 and the window.
  const Selection mx = make_policy("snapkv:window=2,kernel=3,pool=max")->select(p.view(), test::plan_of({5}));
  CHECK(test::kept_set(mx, 0, 0, 0) == std::set<int>{1, 3, 5, 6, 7});
}

TEST_CASE("snapkv max pooling and the original settings (window 32, kernel 7, max)", "[policies][snapkv]") {
  // Single head, window 1, kernel 3, prefix a = 0.5 0 0 0.375 0.375 (token 5 is the window):
  //   avg: 1/6 1/6 0.125 0.25 0.25  -> B=3 keeps 4, 3 (+5)
  //   max: 0.5 0.5 0.375 0.375 0.375 -> B=3 keeps 1, 0 (+5)
  test::PromptShape sh;
  sh.L = 1, sh.H = 1, sh.Hkv = 1, sh.T = 6, sh.M = 1, sh.W = 1;
  PromptTensors p = test::random_prompt(sh, 5);
  p.layers[0].window_attn = {0.5f, 0, 0, 0.375f, 0.375f, 0.25f};
  CHECK(test::kept_set(make_policy("snapkv:window=1,kernel=3")->select(p.view(), test::plan_of({3})), 0, 0, 0) ==
        std::set<int>{3, 4, 5});
  CHECK(test::kept_set(make_policy("snapkv:window=1,kernel=3,pool=max")->select(p.view(), test::plan_of({3})), 0, 0, 0) ==
        std::set<int>{0, 1, 5});

  // The original SnapKV settings against a direct computation, and against kvpress's defaults.
  test::PromptShape big;
  big.H = 6, big.Hkv = 2, big.T = 100, big.W = 64, big.M = 2;
  const PromptTensors q = test::random_prompt(big, 8, 2.5f);
  const auto original = make_policy("snapkv:window=32,kernel=7,pool=max");
  CHECK(original->spec() == "snapkv:window=32,kernel=7,pool=max,reduce=mean");
  const auto kvpress = make_policy("snapkv");
  CHECK(kvpress->spec() == "snapkv:window=64,kernel=5,pool=avg,reduce=mean");
  const std::vector<int> budgets = {16, 40, 48, 70};
  const Selection so = original->select(q.view(), test::plan_of(budgets));
  const Selection sk = kvpress->select(q.view(), test::plan_of(budgets));
  const Selection s32 = make_policy("snapkv:window=32")->select(q.view(), test::plan_of(budgets));
  const auto ref_o = reference_snapkv(q, 32, 7, true), ref_k = reference_snapkv(q, 64, 5, false);
  bool differs = false;
  for (std::size_t b = 0; b < budgets.size(); ++b)
    for (int l = 0; l < q.n_layers; ++l)
      for (int g = 0; g < q.n_kv_heads; ++g) {
        const std::size_t off = (static_cast<std::size_t>(l) * q.n_kv_heads + g) * q.T;
        CHECK(test::kept_set(so, b, l, g) == top(ref_o, off, q.T, budgets[b]));
        CHECK(test::kept_set(sk, b, l, g) == top(ref_k, off, q.T, budgets[b]));
        differs = differs || test::kept_set(so, b, l, g) != test::kept_set(s32, b, l, g);
      }
  CHECK(differs);  // kernel 7 max pooling changes the choice, not only the window
  test::check_policy_invariants(*original, q, test::plan_of(budgets), 32);
  test::check_policy_invariants(*kvpress, q, test::plan_of(budgets), 64);
}

TEST_CASE("snapkv invariants, nesting and determinism on GQA shapes", "[policies][snapkv]") {
  for (const auto& sh : test::gqa_shapes()) {
    const PromptTensors p = test::random_prompt(sh, 31 + sh.H);
    const auto plan = test::plan_of({2, 4, 7, 12, sh.T});
    for (const auto& [spec, w] : {test::SpecWindow{"snapkv:window=4", 4}, {"snapkv:window=4,kernel=7,pool=max,reduce=max", 4},
                                  {"snapkv:window=6,reduce=sum", 6}})
      test::check_policy(*make_policy(spec), p, plan, w);
  }
}

TEST_CASE("snapkv refuses bad parameters", "[policies][snapkv]") {
  CHECK_THROWS_WITH(make_policy("snapkv:window=0"), Catch::Contains("window must be >= 1"));
  CHECK_THROWS_WITH(make_policy("snapkv:kernel=4"), Catch::Contains("kernel must be odd"));
  CHECK_THROWS_WITH(make_policy("snapkv:kernel=0"), Catch::Contains("kernel must be >= 1"));
  CHECK_THROWS_WITH(make_policy("snapkv:pool=median"), Catch::Contains("must be one of avg|max"));
  CHECK_THROWS_WITH(make_policy("snapkv:beta=3"), Catch::Contains("unknown parameter 'beta'"));
}
