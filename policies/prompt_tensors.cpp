#include "policies/prompt_tensors.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <array>
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
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  // exp on 16 lanes at a time through a fixed-size Eigen array (its vectorised exp): every key
  // takes the same path whatever the buffer's address (a Map would peel its unaligned head with
  // the scalar exp, whose last bit differs), and the tail is padded with -inf (exp 0). Each
  // lane's argument is fl(fl(logit·scale) − max), the max being fl(max(logit)·scale) (the same
  // as the max of the scaled logits: rounding is monotone and scale > 0; max is exact in any
  // order).
  using Lanes = Eigen::Array<float, 16, 1>;
  auto visible_keys = [&](int r) { return std::min(n_keys, first_pos + r + 1); };
  for (int r = 0; r < rows; ++r) {
    float* row = out + static_cast<std::size_t>(r) * n_keys;
    const int visible = visible_keys(r);
    const float mx = visible > 0 ? Eigen::Map<const Eigen::ArrayXf>(row, visible).maxCoeff() * scale : 0.0f;
    int j0 = 0;
    for (; j0 + 16 <= visible; j0 += 16) {
      Eigen::Map<Lanes> x(row + j0);
      x = (x * scale - mx).exp();
    }
    if (j0 < visible) {
      const int n = visible - j0;
      Lanes x;
      for (int i = 0; i < 16; ++i) x[i] = i < n ? row[j0 + i] * scale - mx : kNegInf;
      x = x.exp();
      for (int i = 0; i < n; ++i) row[j0 + i] = x[i];
    }
    std::fill(row + visible, row + n_keys, 0.0f);
  }
  // Each row's sum in key order (float), four rows' chains interleaved so that the additions'
  // latency overlaps; then the normalisation.
  std::array<float, 4> sum{};
  for (int r0 = 0; r0 < rows; r0 += 4) {
    const int nr = std::min(4, rows - r0);
    const float* row[4];
    int visible[4];
    for (int i = 0; i < 4; ++i) {
      row[i] = out + static_cast<std::size_t>(r0 + std::min(i, nr - 1)) * n_keys;
      visible[i] = i < nr ? visible_keys(r0 + i) : 0;
      sum[i] = 0.0f;
    }
    const int common = *std::min_element(visible, visible + nr);
    for (int j = 0; j < common; ++j) {
      sum[0] += row[0][j], sum[1] += row[1][j], sum[2] += row[2][j], sum[3] += row[3][j];
    }
    for (int i = 0; i < nr; ++i)
      for (int j = common; j < visible[i]; ++j) sum[i] += row[i][j];
    for (int i = 0; i < nr; ++i) {
      float* w = out + static_cast<std::size_t>(r0 + i) * n_keys;
      const float inv = 1.0f / sum[i];
      for (int j = 0; j < visible[i]; ++j) w[j] *= inv;
    }
  }
}

void PromptTensors::derive_attention(bool window, bool cont) {
  const int H = n_heads, Hkv = n_kv_heads, G = H / Hkv, d = head_dim, N = T + M;
  KVSIM_CHECK(static_cast<int>(layers.size()) == n_layers && H % Hkv == 0 && W <= T, "prompt ", id);
  for (const auto& ly : layers) {
    KVSIM_CHECK(ly.keys.size() == static_cast<std::size_t>(Hkv) * N * d && ly.values.size() == ly.keys.size(), id);
    if (window) KVSIM_CHECK(ly.q_window.size() == static_cast<std::size_t>(H) * W * d, id);
    if (cont) KVSIM_CHECK(ly.q_cont.size() == static_cast<std::size_t>(H) * M * d, id);
  }
  // Per layer in parallel: the buffers' first touch (page faults and zeroing, ~1.5 GB at an 8B
  // shape and 4k tokens) is shared by the threads, then the heads.
  tbb::parallel_for(0, n_layers, [&](int l) {
    LayerTensors& ly = layers[l];
    if (window) ly.window_attn.resize(static_cast<std::size_t>(H) * W * T);
    if (cont) ly.cont_attn.resize(static_cast<std::size_t>(H) * M * N);
    tbb::parallel_for(0, H, [&](int h) {
      const float* k = ly.keys.data() + static_cast<std::size_t>(h / G) * N * d;
      if (window && W > 0)
        causal_attention(ly.q_window.data() + static_cast<std::size_t>(h) * W * d, W, T - W, k, T, d,
                         ly.window_attn.data() + static_cast<std::size_t>(h) * W * T);
      if (cont && M > 0)
        causal_attention(ly.q_cont.data() + static_cast<std::size_t>(h) * M * d, M, T, k, N, d,
                         ly.cont_attn.data() + static_cast<std::size_t>(h) * M * N);
    });
  });
}

PromptView PromptTensors::view() const {
  PromptView v;
  v.id = id, v.task = task;
  static_cast<ModelShape&>(v) = *this;
  v.T = T, v.M = M, v.W = W, v.seed = seed;
  v.prompt_logprob = prompt_logprob;
  v.layers.resize(layers.size());
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const LayerTensors& s = layers[l];
    LayerData& o = v.layers[l];
    static_cast<LayerView&>(o) = layer_view(s);
    o.window_attn = s.window_attn, o.cont_attn = s.cont_attn;
    if (w_o && l < w_o->size()) o.w_o = (*w_o)[l];
    if (w_o_bf16 && l < w_o_bf16->size()) o.w_o_bf16 = &(*w_o_bf16)[l];
    if (w_o_packed && l < w_o_packed->size()) o.w_o_packed = &(*w_o_packed)[l];
    if (w_o_gram && l < w_o_gram->size()) o.w_o_gram = (*w_o_gram)[l];
  }
  return v;
}

}  // namespace kvsim
