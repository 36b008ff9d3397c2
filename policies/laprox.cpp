#include "policies/laprox.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <tbb/parallel_for.h>

#include "core/matrix.hpp"
#include "policies/score_utils.hpp"

namespace kvsim {

namespace {

enum class LaproxReduce { kMean, kSum, kAttnFirst };
enum class PoolAt { kProduct, kAttention, kNone };

struct LaproxParams {
  int window = 32;
  int sink = 0;  // protected first tokens (score_utils.hpp)
  int kernel = 7;
  LaproxReduce reduce = LaproxReduce::kMean;
  PoolAt pool_at = PoolAt::kProduct;
  bool normalize = true;
};

// ‖A[last w rows, i]‖₂ for i < P, of one head's (or group-mean) window attention rows.
// rows: the `w` rows [w, T] of window_attn for that head; out [P].
void attention_column_norms(const std::vector<const float*>& heads, int w, int T, int P, std::vector<float>& out) {
  out.assign(P, 0.0f);
  const double inv_heads = 1.0 / static_cast<double>(heads.size());
  std::vector<double> sq(P, 0.0);
  for (int r = 0; r < w; ++r)
    for (int i = 0; i < P; ++i) {
      double a = 0;
      for (const float* h : heads) a += h[static_cast<std::size_t>(r) * T + i];
      a *= inv_heads;  // group mean (one head: itself)
      sq[i] += a * a;
    }
  for (int i = 0; i < P; ++i) out[i] = static_cast<float>(std::sqrt(sq[i]));
}

// ‖v_i Wᵀ‖₂ = sqrt(vᵀ (WᵀW) v) for the first P values of one KV head, W = the sum of the given
// D×d blocks of w_o; WᵀW from the simulator's shared grams for one head (ly.w_o_gram), else
// computed here (the same product). out [P].
void projected_value_norms(const LayerData& ly, const std::vector<int>& heads, int g, int H, int d, int D, int N,
                           int P, std::vector<float>& out) {
  MatrixRM gram(d, d);  // [d, d]
  if (heads.size() == 1 && !ly.w_o_gram.empty()) {
    KVSIM_CHECK(ly.w_o_gram.size() == static_cast<std::size_t>(H) * d * d, "laprox: shared W_O grams' shape");
    gram = ConstMapMatrixRM(ly.w_o_gram.data() + static_cast<std::size_t>(heads[0]) * d * d, d, d);
  } else {
    head_gram(ly.w_o, heads, H, d, D, std::span(gram.data(), static_cast<std::size_t>(d) * d));
  }
  const ConstMapMatrixRM vals(ly.values.data() + static_cast<std::size_t>(g) * N * d, P, d);  // [P, d]
  const MatrixRM vg = vals * gram;                                                          // [P, d]
  out.resize(P);
  for (int i = 0; i < P; ++i) {
    double s = 0;
    for (int e = 0; e < d; ++e) s += static_cast<double>(vg(i, e)) * vals(i, e);
    out[i] = static_cast<float>(std::sqrt(std::max(0.0, s)));
  }
}

class LaproxPolicy final : public Policy {
 public:
  LaproxPolicy(std::string spec, LaproxParams params) : Policy(std::move(spec)), p_(params) {}
  PolicyNeeds needs() const override {
    return {.window = p_.window, .w_o = true, .w_o_gram = p_.reduce != LaproxReduce::kAttnFirst};
  }

  Selection select(const PromptView& v, const BudgetPlan& plan) const override {
    const int L = v.n_layers, Hkv = v.n_kv_heads, T = v.T, nb = static_cast<int>(plan.per_head.size());
    // Protected per (l, g): the sinks [0, first) and the window [P, T); the tokens between compete.
    const int w = std::min(p_.window, T), P = T - w, first = std::min(p_.sink, P), n_protected = first + w;
    std::vector<float> scores(static_cast<std::size_t>(L) * Hkv * T);  // [L, Hkv, T]
    tbb::parallel_for(0, L, [&](int l) { score_layer(v, l, w, first, scores); });
    Selection s(nb, 1, L, Hkv, T);
    order_rows(v, scores, s, p_.sink);

    // The global order of every competing (l, g, first <= i < P): descending score, then the
    // later token, then the lower (l, g) row. Restricted to one row it is that row's
    // order_by_score after the protected tokens.
    const int n_free = P - first;
    std::vector<std::int64_t> entries(static_cast<std::size_t>(L) * Hkv * n_free);
    for (int r = 0; r < L * Hkv; ++r)
      for (int i = first; i < P; ++i)
        entries[static_cast<std::size_t>(r) * n_free + (i - first)] = static_cast<std::int64_t>(r) * T + i;
    std::sort(entries.begin(), entries.end(), [&](std::int64_t a, std::int64_t b) {
      const float sa = scores[a], sb = scores[b];
      if (sa != sb) return sa > sb;
      const std::int64_t ia = a % T, ib = b % T;
      return ia != ib ? ia > ib : a < b;
    });
    std::vector<int> per_row(static_cast<std::size_t>(L) * Hkv);
    for (int b = 0; b < nb; ++b) {
      const int Bp = std::clamp(plan.per_head[b], 0, T);
      std::fill(per_row.begin(), per_row.end(), std::min(Bp, n_protected));
      const std::size_t K = Bp > n_protected ? static_cast<std::size_t>(L) * Hkv * (Bp - n_protected) : 0;
      for (std::size_t k = 0; k < std::min(K, entries.size()); ++k) ++per_row[entries[k] / T];
      for (int l = 0; l < L; ++l)
        for (int g = 0; g < Hkv; ++g) s.count(b, l, g) = per_row[static_cast<std::size_t>(l) * Hkv + g];
    }
    return s;
  }

