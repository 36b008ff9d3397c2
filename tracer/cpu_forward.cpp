#include "tracer/cpu_forward.hpp"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/error.hpp"
#include "tracer/layer_ops.hpp"

namespace kvsim {

KvCache::KvCache(const ModelConfig& config, int capacity) : capacity_(capacity) {
  const std::size_t per_layer = static_cast<std::size_t>(config.n_kv_heads) * capacity * config.head_dim;
  keys_.assign(config.n_layers, std::vector<float>(per_layer));
  values_.assign(config.n_layers, std::vector<float>(per_layer));
}

namespace {

// R×C dot products of rows x[r] and w[c], all of length `in`, into y[r * y_stride + c]. Every
// dot is summed in the same order whatever R and C (packets over k with FMA, the packet's
// fixed horizontal sum, then the remainder with fma), so a block's edges may use smaller R, C.
template <int R, int C>
void dot_block(const float* const* x, const float* const* w, int in, float* y, Eigen::Index y_stride) {
  using Packet = Eigen::internal::packet_traits<float>::type;
  constexpr int P = Eigen::internal::packet_traits<float>::size;
  Packet acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = Eigen::internal::pset1<Packet>(0.0f);
  int k = 0;
  for (; k + P <= in; k += P) {
    Packet xp[R];
    for (int r = 0; r < R; ++r) xp[r] = Eigen::internal::ploadu<Packet>(x[r] + k);
    for (int c = 0; c < C; ++c) {
      const Packet wp = Eigen::internal::ploadu<Packet>(w[c] + k);
      for (int r = 0; r < R; ++r) acc[r][c] = Eigen::internal::pmadd(xp[r], wp, acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) {
      float sum = Eigen::internal::predux(acc[r][c]);
      for (int j = k; j < in; ++j) sum = std::fma(x[r][j], w[c][j], sum);
      y[r * y_stride + c] = sum;
    }
}

// Rows [o0, o_end) of Y's columns for X rows xr[0..R): blocks of C W rows, then one at a time.
template <int R, int C>
void dot_span(const float* const* xr, const MatrixRM& w, Eigen::Index o0, Eigen::Index o_end, float* y, Eigen::Index y_stride) {
  const int in = static_cast<int>(w.cols());
  Eigen::Index o = o0;
  for (; o + C <= o_end; o += C) {
    const float* wr[C];
    for (int c = 0; c < C; ++c) wr[c] = w.row(o + c).data();
    dot_block<R, C>(xr, wr, in, y + o, y_stride);
  }
  for (; o < o_end; ++o) {
    const float* wr[1] = {w.row(o).data()};
    dot_block<R, 1>(xr, wr, in, y + o, y_stride);
  }
}

}  // namespace

void linear_rowwise(const MatrixRM& x, const MatrixRM& w, MatrixRM& y) {
  KVSIM_CHECK(x.cols() == w.cols(), "linear_rowwise: x ", x.rows(), "x", x.cols(), " w ", w.rows(), "x", w.cols());
  const Eigen::Index n = x.rows(), out = w.rows();
  y.resize(n, out);
  // Tiles of W rows small enough to stay in L2 while every X row passes over them: W is read
  // from memory once per call. Register blocks of kR X rows × 3 W rows (kR = 8 with AVX-512's
  // 32 registers, else 4); the last rows of X one at a time against 8 W rows. The blocking
  // does not change any element's summation order.
  constexpr int kR = Eigen::internal::packet_traits<float>::size >= 16 ? 8 : 4;
  constexpr Eigen::Index kTile = 32;
  const Eigen::Index tiles = (out + kTile - 1) / kTile;
  tbb::parallel_for(Eigen::Index{0}, tiles, [&](Eigen::Index tile) {
    const Eigen::Index o0 = tile * kTile, o_end = std::min(out, o0 + kTile);
    Eigen::Index t = 0;
    for (; t + kR <= n; t += kR) {
      const float* xr[kR];
      for (int r = 0; r < kR; ++r) xr[r] = x.row(t + r).data();
      dot_span<kR, 3>(xr, w, o0, o_end, y.row(t).data(), out);
    }
    for (; t < n; ++t) {
      const float* xr[1] = {x.row(t).data()};
      dot_span<1, 8>(xr, w, o0, o_end, y.row(t).data(), out);
    }
  });
}

void apply_rope(MatrixRM& x, int heads, int head_dim, int pos0, double theta, RopeStyle style, int pos_step) {
  RopeTable table;
  table.prepare(x.rows(), head_dim, pos0, theta, pos_step);
  apply_rope(x, heads, head_dim, style, table);
}

namespace {

// Causal attention of n new queries (absolute positions pos0..pos0+n-1) against the cache's
// first pos0+n positions. Writes out [n, H*d]. Parallel over (head, query block); column sums
// are accumulated per block and reduced in block order, so they too are deterministic.
// keep: this layer's [Hkv, keep_len] flags or null (ForwardOptions::keep). kv_packed: scratch
// for the packed keys and values, reused across layers.
void attention(const ModelConfig& c, const MatrixRM& q, const float* keys, const float* values, int capacity,
               int pos0, int colsum_len, const std::uint8_t* keep, int keep_len, MatrixRM& out,
               std::vector<float>& colsum, std::vector<PackedWeights>& kv_packed) {
  const int n = static_cast<int>(q.rows()), d = c.head_dim, H = c.n_heads, G = c.group_size();
  const int qd = c.q_dim();
  constexpr int kQueryBlock = 64;
  const int n_blocks = (n + kQueryBlock - 1) / kQueryBlock;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  out.resize(n, qd);
  // Query rows that contribute to the column sums: absolute position < colsum_len.
  const int colsum_rows = std::clamp(colsum_len - pos0, 0, n);
  const int colsum_blocks = (colsum_rows + kQueryBlock - 1) / kQueryBlock;
  std::vector<float> partial(static_cast<std::size_t>(H) * colsum_blocks * std::max(colsum_len, 0), 0.0f);  // [H, blocks, colsum_len]

  // Keys and values of every KV head packed once for linear_block: keys as the weights of
  // Q·Kᵀ [pos0 + n keys, d], values as those of P·V (Vᵀ [d, pos0 + n]).
  kv_packed.resize(2 * static_cast<std::size_t>(c.n_kv_heads));
  const PackedWeights* kp = kv_packed.data();
  const PackedWeights* vp = kv_packed.data() + c.n_kv_heads;
  tbb::parallel_for(0, 2 * c.n_kv_heads, [&](int i) {
    const int g = i % c.n_kv_heads;
    const bool v = i >= c.n_kv_heads;
    const float* src = (v ? values : keys) + static_cast<std::ptrdiff_t>(g) * capacity * d;
    kv_packed[i].assign(ConstMapMatrixRM(src, pos0 + n, d), v);
  });
  tbb::parallel_for(tbb::blocked_range<int>(0, H * n_blocks), [&](const tbb::blocked_range<int>& range) {
    MatrixRM scores;  // [rows of the query block, visible keys]
    for (int job = range.begin(); job < range.end(); ++job) {
      const int h = job / n_blocks, b = job % n_blocks, g = h / G;
      const int r0 = b * kQueryBlock, nr = std::min(kQueryBlock, n - r0);
      const int len = pos0 + r0 + nr;  // keys visible to the last row of the block
      scores.resize(nr, len);
      linear_block(q.data() + static_cast<std::ptrdiff_t>(r0) * qd + h * d, qd, kp[g], d, nr, 0, len, scores.data(), len);
      for (int r = 0; r < nr; ++r) {
        const int visible = pos0 + r0 + r + 1;
        float* s = scores.row(r).data();
        Eigen::Map<Eigen::ArrayXf>(s, visible) *= scale;
        const std::uint8_t* kept = keep && pos0 + r0 + r >= keep_len ? keep + static_cast<std::size_t>(g) * keep_len : nullptr;
        if (kept)
          for (int j = 0; j < keep_len; ++j)
            if (!kept[j]) s[j] = -std::numeric_limits<float>::infinity();
        // Softmax over the visible keys with Eigen's vectorised exp (the hot loop of prefill).
        Eigen::Map<Eigen::ArrayXf> row(s, visible);
        row = (row - row.maxCoeff()).exp();
        if (kept)  // exactly 0, whatever the vectorised exp makes of −inf
          for (int j = 0; j < keep_len; ++j)
            if (!kept[j]) s[j] = 0.0f;
        row *= 1.0f / row.sum();
        std::fill(s + visible, s + len, 0.0f);
        if (r0 + r < colsum_rows) {
          float* acc = partial.data() + (static_cast<std::size_t>(h) * colsum_blocks + b) * colsum_len;
          const int cols = std::min(visible, colsum_len);
          for (int j = 0; j < cols; ++j) acc[j] += s[j];
        }
      }
      linear_block(scores.data(), len, vp[g], len, nr, 0, d, out.data() + static_cast<std::ptrdiff_t>(r0) * qd + h * d, qd);
    }
  });
  if (colsum_len > 0) {
    colsum.assign(static_cast<std::size_t>(H) * colsum_len, 0.0f);
    for (int h = 0; h < H; ++h)
      for (int b = 0; b < colsum_blocks; ++b) {
        const float* src = partial.data() + (static_cast<std::size_t>(h) * colsum_blocks + b) * colsum_len;
        float* dst = colsum.data() + static_cast<std::size_t>(h) * colsum_len;
        for (int j = 0; j < colsum_len; ++j) dst[j] += src[j];
      }
  }
}

}  // namespace

CpuForward::CpuForward(const Model& model) : model_(model) {
  std::vector<const MatrixRM*> weights{&model.output_matrix()};
  for (const LayerWeights& w : model.layers)
    for (const MatrixRM* m : {&w.wq, &w.wk, &w.wv, &w.wo, &w.w_gate, &w.w_up, &w.w_down}) weights.push_back(m);
  for (const MatrixRM* m : weights) packed_.emplace(m, PackedWeights(*m));
}

const PackedWeights& CpuForward::packed(const MatrixRM& w) const {
  const auto it = packed_.find(&w);
  KVSIM_CHECK(it != packed_.end(), "CpuForward::packed: a matrix [", w.rows(), ", ", w.cols(), "] not of the model");
  return it->second;
}

MatrixRM CpuForward::forward(std::span<const int> tokens, KvCache& cache, const ForwardOptions& options,
                             const LayerObserver& observer) const {
  const ModelConfig& c = model_.config;
  const int n = static_cast<int>(tokens.size()), pos0 = cache.length();
  if (n == 0) fail<InputError>("forward: no tokens");
  if (pos0 + n > cache.capacity())
    fail<InputError>("forward: ", pos0 + n, " positions exceed the cache capacity ", cache.capacity());
  const int D = c.hidden, d = c.head_dim, Hkv = c.n_kv_heads;
  if (!options.keep.empty() &&
      (options.keep_len < 0 || options.keep_len > pos0 + n ||
       options.keep.size() != static_cast<std::size_t>(c.n_layers) * Hkv * options.keep_len))
    fail<InputError>("forward: keep mask of ", options.keep.size(), " flags, expected [", c.n_layers, ", ", Hkv, ", ",
                     options.keep_len, "] with keep_len <= ", pos0 + n);

  MatrixRM x(n, D);  // the residual stream [n, D]
  for (int t = 0; t < n; ++t) {
    if (tokens[t] < 0 || tokens[t] >= c.vocab)
      fail<InputError>("forward: token id ", tokens[t], " at position ", pos0 + t, " is outside the vocabulary [0, ",
                       c.vocab, ")");
    x.row(t) = model_.embed.row(tokens[t]);
  }
  LayerScratch s;
  const LinearFn product = [this](const MatrixRM& in, const MatrixRM& w, MatrixRM& out) { linear(in, packed(w), out); };
  std::vector<float> colsum;                // [H, colsum_len] of the current layer
  std::vector<PackedWeights> kv_packed;     // [2 Hkv]: keys, then values, of the current layer
  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& w = model_.layers[l];
    layer_qkv(c, w, x, pos0, 1, s, product);
    // Scatter the new keys/values into the cache layout [Hkv, capacity, d].
    float* kc = cache.keys(l);
    float* vc = cache.values(l);
    for (int g = 0; g < Hkv; ++g)
      for (int t = 0; t < n; ++t) {
        const std::size_t dst = (static_cast<std::size_t>(g) * cache.capacity() + pos0 + t) * d;
        std::copy_n(s.k.row(t).data() + g * d, d, kc + dst);
        std::copy_n(s.v.row(t).data() + g * d, d, vc + dst);
      }
    const std::uint8_t* keep =
        options.keep.empty() ? nullptr : options.keep.data() + static_cast<std::size_t>(l) * Hkv * options.keep_len;
    attention(c, s.q, kc, vc, cache.capacity(), pos0, options.colsum_len, keep, options.keep_len, s.att, colsum, kv_packed);
    if (observer) {
      LayerActivations act;
      act.layer = l;
      act.pos0 = pos0;
      act.n = n;
      act.q = &s.q;
      act.attn_colsum = options.colsum_len > 0 ? colsum.data() : nullptr;
      act.colsum_len = options.colsum_len;
      observer(act);
    }
    layer_out_ffn(c, w, x, s, product);
  }
  cache.set_length(pos0 + n);
  if (options.final_residual) *options.final_residual = x;
  MatrixRM out;  // [n, D] after the final norm
  rms_norm(x, model_.final_norm, c.norm_eps, out);
  return out;
}

MatrixRM CpuForward::logits(const MatrixRM& hidden) const {
  MatrixRM out;
  linear(hidden, packed(model_.output_matrix()), out);
  return out;
}

namespace {

// A KvCache on the host, advanced by CpuForward::forward.
class CpuSequence : public DecodeSequence {
 public:
  CpuSequence(const CpuForward& fwd, int capacity) : fwd_(fwd), cache_(fwd.model().config, capacity) {}
  std::vector<float> append(std::span<const int> tokens) override {
    const MatrixRM h = fwd_.forward(tokens, cache_);
    const MatrixRM logits = fwd_.logits(h.bottomRows(1));
    return std::vector<float>(logits.data(), logits.data() + logits.size());
  }

