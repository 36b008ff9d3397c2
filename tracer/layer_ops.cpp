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

// SwiGLU: gate ← silu(gate) ⊙ up. Row by row through a zero-padded buffer whose size is a
// multiple of the SIMD width, so every element takes Eigen's vectorised exp: applied to the
// matrix, the elements before the first aligned address and after the last full packet take
// the scalar exp instead (another rounding), and which ones depends on the row's address and
// the rows processed with it. This way a row's result depends on that row alone.
void swiglu(MatrixRM& gate, const MatrixRM& up) {
  constexpr Eigen::Index kPacket = Eigen::internal::packet_traits<float>::size;
  const Eigen::Index F = gate.cols(), padded = (F + kPacket - 1) / kPacket * kPacket;
  tbb::parallel_for(tbb::blocked_range<Eigen::Index>(0, gate.rows(), 16), [&](const tbb::blocked_range<Eigen::Index>& r) {
    Eigen::ArrayXf g = Eigen::ArrayXf::Zero(padded), u = Eigen::ArrayXf::Zero(padded);  // aligned by Eigen
    for (Eigen::Index t = r.begin(); t < r.end(); ++t) {
      g.head(F) = gate.row(t).transpose().array();
      u.head(F) = up.row(t).transpose().array();
      g = g / (1.0f + (-g).exp()) * u;
      gate.row(t) = g.head(F).transpose().matrix();
    }
  });
}

}  // namespace

void RopeTable::prepare(Eigen::Index n, int head_dim, int pos0, double theta, int pos_step) {
  if (n == n_ && head_dim == head_dim_ && pos0 == pos0_ && theta == theta_ && pos_step == pos_step_) return;
  n_ = n, head_dim_ = head_dim, pos0_ = pos0, theta_ = theta, pos_step_ = pos_step;
  const int half = head_dim / 2;
  const std::vector<float> freq = rope_frequencies(head_dim, theta);
  cos.resize(static_cast<std::size_t>(n) * half);
  sin.resize(cos.size());
  tbb::parallel_for(tbb::blocked_range<Eigen::Index>(0, n, 64), [&](const tbb::blocked_range<Eigen::Index>& r) {
    for (Eigen::Index t = r.begin(); t < r.end(); ++t) {
      const float pos = static_cast<float>(pos0 + t * pos_step);
      for (int i = 0; i < half; ++i) {
        const float angle = pos * freq[i];
        cos[t * half + i] = std::cos(angle);
        sin[t * half + i] = std::sin(angle);
      }
    }
  });
}

void apply_rope(MatrixRM& x, int heads, int head_dim, RopeStyle style, const RopeTable& table) {
  const int half = head_dim / 2;
  tbb::parallel_for(tbb::blocked_range<Eigen::Index>(0, x.rows(), 64), [&](const tbb::blocked_range<Eigen::Index>& r) {
    for (Eigen::Index t = r.begin(); t < r.end(); ++t) {
      const float* cs = table.cos.data() + t * half;
      const float* sn = table.sin.data() + t * half;
      float* row = x.row(t).data();
      for (int h = 0; h < heads; ++h) {
        float* v = row + h * head_dim;
        for (int i = 0; i < half; ++i) {
          float* a = style == RopeStyle::kInterleaved ? v + 2 * i : v + i;
          float* b = style == RopeStyle::kInterleaved ? v + 2 * i + 1 : v + i + half;
          const float x0 = *a, x1 = *b;
          *a = x0 * cs[i] - x1 * sn[i];
          *b = x0 * sn[i] + x1 * cs[i];
        }
      }
    }
  });
}

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

void layer_qkv(const ModelConfig& c, const LayerWeights& w, const MatrixRM& x, int pos0, int pos_step, LayerScratch& s,
               const LinearFn& product) {
  rms_norm(x, w.attn_norm, c.norm_eps, s.xn);
  product(s.xn, w.wq, s.q);
  product(s.xn, w.wk, s.k);
  product(s.xn, w.wv, s.v);
  add_bias(s.q, w.bq);
  add_bias(s.k, w.bk);
  add_bias(s.v, w.bv);
  s.rope.prepare(x.rows(), c.head_dim, pos0, c.rope_theta, pos_step);
  apply_rope(s.q, c.n_heads, c.head_dim, c.rope_style, s.rope);
  apply_rope(s.k, c.n_kv_heads, c.head_dim, c.rope_style, s.rope);
}

void layer_out_ffn(const ModelConfig& c, const LayerWeights& w, MatrixRM& x, LayerScratch& s, const LinearFn& product) {
  product(s.att, w.wo, s.proj);
  x += s.proj;
  rms_norm(x, w.ffn_norm, c.norm_eps, s.xn);
  product(s.xn, w.w_gate, s.gate);
  product(s.xn, w.w_up, s.up);
  swiglu(s.gate, s.up);
  product(s.gate, w.w_down, s.proj);
  x += s.proj;
}

}  // namespace kvsim
