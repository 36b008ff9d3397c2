#include "policies/prompt_tensors.hpp"

#include <Eigen/Core>
#include <cmath>
#include <limits>
#include <tbb/parallel_for.h>

#include "core/error.hpp"
#include "core/matrix.hpp"

namespace kvsim {

void causal_attention(const float* q, int rows, int first_pos, const float* k, int n_keys, int d, float* out) {
  using Map = Eigen::Map<const MatrixRM>;
  Eigen::Map<MatrixRM> logits(out, rows, n_keys);
  logits.noalias() = Map(q, rows, d) * Map(k, n_keys, d).transpose();
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  // exp on 16 lanes at a time through a fixed-size Eigen array (its vectorised exp): every key
  // takes the same path whatever the buffer's address (a Map would peel its unaligned head with
  // the scalar exp, whose last bit differs), and the tail is padded with -inf (exp 0). The sum
  // runs in key order.
  using Lanes = Eigen::Array<float, 16, 1>;
  Lanes x;
  for (int r = 0; r < rows; ++r) {
    float* row = out + static_cast<std::size_t>(r) * n_keys;
    const int visible = std::min(n_keys, first_pos + r + 1);
    float mx = -std::numeric_limits<float>::infinity();
    for (int j = 0; j < visible; ++j) mx = std::max(mx, row[j] * scale);
    float sum = 0.0f;
    for (int j0 = 0; j0 < visible; j0 += 16) {
      const int n = std::min(16, visible - j0);
      for (int i = 0; i < 16; ++i) x[i] = i < n ? row[j0 + i] * scale - mx : -std::numeric_limits<float>::infinity();
      x = x.exp();
      for (int i = 0; i < n; ++i) sum += (row[j0 + i] = x[i]);
    }
    const float inv = 1.0f / sum;
    for (int j = 0; j < visible; ++j) row[j] *= inv;
    for (int j = visible; j < n_keys; ++j) row[j] = 0.0f;
  }
}

void PromptTensors::derive_attention(bool window, bool cont) {
  const int H = n_heads, Hkv = n_kv_heads, G = H / Hkv, d = head_dim, N = T + M;
  KVSIM_CHECK(static_cast<int>(layers.size()) == n_layers && H % Hkv == 0 && W <= T, "prompt ", id);
  for (auto& ly : layers) {
    KVSIM_CHECK(ly.keys.size() == static_cast<std::size_t>(Hkv) * N * d && ly.values.size() == ly.keys.size(), id);
    if (window) {
      KVSIM_CHECK(ly.q_window.size() == static_cast<std::size_t>(H) * W * d, id);
      ly.window_attn.resize(static_cast<std::size_t>(H) * W * T);
    }
    if (cont) {
      KVSIM_CHECK(ly.q_cont.size() == static_cast<std::size_t>(H) * M * d, id);
      ly.cont_attn.resize(static_cast<std::size_t>(H) * M * N);
    }
  }
  tbb::parallel_for(0, n_layers * H, [&](int lh) {
    LayerTensors& ly = layers[lh / H];
    const int h = lh % H, g = h / G;
    const float* k = ly.keys.data() + static_cast<std::size_t>(g) * N * d;
    if (window && W > 0)
      causal_attention(ly.q_window.data() + static_cast<std::size_t>(h) * W * d, W, T - W, k, T, d,
                       ly.window_attn.data() + static_cast<std::size_t>(h) * W * T);
    if (cont && M > 0)
      causal_attention(ly.q_cont.data() + static_cast<std::size_t>(h) * M * d, M, T, k, N, d,
                       ly.cont_attn.data() + static_cast<std::size_t>(h) * M * N);
  });
}

PromptView PromptTensors::view() const {
  PromptView v;
  v.id = id, v.task = task;
  v.n_layers = n_layers, v.n_heads = n_heads, v.n_kv_heads = n_kv_heads, v.head_dim = head_dim, v.hidden = hidden;
  v.T = T, v.M = M, v.W = W, v.seed = seed;
  v.prompt_logprob = prompt_logprob;
  v.layers.resize(layers.size());
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const LayerTensors& s = layers[l];
    LayerData& o = v.layers[l];
    o.keys = s.keys, o.values = s.values, o.q_window = s.q_window, o.q_cont = s.q_cont;
    o.attn_colsum = s.attn_colsum, o.value_wo_l1 = s.value_wo_l1, o.window_attn = s.window_attn, o.cont_attn = s.cont_attn;
    if (w_o && l < w_o->size()) o.w_o = (*w_o)[l];
    if (w_o_bf16 && l < w_o_bf16->size()) o.w_o_bf16 = &(*w_o_bf16)[l];
  }
  return v;
}

}  // namespace kvsim
