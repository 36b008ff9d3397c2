#include "sim/generate.hpp"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "tracer/layer_ops.hpp"

namespace kvsim {

namespace {

// The kept prompt positions of one job per (layer, KV head), ascending: positions
// [offsets[lg], offsets[lg+1]) for lg = l·Hkv + g. A full job (empty or all-ones flags) has no
// lists and attends to every position 0..T−1.
struct KeptLists {
  bool full = true;
  std::vector<std::int32_t> offsets;    // [L·Hkv + 1]
  std::vector<std::int32_t> positions;  // [Σ kept]

  int count(int lg, int T) const { return full ? T : offsets[lg + 1] - offsets[lg]; }
  const std::int32_t* list(int lg) const { return full ? nullptr : positions.data() + offsets[lg]; }
};

KeptLists kept_lists(std::span<const std::uint8_t> keep, int n_rows, int T) {
  KeptLists k;
  if (keep.empty() || std::all_of(keep.begin(), keep.end(), [](std::uint8_t f) { return f != 0; })) return k;
  k.full = false;
  k.offsets.resize(static_cast<std::size_t>(n_rows) + 1, 0);
  k.positions.reserve(static_cast<std::size_t>(std::count_if(keep.begin(), keep.end(), [](std::uint8_t f) { return f != 0; })));
  for (int lg = 0; lg < n_rows; ++lg) {
    const std::uint8_t* row = keep.data() + static_cast<std::size_t>(lg) * T;
    for (int i = 0; i < T; ++i)
      if (row[i]) k.positions.push_back(i);
    k.offsets[lg + 1] = static_cast<std::int32_t>(k.positions.size());
  }
  return k;
}

}  // namespace

GreedyGenerator::GreedyGenerator(const CpuForward& fwd, const PromptCache& cache, int first, std::vector<int> stop)
    : fwd_(fwd), cache_(cache), first_(first), stop_(std::move(stop)) {
  const ModelConfig& c = fwd_.model().config;
  check_prompt_cache(c, cache_, "generate");
  if (first_ < 0 || first_ >= c.vocab)
    fail<InputError>("generate: first token ", first_, " is outside the vocabulary [0, ", c.vocab, ")");
  for (int id : stop_)
    if (id < 0 || id >= c.vocab) fail<InputError>("generate: stop token ", id, " is outside the vocabulary [0, ", c.vocab, ")");
}

std::vector<std::vector<int>> GreedyGenerator::generate(std::span<const std::vector<std::uint8_t>> keeps, int max_new) const {
  const Model& m = fwd_.model();
  const ModelConfig& c = m.config;
  const int J = static_cast<int>(keeps.size()), T = cache_.T, L = c.n_layers, Hkv = c.n_kv_heads, d = c.head_dim;
  const int G = c.group_size(), V = c.vocab;
  const std::size_t mask_size = static_cast<std::size_t>(L) * Hkv * T;
  if (max_new < 0) fail<InputError>("generate: max_new must be >= 0, got ", max_new);
  for (int b = 0; b < J; ++b)
    if (!keeps[b].empty() && keeps[b].size() != mask_size)
      fail<InputError>("generate: job ", b, ": keep mask of ", keeps[b].size(), " flags, expected [", L, ", ", Hkv, ", ",
                       T, "] = ", mask_size);
  std::vector<std::vector<int>> out(J);
  if (J == 0 || max_new == 0) return out;

  const auto is_stop = [&](int id) { return std::find(stop_.begin(), stop_.end(), id) != stop_.end(); };
  std::vector<char> running(J, 0);
  std::vector<int> last(J, first_);  // the token each row feeds next (finished rows: any valid id)
  for (int b = 0; b < J; ++b)
    if (!is_stop(first_)) {
      out[b].push_back(first_);
      running[b] = max_new > 1;
    }

  std::vector<KeptLists> kept(J);
  int max_kept = 0;
  tbb::parallel_for(0, J, [&](int b) { kept[b] = kept_lists(keeps[b], L * Hkv, T); });
  for (int b = 0; b < J; ++b)
    for (int lg = 0; lg < L * Hkv; ++lg) max_kept = std::max(max_kept, kept[b].count(lg, T));

  // Generated keys/values, never evicted: [L, J, Hkv, cap, d] each. g0 is fed at step 0 and
  // the last token is never fed, so max_new − 1 positions suffice.
  const int cap = max_new - 1;
  const std::size_t tail_size = static_cast<std::size_t>(L) * J * Hkv * cap * d;
  std::vector<float> tail_k(tail_size), tail_v(tail_size);
  const auto tail_at = [&](int l, int b, int g) { return ((static_cast<std::size_t>(l) * J + b) * Hkv + g) * cap * d; };
  // The longest context of a job, and score rows padded to whole SIMD packets.
  const int ctx_max = max_kept + cap;
  constexpr int kPacket = Eigen::internal::packet_traits<float>::size;
  const auto padded = [](int n) { return (n + kPacket - 1) / kPacket * kPacket; };
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));

  MatrixRM x(J, c.hidden), hidden, logits;  // [J, D], [J, D], [J, V]
  LayerScratch s;
  for (int t = 0; t < cap && std::find(running.begin(), running.end(), 1) != running.end(); ++t) {
    const int pos = T + t;
    for (int b = 0; b < J; ++b) x.row(b) = m.embed.row(last[b]);
    for (int l = 0; l < L; ++l) {
      const LayerWeights& w = m.layers[l];
      layer_qkv(c, w, x, pos, 0, s, linear_rowwise);  // every row at position T + t
      s.att.resize(J, c.q_dim());
      tbb::parallel_for(tbb::blocked_range<int>(0, J * Hkv), [&](const tbb::blocked_range<int>& range) {
        // Scratch of this range: the job's context gathered contiguous [n, d] (kept prompt
        // rows, then its own), and scores [G, n] in rows that start on a packet boundary (Eigen
        // allocates aligned), so the softmax's vectorised exp covers the same elements of a job
        // whatever the batch.
        MatrixRM k_ctx(ctx_max, d), v_ctx(ctx_max, d);
        Eigen::ArrayXf score_buf(static_cast<Eigen::Index>(G) * padded(ctx_max));
        for (int task = range.begin(); task < range.end(); ++task) {
          const int b = task / Hkv, g = task % Hkv, lg = l * Hkv + g;
          MapMatrixRM o(s.att.row(b).data() + static_cast<std::ptrdiff_t>(g) * G * d, G, d);  // [G, d]
          if (!running[b]) {  // a finished job's row is computed and ignored
            o.setZero();
            continue;
          }
          float* kt = tail_k.data() + tail_at(l, b, g);
          float* vt = tail_v.data() + tail_at(l, b, g);
          std::copy_n(s.k.row(b).data() + g * d, d, kt + static_cast<std::size_t>(t) * d);
          std::copy_n(s.v.row(b).data() + g * d, d, vt + static_cast<std::size_t>(t) * d);
          const int n_prompt = kept[b].count(lg, T), n = n_prompt + t + 1, n_pad = padded(n);
          const std::int32_t* list = kept[b].list(lg);
          const float* kp = cache_.keys[l].data() + static_cast<std::size_t>(g) * cache_.stride * d;
          const float* vp = cache_.values[l].data() + static_cast<std::size_t>(g) * cache_.stride * d;
          for (int jj = 0; jj < n_prompt; ++jj) {
            const std::size_t i = static_cast<std::size_t>(list ? list[jj] : jj) * d;
            std::copy_n(kp + i, d, k_ctx.row(jj).data());
            std::copy_n(vp + i, d, v_ctx.row(jj).data());
          }
          std::copy_n(kt, static_cast<std::size_t>(t + 1) * d, k_ctx.row(n_prompt).data());
          std::copy_n(vt, static_cast<std::size_t>(t + 1) * d, v_ctx.row(n_prompt).data());
          const ConstMapMatrixRM q(s.q.row(b).data() + static_cast<std::ptrdiff_t>(g) * G * d, G, d);  // [G, d]
          StridedMap scores(score_buf.data(), G, n, Eigen::OuterStride<>(n_pad));                      // [G, n]
          scores.noalias() = (q * k_ctx.topRows(n).transpose()) * scale;
          // Softmax in fp32 with the maximum subtracted, as the forward's attention.
          for (int h = 0; h < G; ++h) {
            Eigen::Map<Eigen::ArrayXf> p(score_buf.data() + static_cast<std::ptrdiff_t>(h) * n_pad, n);
            p = (p - p.maxCoeff()).exp();
            p *= 1.0f / p.sum();
          }
          o.noalias() = scores * v_ctx.topRows(n);
        }
      });
      layer_out_ffn(c, w, x, s, linear_rowwise);
    }
    rms_norm(x, m.final_norm, c.norm_eps, hidden);
    linear_rowwise(hidden, m.output_matrix(), logits);
    for (int b = 0; b < J; ++b) {
      if (!running[b]) continue;
      const float* z = logits.row(b).data();
      int next = 0;
      for (int v = 1; v < V; ++v)
        if (z[v] > z[next]) next = v;  // ties: the lowest id
      if (is_stop(next)) {
        running[b] = 0;
        continue;
      }
      out[b].push_back(next);
      last[b] = next;
      if (static_cast<int>(out[b].size()) == max_new) running[b] = 0;
    }
  }
  return out;
}

