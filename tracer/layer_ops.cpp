#include "tracer/layer_ops.hpp"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <cmath>

#include "tracer/cpu_forward.hpp"

namespace kvsim {

namespace {

// Adds a bias row vector to every row.
void add_bias(MatrixRM& x, const VectorF& b) {
  if (b.size() == 0) return;
  x.rowwise() += b.transpose();
}

}  // namespace

void rms_norm(const MatrixRM& x, const VectorF& gain, double eps, MatrixRM& out) {
  out.resize(x.rows(), x.cols());
  tbb::parallel_for(tbb::blocked_range<Eigen::Index>(0, x.rows(), 64), [&](const tbb::blocked_range<Eigen::Index>& r) {
    for (Eigen::Index t = r.begin(); t < r.end(); ++t) {
      const float ms = x.row(t).squaredNorm() / static_cast<float>(x.cols());
      const float inv = 1.0f / std::sqrt(ms + static_cast<float>(eps));
      out.row(t) = (x.row(t) * inv).cwiseProduct(gain.transpose());
    }
  });
}

void layer_qkv(const ModelConfig& c, const LayerWeights& w, const MatrixRM& x, int pos0, int pos_step, LayerScratch& s) {
  rms_norm(x, w.attn_norm, c.norm_eps, s.xn);
  linear(s.xn, w.wq, s.q);
  linear(s.xn, w.wk, s.k);
  linear(s.xn, w.wv, s.v);
  add_bias(s.q, w.bq);
  add_bias(s.k, w.bk);
  add_bias(s.v, w.bv);
  apply_rope(s.q, c.n_heads, c.head_dim, pos0, c.rope_theta, c.rope_style, pos_step);
  apply_rope(s.k, c.n_kv_heads, c.head_dim, pos0, c.rope_theta, c.rope_style, pos_step);
}

void layer_out_ffn(const ModelConfig& c, const LayerWeights& w, MatrixRM& x, LayerScratch& s) {
  linear(s.att, w.wo, s.proj);
  x += s.proj;
  rms_norm(x, w.ffn_norm, c.norm_eps, s.xn);
  linear(s.xn, w.w_gate, s.gate);
  linear(s.xn, w.w_up, s.up);
  // SwiGLU: silu(gate) ⊙ up.
  tbb::parallel_for(tbb::blocked_range<Eigen::Index>(0, s.gate.rows(), 16), [&](const tbb::blocked_range<Eigen::Index>& r) {
    auto g = s.gate.middleRows(r.begin(), r.size()).array();
    g = g / (1.0f + (-g).exp()) * s.up.middleRows(r.begin(), r.size()).array();
  });
  linear(s.gate, w.w_down, s.proj);
  x += s.proj;
}

}  // namespace kvsim