 private:
  const CpuForward& fwd_;
  KvCache cache_;
};

// Copies rows [r0, r0+n) of Q [N, H*d] into [H, n, d].
void gather_heads(const MatrixRM& q, int r0, int n, int heads, int d, std::vector<float>& out) {
  out.resize(static_cast<std::size_t>(heads) * n * d);
  for (int h = 0; h < heads; ++h)
    for (int t = 0; t < n; ++t)
      std::copy_n(q.row(r0 + t).data() + h * d, d, out.data() + (static_cast<std::size_t>(h) * n + t) * d);
}

}  // namespace

std::unique_ptr<DecodeSequence> CpuForward::start(int capacity) const {
  return std::make_unique<CpuSequence>(*this, capacity);
}

void CpuForward::record(std::span<const int> tokens, const RecordShape& shape, PromptSink& sink) const {
  const ModelConfig& c = model_.config;
  const int N = shape.n_tokens(), T = shape.T, M = shape.M, W = shape.W, K = shape.K;
  const int d = c.head_dim, H = c.n_heads;

  std::vector<std::vector<float>> q_window(c.n_layers), q_cont(c.n_layers), colsum(c.n_layers);
  KvCache cache(c, N);
  ForwardOptions fo;
  fo.colsum_len = T;
  MatrixRM residual;  // [N, D] before the final norm
  fo.final_residual = &residual;
  const MatrixRM hidden = forward(tokens, cache, fo, [&](const LayerActivations& a) {
    gather_heads(*a.q, T - W, W, H, d, q_window[a.layer]);
    gather_heads(*a.q, T, M, H, d, q_cont[a.layer]);
    colsum[a.layer].assign(a.attn_colsum, a.attn_colsum + static_cast<std::size_t>(H) * T);
  });

  const std::size_t kv_size = static_cast<std::size_t>(c.n_kv_heads) * N * d;
  for (int l = 0; l < c.n_layers; ++l) {
    LayerView v;
    v.keys = std::span<const float>(cache.keys(l), kv_size);
    v.values = std::span<const float>(cache.values(l), kv_size);
    v.q_window = q_window[l];
    v.q_cont = q_cont[l];
    v.attn_colsum = colsum[l];
    sink.layer(l, v);
  }

  // Log-probs need the logits of positions 0..N-2 (position t predicts token t+1), taken in
  // row blocks so [N, V] is never held at once.
  PromptOutputs out;
  out.tokens.assign(tokens.begin(), tokens.end());
  out.prompt_logprob.assign(T, 0.0f);
  out.cont_logprob.assign(M, 0.0f);
  out.cont_topk_ids.assign(static_cast<std::size_t>(M) * K, 0);
  out.cont_topk_logits.assign(static_cast<std::size_t>(M) * K, 0.0f);
  out.cont_logsumexp.assign(M, 0.0f);
  out.cont_residual.assign(residual.data() + static_cast<std::ptrdiff_t>(T) * c.hidden,
                           residual.data() + static_cast<std::ptrdiff_t>(N) * c.hidden);
  const MatrixRM& cls = model_.output_matrix();
  constexpr int kBlock = 128;
  const int rows = N - 1;
  MatrixRM logits;
  for (int r0 = 0; r0 < rows; r0 += kBlock) {
    const int nr = std::min(kBlock, rows - r0);
    linear(hidden.middleRows(r0, nr), packed(cls), logits);
    tbb::parallel_for(tbb::blocked_range<int>(0, nr), [&](const tbb::blocked_range<int>& range) {
      std::vector<int> order;
      for (int r = range.begin(); r < range.end(); ++r) {
        const int t = r0 + r;  // position whose logits predict token t+1
        const float* z = logits.row(r).data();
        const Eigen::Map<const Eigen::ArrayXf> zr(z, c.vocab);
        const float mx = zr.maxCoeff();
        const float lse = mx + std::log((zr - mx).exp().sum());
        const float lp = z[tokens[t + 1]] - lse;
        if (t + 1 < T) {
          out.prompt_logprob[t + 1] = lp;
        } else {
          const int j = t + 1 - T;
          out.cont_logprob[j] = lp;
          out.cont_logsumexp[j] = lse;
          order.resize(c.vocab);
          std::iota(order.begin(), order.end(), 0);
          // Descending logits; ties by lower id, so the selection is deterministic.
          std::partial_sort(order.begin(), order.begin() + K, order.end(),
                            [z](int a, int b) { return z[a] > z[b] || (z[a] == z[b] && a < b); });
          for (int k = 0; k < K; ++k) {
            out.cont_topk_ids[static_cast<std::size_t>(j) * K + k] = order[k];
            out.cont_topk_logits[static_cast<std::size_t>(j) * K + k] = z[order[k]];
          }
        }
      }
    });
  }
  sink.outputs(out);
}

}  // namespace kvsim
