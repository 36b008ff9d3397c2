#include <catch2/catch.hpp>

#include <cmath>

#include "support/policy_fixture.hpp"

using namespace kvsim;

namespace {

// A prompt whose window attention, values and W_O are set by hand: L layers, H = Hkv heads
// (G = 1), d = D = 1, window rows [H, 1, T] per layer, values 1 everywhere, W_O = [1, 1, ...].
PromptTensors hand_prompt(int L, int H, int T, const std::vector<std::vector<float>>& rows_per_layer) {
  test::PromptShape sh;
  sh.L = L, sh.H = H, sh.Hkv = H, sh.d = 1, sh.D = 1, sh.T = T, sh.M = 1, sh.W = 1;
  PromptTensors p = test::random_prompt(sh, 11);
  auto w_o = std::make_shared<std::vector<std::vector<float>>>();
  for (int l = 0; l < L; ++l) {
    p.layers[l].window_attn = rows_per_layer[l];  // [H, W=1, T]
    std::fill(p.layers[l].values.begin(), p.layers[l].values.end(), 1.0f);
    w_o->push_back(std::vector<float>(H, 1.0f));  // [D=1, H*d]
  }
  p.w_o = w_o;
  return p;
}

}  // namespace

TEST_CASE("laprox: model-wide top-K gives uneven per-head counts (hand-checked)", "[policies][laprox]") {
  // L = 2, H = Hkv = 2, T = 5, window w = 1 (token 4 protected), no pooling. With values 1 and
  // W_O = 1, ‖v W_O^h‖ = 1, so p[h, i] = |A_h[T−1, i]| for the prefix i = 0..3.
  //   layer 0: head 0 A = .30 .20 .10 .00 (.40)   head 1 A = .05 .05 .05 .05 (.80)   prefix sum 0.8
  //   layer 1: head 0 A = .10 .10 .10 .10 (.60)   head 1 A = .20 .20 .10 .10 (.40)   prefix sum 1.0
  // Normalised per layer:
  //   L0h0 .375 .25 .125 0   L0h1 .0625 x4   L1h0 .1 x4   L1h1 .2 .2 .1 .1
  // Global order (score, later token, lower row): L0h0t0 .375, L0h0t1 .25, L1h1t1 .2, L1h1t0 .2,
  //   L0h0t2 .125, L1h0t3 .1, L1h1t3 .1, L1h0t2 .1, L1h1t2 .1, L1h0t1, L1h0t0, L0h1 ..., L0h0t3
  // B = 2: K = L·Hkv·(B − w) = 4 → the first four: counts L0h0 1+2, L0h1 1, L1h0 1, L1h1 1+2 (= 8)
  // B = 3: K = 8 → + L0h0t2, L1h0t3, L1h1t3, L1h0t2: counts 4, 1, 3, 4 (= 12)
  const PromptTensors p = hand_prompt(2, 2, 5,
                                      {{0.30f, 0.20f, 0.10f, 0.00f, 0.40f, 0.05f, 0.05f, 0.05f, 0.05f, 0.80f},
                                       {0.10f, 0.10f, 0.10f, 0.10f, 0.60f, 0.20f, 0.20f, 0.10f, 0.10f, 0.40f}});
  const auto pol = make_policy("laprox:window=1,pool_at=none");
  const Selection s = pol->select(p.view(), test::plan_of({2, 3}));
  CHECK(s.count(0, 0, 0) == 3);
  CHECK(s.count(0, 0, 1) == 1);
  CHECK(s.count(0, 1, 0) == 1);
  CHECK(s.count(0, 1, 1) == 3);
  CHECK(test::kept_set(s, 0, 0, 0) == std::set<int>{0, 1, 4});
  CHECK(test::kept_set(s, 0, 1, 1) == std::set<int>{0, 1, 4});
  CHECK(s.count(1, 0, 0) == 4);
  CHECK(s.count(1, 0, 1) == 1);
  CHECK(s.count(1, 1, 0) == 3);
  CHECK(s.count(1, 1, 1) == 4);
  CHECK(test::kept_set(s, 1, 1, 0) == std::set<int>{2, 3, 4});
  CHECK(test::kept_set(s, 1, 0, 1) == std::set<int>{4});
  CHECK(s.total_kept(0) == 8);
  CHECK(s.total_kept(1) == 12);
  // B <= w: the most recent B of every head.
  const Selection s1 = pol->select(p.view(), test::plan_of({1}));
  for (int l = 0; l < 2; ++l)
    for (int g = 0; g < 2; ++g) CHECK(test::kept_set(s1, 0, l, g) == std::set<int>{4});

  // Without normalisation layer 1's raw scores (.2) beat layer 0's .05 and tie .2 with L0h0t1:
  // raw order L0h0t0 .3, then .2: L0h0t1, L1h1t1 (token 1, lower row first), L1h1t0 → same
  // B = 2 set here; at B = 3 the next four are .1s: L0h0t2 (token 2)… ties by token then row:
  // L1h0t3, L1h1t3, L0h0t2, L1h0t2 → counts L0h0 4, L0h1 1, L1h0 3, L1h1 4 (the same counts).
  const Selection raw = make_policy("laprox:window=1,pool_at=none,normalize=0")->select(p.view(), test::plan_of({2, 3}));
  CHECK(raw.count(1, 0, 0) == 4);
  CHECK(raw.count(1, 1, 0) == 3);
}

