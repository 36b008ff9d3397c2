#include "policies/score_utils.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <tbb/parallel_for.h>

#include "core/error.hpp"
#include "core/matrix.hpp"

namespace kvsim {

GroupReduce parse_group_reduce(const ParamReader& p, const std::string& name) {
  const std::string r = p.choice(name, kGroupReduceNames);
  return r == "mean" ? GroupReduce::kMean : r == "max" ? GroupReduce::kMax : GroupReduce::kSum;
}

PoolKind parse_pool(const ParamReader& p, const std::string& name) {
  return p.choice(name, {"avg", "max"}) == "avg" ? PoolKind::kAvg : PoolKind::kMax;
}

ParamInfo sink_param() {
  return {"sink", "0", "first tokens always kept, ahead of the window (attention sinks; 0: none, the published definition)",
          /*omit_default=*/true};
}

int read_sink(const ParamReader& p) { return integer_at_least(p, "sink", 0); }

int integer_at_least(const ParamReader& p, const std::string& name, int lo) {
  const int x = p.integer(name);
  if (x < lo) fail<InputError>("policy ", p.policy_name(), ": parameter ", name, " must be >= ", lo, ", got ", x);
  return x;
}

double number_in(const ParamReader& p, const std::string& name, double lo, double hi) {
  const double x = p.number(name);
  if (std::isfinite(x) && x >= lo && x <= hi) return x;
  if (std::isinf(hi)) fail<InputError>("policy ", p.policy_name(), ": parameter ", name, " must be a finite number >= ", lo, ", got ", x);
  fail<InputError>("policy ", p.policy_name(), ": parameter ", name, " must be in [", lo, ", ", hi, "], got ", x);
}

void head_gram(std::span<const float> w_o, std::span<const int> heads, int H, int d, int D, std::span<float> out) {
  KVSIM_CHECK(w_o.size() == static_cast<std::size_t>(D) * H * d && out.size() == static_cast<std::size_t>(d) * d,
              "head_gram: shapes");
  MatrixRM w = MatrixRM::Zero(D, d);  // [D, d]
  for (int h : heads) w += ConstStridedMap(w_o.data() + static_cast<std::size_t>(h) * d, D, d, Eigen::OuterStride<>(H * d));
  MapMatrixRM(out.data(), d, d).noalias() = w.transpose() * w;
}

std::vector<float> head_output_grams(std::span<const float> w_o, int H, int d, int D) {
  std::vector<float> out(static_cast<std::size_t>(H) * d * d);
  tbb::parallel_for(0, H, [&](int h) {
    const int one[] = {h};
    head_gram(w_o, one, H, d, D, std::span(out).subspan(static_cast<std::size_t>(h) * d * d, static_cast<std::size_t>(d) * d));
  });
  return out;
}

void window_mean_attention(const PromptView& v, int layer, int window, std::vector<float>& out) {
  KVSIM_CHECK(window > 0 && window <= v.W, "window ", window, " vs recorded ", v.W);
  const int H = v.n_heads, T = v.T, W = v.W;
  const auto& a = v.layers[layer].window_attn;  // [H, W, T]
  KVSIM_CHECK(a.size() == static_cast<std::size_t>(H) * W * T, "window attention not derived");
  out.assign(static_cast<std::size_t>(H) * T, 0.0f);
  for (int h = 0; h < H; ++h) {
    float* o = out.data() + static_cast<std::size_t>(h) * T;
    for (int r = W - window; r < W; ++r) {
      const float* row = a.data() + (static_cast<std::size_t>(h) * W + r) * T;
      for (int i = 0; i < T; ++i) o[i] += row[i];
    }
    const float inv = 1.0f / static_cast<float>(window);
    for (int i = 0; i < T; ++i) o[i] *= inv;
  }
}

void pool_same(std::span<float> x, int kernel, PoolKind kind) {
  if (kernel <= 1) return;
  const int n = static_cast<int>(x.size()), half = kernel / 2;
  std::vector<float> src(x.begin(), x.end());
  for (int i = 0; i < n; ++i) {
    const int a = std::max(0, i - half), b = std::min(n - 1, i + half);
    if (kind == PoolKind::kAvg) {
      float s = 0.0f;
      for (int j = a; j <= b; ++j) s += src[j];
      x[i] = s / static_cast<float>(kernel);
    } else {
      float m = -std::numeric_limits<float>::infinity();
      for (int j = a; j <= b; ++j) m = std::max(m, src[j]);
      x[i] = m;
    }
  }
}

void reduce_group(std::span<const float> per_head, int H, int Hkv, int T, GroupReduce r, std::span<float> out) {
  const int G = H / Hkv;
  KVSIM_CHECK(per_head.size() == static_cast<std::size_t>(H) * T && out.size() == static_cast<std::size_t>(Hkv) * T);
  for (int g = 0; g < Hkv; ++g) {
    float* o = out.data() + static_cast<std::size_t>(g) * T;
    for (int i = 0; i < T; ++i) o[i] = r == GroupReduce::kMax ? -std::numeric_limits<float>::infinity() : 0.0f;
    for (int k = 0; k < G; ++k) {
      const float* s = per_head.data() + static_cast<std::size_t>(g * G + k) * T;
      for (int i = 0; i < T; ++i) o[i] = r == GroupReduce::kMax ? std::max(o[i], s[i]) : o[i] + s[i];
    }
    if (r == GroupReduce::kMean)
      for (int i = 0; i < T; ++i) o[i] /= static_cast<float>(G);
  }
}

void order_by_score(std::span<const float> scores, std::span<std::int32_t> order, int sink) {
  KVSIM_CHECK(scores.size() == order.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t b) {
    return scores[a] > scores[b] || (scores[a] == scores[b] && tie_rank(a, sink) > tie_rank(b, sink));
  });
}

