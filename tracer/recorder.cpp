#include "tracer/recorder.hpp"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.hpp"

namespace kvsim {

namespace {

// Copies rows [r0, r0+n) of Q [N, H*d] into [H, n, d].
void gather_heads(const MatrixRM& q, int r0, int n, int heads, int d, std::vector<float>& out) {
  out.resize(static_cast<std::size_t>(heads) * n * d);
  for (int h = 0; h < heads; ++h)
    for (int t = 0; t < n; ++t)
      std::copy_n(q.row(r0 + t).data() + h * d, d, out.data() + (static_cast<std::size_t>(h) * n + t) * d);
}

}  // namespace

int record_prompt(const CpuForward& fwd, std::span<const int> tokens, int n_prompt, const RecordOptions& options,
                  PromptSink& sink) {
  const ModelConfig& c = fwd.model().config;
  const int N = static_cast<int>(tokens.size()), T = n_prompt, M = N - T;
  if (T <= 0) fail<InputError>("record: empty prompt");
  if (M < 0) fail<InputError>("record: prompt length ", T, " exceeds the ", N, " tokens given");
  if (options.window <= 0) fail<InputError>("record: window must be positive, got ", options.window);
  if (options.topk <= 0 || options.topk > c.vocab)
    fail<InputError>("record: topk must be in [1, ", c.vocab, "], got ", options.topk);
  const int W = std::min(options.window, T), d = c.head_dim, H = c.n_heads, K = options.topk;

  std::vector<std::vector<float>> q_window(c.n_layers), q_cont(c.n_layers), colsum(c.n_layers);
  KvCache cache(c, N);
  ForwardOptions fo;
  fo.colsum_len = T;
  MatrixRM residual;  // [N, D] before the final norm
  fo.final_residual = &residual;
  const MatrixRM hidden = fwd.forward(tokens, cache, fo, [&](const LayerActivations& a) {
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
  const MatrixRM& cls = fwd.model().output_matrix();
  constexpr int kBlock = 128;
  const int rows = N - 1;
  MatrixRM logits;
  for (int r0 = 0; r0 < rows; r0 += kBlock) {
    const int nr = std::min(kBlock, rows - r0);
    linear(hidden.middleRows(r0, nr), cls, logits);
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
  return W;
}

}  // namespace kvsim