TEST_CASE("laprox: sinks come off every (layer, KV head)'s budget before the model-wide top-K", "[policies][laprox][sink]") {
  // L = 2, H = Hkv = 2, T = 6, window 1 (token 5), no pooling; tokens 0, 1 get no attention.
  //   layer 0: h0 0 0 .30 .20 .10 (.40)   h1 0 0 .05 .13 .22 (.60)   prefix sum 1
  //   layer 1: h0 0 0 .12 .08 .04 (.76)   h1 0 0 .25 .35 .16 (.24)   prefix sum 1
  // Global order: L1h1t3 .35, L0h0t2 .30, L1h1t2 .25, L0h1t4 .22, L0h0t3 .20, L1h1t4 .16,
  //   L0h1t3 .13, L1h0t2 .12, ... then the zeros of tokens 0, 1.
  // sink 0, B=3: K = 4·(3 − 1) = 8: L0h0 {2,3,5}, L0h1 {3,4,5}, L1h0 {2,5}, L1h1 {2,3,4,5}.
  // sink 2: 3 protected per (l, g); B=3: K = 0; B=4: K = 4·(4 − 3) = 4, the first four above.
  const PromptTensors p = hand_prompt(2, 2, 6,
                                      {{0, 0, 0.30f, 0.20f, 0.10f, 0.40f, 0, 0, 0.05f, 0.13f, 0.22f, 0.60f},
                                       {0, 0, 0.12f, 0.08f, 0.04f, 0.76f, 0, 0, 0.25f, 0.35f, 0.16f, 0.24f}});
  const Selection off = make_policy("laprox:window=1,pool_at=none")->select(p.view(), test::plan_of({3}));
  CHECK(test::kept_set(off, 0, 0, 0) == std::set<int>{2, 3, 5});
  CHECK(test::kept_set(off, 0, 0, 1) == std::set<int>{3, 4, 5});
  CHECK(test::kept_set(off, 0, 1, 0) == std::set<int>{2, 5});
  CHECK(test::kept_set(off, 0, 1, 1) == std::set<int>{2, 3, 4, 5});
  const Selection on = make_policy("laprox:window=1,pool_at=none,sink=2")->select(p.view(), test::plan_of({2, 3, 4}));
  for (int l = 0; l < 2; ++l)
    for (int g = 0; g < 2; ++g) {
      CHECK(test::kept_set(on, 0, l, g) == std::set<int>{0, 1});  // B < sink + window: the sinks
      CHECK(test::kept_set(on, 1, l, g) == std::set<int>{0, 1, 5});
    }
  CHECK(test::kept_set(on, 2, 0, 0) == std::set<int>{0, 1, 2, 5});
  CHECK(test::kept_set(on, 2, 0, 1) == std::set<int>{0, 1, 4, 5});
  CHECK(test::kept_set(on, 2, 1, 0) == std::set<int>{0, 1, 5});
  CHECK(test::kept_set(on, 2, 1, 1) == std::set<int>{0, 1, 2, 3, 5});
  for (int b = 0; b < 3; ++b) CHECK(on.total_kept(b) == (b + 2) * 4L);
}

