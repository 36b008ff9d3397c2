#pragma once
// A second, deliberately naive implementation of the Llama forward pass for tests: scalar
// loops, one token at a time, written from the definitions (llama2.c's run.c structure), no
// Eigen, no threads. The batched CpuForward is checked against it.
#include <cmath>
#include <cstdint>
#include <vector>

#include "tracer/model.hpp"

namespace kvsim::test {

struct ReferenceOutput {
  std::vector<std::vector<float>> logits;             // [n][V]
  std::vector<std::vector<std::vector<float>>> keys;  // [L][n][Hkv*d] post-RoPE
  std::vector<std::vector<std::vector<float>>> probs; // [L][H][n*n] attention probabilities, row-major
};

// keep (optional, [L, Hkv, keep_len]): query positions >= keep_len see a key j < keep_len only
// when its flag is set (ForwardOptions::keep, written again here from the definition).
inline ReferenceOutput reference_forward(const Model& m, const std::vector<int>& tokens,
                                         const std::vector<std::uint8_t>& keep = {}, int keep_len = 0) {
  const ModelConfig& c = m.config;
  const int n = static_cast<int>(tokens.size()), D = c.hidden, d = c.head_dim, H = c.n_heads, Hkv = c.n_kv_heads;
  const int G = H / Hkv, F = c.ffn_hidden, V = c.vocab;
  ReferenceOutput out;
  out.keys.assign(c.n_layers, {});
  out.probs.assign(c.n_layers, std::vector<std::vector<float>>(H, std::vector<float>(n * n, 0.0f)));
  std::vector<std::vector<std::vector<float>>> kc(c.n_layers), vc(c.n_layers);
  auto matvec = [](const MatrixRM& w, const std::vector<float>& x) {
    std::vector<float> y(w.rows(), 0.0f);
    for (int r = 0; r < w.rows(); ++r) {
      double s = 0;
      for (int k = 0; k < w.cols(); ++k) s += static_cast<double>(w(r, k)) * x[k];
      y[r] = static_cast<float>(s);
    }
    return y;
  };
  auto rmsnorm = [&](const std::vector<float>& x, const VectorF& g) {
    double ss = 0;
    for (float v : x) ss += static_cast<double>(v) * v;
    const double inv = 1.0 / std::sqrt(ss / x.size() + c.norm_eps);
    std::vector<float> y(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) y[i] = static_cast<float>(x[i] * inv * g[i]);
    return y;
  };
  auto rope = [&](std::vector<float>& v, int heads, int pos) {
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < d / 2; ++i) {
        const double freq = std::pow(c.rope_theta, -2.0 * i / d), a = pos * freq;
        const int ia = c.rope_style == RopeStyle::kInterleaved ? h * d + 2 * i : h * d + i;
        const int ib = c.rope_style == RopeStyle::kInterleaved ? h * d + 2 * i + 1 : h * d + i + d / 2;
        const double x0 = v[ia], x1 = v[ib];
        v[ia] = static_cast<float>(x0 * std::cos(a) - x1 * std::sin(a));
        v[ib] = static_cast<float>(x0 * std::sin(a) + x1 * std::cos(a));
      }
  };
  for (int pos = 0; pos < n; ++pos) {
    std::vector<float> x(D);
    for (int i = 0; i < D; ++i) x[i] = m.embed(tokens[pos], i);
    for (int l = 0; l < c.n_layers; ++l) {
      const LayerWeights& w = m.layers[l];
      auto xn = rmsnorm(x, w.attn_norm);
      auto q = matvec(w.wq, xn), k = matvec(w.wk, xn), v = matvec(w.wv, xn);
      if (c.qkv_bias) {
        for (std::size_t i = 0; i < q.size(); ++i) q[i] += w.bq[i];
        for (std::size_t i = 0; i < k.size(); ++i) k[i] += w.bk[i], v[i] += w.bv[i];
      }
      rope(q, H, pos);
      rope(k, Hkv, pos);
      kc[l].push_back(k);
      vc[l].push_back(v);
      out.keys[l].push_back(k);
      std::vector<float> att(H * d, 0.0f);
      for (int h = 0; h < H; ++h) {
        const int g = h / G;
        std::vector<double> s(pos + 1);
        double mx = -1e300;
        for (int j = 0; j <= pos; ++j) {
          if (!keep.empty() && pos >= keep_len && j < keep_len &&
              !keep[(static_cast<std::size_t>(l) * Hkv + g) * keep_len + j]) {
            s[j] = -INFINITY;
            continue;
          }
          double dot = 0;
          for (int i = 0; i < d; ++i) dot += static_cast<double>(q[h * d + i]) * kc[l][j][g * d + i];
          s[j] = dot / std::sqrt(static_cast<double>(d));
          mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (auto& e : s) sum += (e = std::exp(e - mx));
        for (int j = 0; j <= pos; ++j) {
          const double p = s[j] / sum;
          out.probs[l][h][pos * n + j] = static_cast<float>(p);
          for (int i = 0; i < d; ++i) att[h * d + i] += static_cast<float>(p * vc[l][j][g * d + i]);
        }
      }
      auto o = matvec(w.wo, att);
      for (int i = 0; i < D; ++i) x[i] += o[i];
      xn = rmsnorm(x, w.ffn_norm);
      auto gate = matvec(w.w_gate, xn), up = matvec(w.w_up, xn);
      std::vector<float> hbuf(F);
      for (int i = 0; i < F; ++i) hbuf[i] = static_cast<float>(gate[i] / (1.0 + std::exp(-gate[i])) * up[i]);
      auto down = matvec(w.w_down, hbuf);
      for (int i = 0; i < D; ++i) x[i] += down[i];
    }
    auto xf = rmsnorm(x, m.final_norm);
    out.logits.push_back(matvec(m.output_matrix(), xf));
    (void)V;
  }
  return out;
}

}  // namespace kvsim::test