double GreedyGenerator::flops_per_job(int new_tokens, int kept_per_head) const {
  const ModelConfig& c = fwd_.model().config;
  const double steps = std::max(new_tokens - 1, 0);
  const double per_step = c.n_layers * (2.0 * c.hidden * (2.0 * c.q_dim() + 2.0 * c.kv_dim()) + 6.0 * c.hidden * c.ffn_hidden) +
                          2.0 * c.hidden * c.vocab;
  // Step t attends to kept_per_head + t + 1 keys: q·k and p·v, 2 flops each per dimension.
  const double keys = steps * kept_per_head + steps * (steps + 1) / 2;
  return steps * per_step + 4.0 * c.n_layers * c.n_heads * c.head_dim * keys;
}

std::size_t GreedyGenerator::peak_bytes(int jobs, int max_new, int kept_per_head) const {
  const ModelConfig& c = fwd_.model().config;
  const std::size_t J = jobs, cap = std::max(max_new - 1, 0), L = c.n_layers, Hkv = c.n_kv_heads;
  const std::size_t tails = 2 * L * J * Hkv * cap * c.head_dim;
  const std::size_t lists = kept_per_head < cache_.T ? J * L * Hkv * kept_per_head : 0;
  const std::size_t ctx = kept_per_head + cap, scratch = 2 * ctx * c.head_dim + c.group_size() * (ctx + 16);
  const std::size_t acts = J * (4 * c.hidden + 2 * c.q_dim() + 2 * c.kv_dim() + 2 * c.ffn_hidden + c.vocab);
  return (tails + lists + scratch + acts) * sizeof(float);
}

}  // namespace kvsim