 private:
  // Scores of layer l into its [Hkv, T] block: p (pooled, reduced, normalised) for
  // first <= i < P, +inf for the sinks [0, first) and the window [P, T).
  void score_layer(const PromptView& v, int l, int w, int first, std::span<float> scores) const {
    const int H = v.n_heads, Hkv = v.n_kv_heads, G = v.group_size(), T = v.T, P = T - w;
    const int d = v.head_dim, D = v.hidden, N = v.T + v.M;
    const LayerData& ly = v.layers[l];
    KVSIM_CHECK(ly.w_o.size() == static_cast<std::size_t>(D) * H * d, "prompt ", v.id, ": w_o missing for layer ", l);
    KVSIM_CHECK(ly.window_attn.size() == static_cast<std::size_t>(H) * v.W * T, "window attention not derived");
    const std::span<float> out = scores.subspan(static_cast<std::size_t>(l) * Hkv * T, static_cast<std::size_t>(Hkv) * T);
    auto window_rows = [&](int h) { return ly.window_attn.data() + (static_cast<std::size_t>(h) * v.W + (v.W - w)) * T; };
    // One scoring unit: a query head (mean, sum) or a whole group (attn_first).
    const bool per_group = p_.reduce == LaproxReduce::kAttnFirst;
    const int units = per_group ? Hkv : H;
    std::vector<float> unit_scores(static_cast<std::size_t>(units) * P), att, val;
    for (int u = 0; u < units; ++u) {
      std::vector<int> heads;
      if (per_group)
        for (int k = 0; k < G; ++k) heads.push_back(u * G + k);
      else
        heads.push_back(u);
      std::vector<const float*> rows;
      for (int h : heads) rows.push_back(window_rows(h));
      attention_column_norms(rows, w, T, P, att);
      projected_value_norms(ly, heads, per_group ? u : u / G, H, d, D, N, P, val);
      // Pooled between the sinks and the window: protected tokens do not leak into neighbours.
      if (p_.pool_at == PoolAt::kAttention) pool_same(std::span<float>(att).subspan(first), p_.kernel, PoolKind::kAvg);
      float* p = unit_scores.data() + static_cast<std::size_t>(u) * P;
      for (int i = 0; i < P; ++i) p[i] = att[i] * val[i];
      if (p_.pool_at == PoolAt::kProduct) pool_same(std::span<float>(p + first, P - first), p_.kernel, PoolKind::kAvg);
    }
    for (int g = 0; g < Hkv; ++g) {
      float* o = out.data() + static_cast<std::size_t>(g) * T;
      if (per_group) {
        std::copy_n(unit_scores.data() + static_cast<std::size_t>(g) * P, P, o);
      } else {
        for (int i = 0; i < P; ++i) {
          double sum = 0;
          for (int k = 0; k < G; ++k) sum += unit_scores[static_cast<std::size_t>(g * G + k) * P + i];
          o[i] = static_cast<float>(p_.reduce == LaproxReduce::kMean ? sum / G : sum);
        }
      }
    }
    if (p_.normalize) {
      // Over the competing tokens only: the sinks' (large) attention would shrink every layer's
      // share by a layer-dependent amount.
      double total = 0;  // fixed order: g, then i
      for (int g = 0; g < Hkv; ++g)
        for (int i = first; i < P; ++i) total += out[static_cast<std::size_t>(g) * T + i];
      if (total > 0)
        for (int g = 0; g < Hkv; ++g)
          for (int i = first; i < P; ++i) {
            float& x = out[static_cast<std::size_t>(g) * T + i];
            x = static_cast<float>(x / total);
          }
    }
    for (int g = 0; g < Hkv; ++g) {
      protect_first(out.subspan(static_cast<std::size_t>(g) * T, T), first);
      protect_last(out.subspan(static_cast<std::size_t>(g) * T, T), w);
    }
  }

  LaproxParams p_;
};

}  // namespace

PolicyInfo laprox_policy_info() {
  return {"laprox",
          "output-aware |A_h[:,i]|*|v_i W_O^h| scores, per-layer normalised, one model-wide top-K (LaProx, docs/methods.md)",
          {{"window", "32", "observation window: its queries score, its tokens are kept in every (layer, KV head)"},
           {"kernel", "7", "average pooling kernel along tokens (odd; 1 = no pooling)"},
           {"reduce", "mean", "GQA: mean|sum of per-head scores, or attn_first (group-mean attention first)"},
           {"pool_at", "product", "where pooling applies: product|attention (the |A| factor)|none"},
           {"normalize", "1", "1: divide scores by their layer's sum before the global top-K; 0: raw"},
           sink_param()},
          false, [](PolicyArgs a) {
            LaproxParams p;
            p.window = integer_at_least(a.params, "window", 1);
            p.kernel = integer_at_least(a.params, "kernel", 1);
            if (p.kernel % 2 == 0)
              fail<InputError>("policy laprox: parameter kernel must be odd (same-length pooling), got ", p.kernel);
            const std::string r = a.params.choice("reduce", {"mean", "sum", "attn_first"});
            p.reduce = r == "mean" ? LaproxReduce::kMean : r == "sum" ? LaproxReduce::kSum : LaproxReduce::kAttnFirst;
            const std::string at = a.params.choice("pool_at", {"product", "attention", "none"});
            p.pool_at = at == "product" ? PoolAt::kProduct : at == "attention" ? PoolAt::kAttention : PoolAt::kNone;
            p.normalize = a.params.choice("normalize", {"1", "0"}) == "1";
            p.sink = read_sink(a.params);
            return std::make_unique<LaproxPolicy>(a.spec, p);
          }};
}

}  // namespace kvsim