void order_rows(const PromptView& v, std::span<const float> scores, Selection& s, int sink) {
  KVSIM_CHECK(scores.size() == static_cast<std::size_t>(v.n_layers) * v.n_kv_heads * v.T);
  tbb::parallel_for(0, v.n_layers * v.n_kv_heads, [&](int lg) {
    const int l = lg / v.n_kv_heads, g = lg % v.n_kv_heads;
    order_by_score(score_row(scores, v, l, g), s.order(0, l, g), sink);
  });
}

void protect_last(std::span<float> scores, int w) {
  const int n = static_cast<int>(scores.size());
  for (int i = std::max(0, n - w); i < n; ++i) scores[i] = std::numeric_limits<float>::infinity();
}

void protect_first(std::span<float> scores, int n) {
  const int m = std::min(n, static_cast<int>(scores.size()));
  for (int i = 0; i < m; ++i) scores[i] = std::numeric_limits<float>::infinity();
}

void score_query_heads(const PromptView& v, GroupReduce r, int protect, std::span<float> scores,
                       const HeadScoreFn& head_scores) {
  const int H = v.n_heads, Hkv = v.n_kv_heads, T = v.T;
  KVSIM_CHECK(scores.size() == static_cast<std::size_t>(v.n_layers) * Hkv * T);
  tbb::parallel_for(0, v.n_layers, [&](int l) {
    std::vector<float> per_head(static_cast<std::size_t>(H) * T, 0.0f);  // [H, T]
    head_scores(l, per_head);
    KVSIM_CHECK(per_head.size() == static_cast<std::size_t>(H) * T);
    const std::span<float> out = scores.subspan(static_cast<std::size_t>(l) * Hkv * T, static_cast<std::size_t>(Hkv) * T);
    reduce_group(per_head, H, Hkv, T, r, out);
    for (int g = 0; g < Hkv; ++g) protect_last(score_row(scores, v, l, g), protect);
  });
}

std::vector<int> allocate(const std::vector<double>& weights, const std::vector<int>& caps, long total) {
  const std::size_t n = weights.size();
  KVSIM_CHECK(caps.size() == n);
  std::vector<int> out(n, 0);
  std::vector<char> capped(n, 0);
  long remaining = total;
  // Repeatedly split what remains over the uncapped entries; entries that hit their cap are
  // frozen and their excess flows to the others.
  for (std::size_t round = 0; round <= n && remaining > 0; ++round) {
    double wsum = 0;
    for (std::size_t k = 0; k < n; ++k)
      if (!capped[k]) wsum += std::max(0.0, weights[k]);
    if (wsum <= 0) break;
    std::vector<double> share(n, 0.0);
    std::vector<int> add(n, 0);
    long given = 0;
    for (std::size_t k = 0; k < n; ++k)
      if (!capped[k]) {
        share[k] = static_cast<double>(remaining) * std::max(0.0, weights[k]) / wsum;
        add[k] = static_cast<int>(std::floor(share[k]));
        given += add[k];
      }
    // Largest remainders get the leftover units; ties to the lower index.
    std::vector<std::size_t> idx;
    for (std::size_t k = 0; k < n; ++k)
      if (!capped[k]) idx.push_back(k);
    std::stable_sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) {
      return share[a] - std::floor(share[a]) > share[b] - std::floor(share[b]);
    });
    for (std::size_t j = 0; j < idx.size() && given < remaining; ++j, ++given) ++add[idx[j]];
    bool any_capped = false;
    for (std::size_t k = 0; k < n; ++k) {
      if (capped[k]) continue;
      const int room = caps[k] - out[k];
      const int take = std::min(add[k], room);
      out[k] += take;
      remaining -= take;
      if (out[k] >= caps[k]) capped[k] = 1, any_capped = any_capped || add[k] >= room;
    }
    if (!any_capped) break;
  }
  return out;
}

}  // namespace kvsim