TEST_CASE("laprox: p = ||A_h[W rows, i]|| * ||v_i W_O^h|| with the Gram matrix (direct computation)", "[policies][laprox]") {
  // One layer, one head, random tensors: the single (layer, KV head) keeps the top B − w of
  // the direct product (pool none, G = 1: reduce and normalisation do not change the order).
  test::PromptShape sh;
  sh.L = 1, sh.H = 1, sh.Hkv = 1, sh.d = 4, sh.D = 6, sh.T = 20, sh.M = 2, sh.W = 5;
  const PromptTensors p = test::random_prompt(sh, 5);
  const int w = 3, T = sh.T, P = T - w, N = T + sh.M;
  std::vector<double> ref(P);
  const auto& ly = p.layers[0];
  for (int i = 0; i < P; ++i) {
    double a2 = 0;
    for (int r = sh.W - w; r < sh.W; ++r) a2 += std::pow(ly.window_attn[static_cast<std::size_t>(r) * T + i], 2);
    double v2 = 0;
    for (int e = 0; e < sh.D; ++e) {
      double x = 0;
      for (int k = 0; k < sh.d; ++k) x += (*p.w_o)[0][static_cast<std::size_t>(e) * sh.d + k] * ly.values[static_cast<std::size_t>(i) * sh.d + k];
      v2 += x * x;
    }
    (void)N;
    ref[i] = std::sqrt(a2) * std::sqrt(v2);
  }
  std::vector<int> idx(P);
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return ref[a] > ref[b] || (ref[a] == ref[b] && a > b); });
  const Selection s = make_policy("laprox:window=3,pool_at=none")->select(p.view(), test::plan_of({8}));
  std::set<int> expect(idx.begin(), idx.begin() + 5);
  for (int i = P; i < T; ++i) expect.insert(i);
  CHECK(test::kept_set(s, 0, 0, 0) == expect);
}

TEST_CASE("laprox: invariants, exact total, nesting, thread independence on GQA shapes", "[policies][laprox]") {
  for (const auto& sh : test::gqa_shapes()) {
    const PromptTensors p = test::random_prompt(sh, 21);
    const int w = std::min(4, sh.W);
    for (const char* opts : {"", ",reduce=sum", ",reduce=attn_first", ",pool_at=attention", ",pool_at=none", ",normalize=0"}) {
      const std::string spec = "laprox:window=" + std::to_string(w) + opts;
      INFO(spec << " T=" << sh.T << " H=" << sh.H << " Hkv=" << sh.Hkv);
      const auto pol = make_policy(spec);
      const auto plan = test::plan_of({2, 5, 8, 12, sh.T});
      const Selection s = test::check_policy(*pol, p, plan, w, true);
      for (int b = 0; b < s.n_budgets(); ++b)
        CHECK(s.total_kept(b) == static_cast<long>(plan.per_head[b]) * sh.L * sh.Hkv);  // model-wide total is exact
    }
    // mean and sum give the same order.
    const auto mean = make_policy("laprox:window=" + std::to_string(w))->select(p.view(), test::plan_of({6}));
    const auto sum = make_policy("laprox:window=" + std::to_string(w) + ",reduce=sum")->select(p.view(), test::plan_of({6}));
    for (int l = 0; l < sh.L; ++l)
      for (int g = 0; g < sh.Hkv; ++g) CHECK(test::kept_set(mean, 0, l, g) == test::kept_set(sum, 0, l, g));
  }
}

TEST_CASE("laprox: counts are uneven on real-shaped random prompts, parameters refused", "[policies][laprox]") {
  test::PromptShape sh;
  sh.L = 3, sh.H = 4, sh.Hkv = 2, sh.T = 40, sh.W = 8;
  const PromptTensors p = test::random_prompt(sh, 2, 3.0f);
  const Selection s = make_policy("laprox:window=4")->select(p.view(), test::plan_of({10}));
  std::set<int> counts;
  for (int l = 0; l < sh.L; ++l)
    for (int g = 0; g < sh.Hkv; ++g) counts.insert(s.count(0, l, g));
  CHECK(counts.size() > 1);
  CHECK(make_policy("laprox")->needs().w_o);
  CHECK(make_policy("laprox")->needs().window == 32);
  CHECK_THROWS_AS(make_policy("laprox:kernel=4"), InputError);
  CHECK_THROWS_AS(make_policy("laprox:reduce=max"), InputError);
  CHECK_THROWS_AS(make_policy("laprox:pool_at=keys"), InputError);
  CHECK_THROWS_AS(make_policy("laprox:normalize=2"), InputError);
  CHECK_THROWS_AS(make_policy("laprox:window=0"), InputError);
  CHECK(make_policy("laprox")->spec() == "laprox:window=32,kernel=7,reduce=mean,pool_at=product,normalize=1");
}
