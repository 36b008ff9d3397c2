#include "metrics/layer_metrics.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "core/matrix.hpp"

namespace kvsim {

namespace {

using RowMajorD = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Reductions in a fixed order, in double. Not Eigen's .sum()/.norm() on maps: their
// vectorised loops peel by the address's alignment, which depends on which thread's malloc
// arena served the buffer, so the rounding (and the output bytes) would depend on the thread
// count.
double ordered_sum(const float* x, int n) {
  double s = 0;
  for (int i = 0; i < n; ++i) s += x[i];
  return s;
}
double ordered_norm(const float* x, int n) {
  double s = 0;
  for (int i = 0; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  return std::sqrt(s);
}

struct Shape {
  int H, Hkv, G, d, D, T, M, N;
  explicit Shape(const PromptView& v)
      : H(v.n_heads), Hkv(v.n_kv_heads), G(v.n_heads / v.n_kv_heads), d(v.head_dim), D(v.hidden), T(v.T), M(v.M),
        N(v.T + v.M) {}
};

}  // namespace

LayerReference layer_reference(const PromptView& view, int layer) {
  const Shape s(view);
  const LayerData& ly = view.layers[layer];
  KVSIM_CHECK(ly.cont_attn.size() == static_cast<std::size_t>(s.H) * s.M * s.N, "continuation attention not derived");
  KVSIM_CHECK(ly.w_o.size() == static_cast<std::size_t>(s.D) * s.H * s.d, "W_O missing for layer ", layer);
  LayerReference r;
  r.layer = layer;
  const int Hd = s.H * s.d;
  r.o.assign(static_cast<std::size_t>(s.M) * Hd, 0.0f);
  r.z_total.assign(static_cast<std::size_t>(s.H) * s.M, 0.0f);
  r.z_prompt.assign(r.z_total.size(), 0.0f);
  r.z_cont.assign(r.z_total.size(), 0.0f);
  r.n_cont.assign(static_cast<std::size_t>(s.H) * s.M * s.d, 0.0f);
  for (int h = 0; h < s.H; ++h) {
    const ConstMapMatrixRM a(ly.cont_attn.data() + static_cast<std::size_t>(h) * s.M * s.N, s.M, s.N);
    const ConstMapMatrixRM v(ly.values.data() + static_cast<std::size_t>(h / s.G) * s.N * s.d, s.N, s.d);
    StridedMap o(r.o.data() + static_cast<std::size_t>(h) * s.d, s.M, s.d, Eigen::OuterStride<>(Hd));
    o.noalias() = a * v;
    MapMatrixRM nc(r.n_cont.data() + static_cast<std::size_t>(h) * s.M * s.d, s.M, s.d);
    nc.noalias() = a.rightCols(s.M) * v.bottomRows(s.M);
    for (int t = 0; t < s.M; ++t) {
      const std::size_t ht = static_cast<std::size_t>(h) * s.M + t;
      r.z_prompt[ht] = static_cast<float>(ordered_sum(a.data() + static_cast<std::size_t>(t) * s.N, s.T));
      r.z_cont[ht] = static_cast<float>(ordered_sum(a.data() + static_cast<std::size_t>(t) * s.N + s.T, s.M));
      r.z_total[ht] = r.z_prompt[ht] + r.z_cont[ht];
      o.row(t) /= r.z_total[ht];
    }
  }
  const ConstMapMatrixRM o_all(r.o.data(), s.M, Hd);
  const ConstMapMatrixRM wo(ly.w_o.data(), s.D, Hd);
  const RowMajorD projected = o_all * wo.transpose();  // [M, D]
  r.o_norm.resize(s.M);
  r.wo_norm.resize(s.M);
  for (int t = 0; t < s.M; ++t) {
    r.o_norm[t] = static_cast<float>(ordered_norm(o_all.data() + static_cast<std::size_t>(t) * Hd, Hd));
    r.wo_norm[t] = static_cast<float>(ordered_norm(projected.data() + static_cast<std::size_t>(t) * s.D, s.D));
  }
  r.flops = 2.0 * s.H * s.M * s.N * s.d + 2.0 * s.M * Hd * s.D;
  return r;
}

namespace {

// One (query head, order): δ for each requested kept count, written into delta rows of the
// budgets that use it, and Σ over t of the recall for each of them.
struct Cut {
  int count;
  int budget;
};

}  // namespace

double layer_metrics(const PromptView& view, const LayerReference& ref, const Selection& sel,
                     std::span<LayerMetrics> out, std::span<float> wo_delta) {
  const Shape s(view);
  const LayerData& ly = view.layers[ref.layer];
  const int nb = sel.n_budgets(), Hd = s.H * s.d, l = ref.layer;
  KVSIM_CHECK(static_cast<int>(out.size()) == nb && sel.T() == s.T);
  RowMajorD delta = RowMajorD::Zero(static_cast<Eigen::Index>(nb) * s.M, Hd);  // [nb*M, H*d]
  std::vector<double> recall_sum(nb, 0.0);
  double flops = 0;
  Eigen::VectorXf z(s.M);
  RowMajorD acc(s.M, s.d), gathered_a, gathered_v;
  for (int g = 0; g < s.Hkv; ++g) {
    const ConstMapMatrixRM v(ly.values.data() + static_cast<std::size_t>(g) * s.N * s.d, s.N, s.d);
    for (int o = 0; o < sel.n_orders(); ++o) {
      std::vector<Cut> cuts;
      for (int b = 0; b < nb; ++b)
        if (sel.shared_order() || b == o) cuts.push_back({sel.count(b, l, g), b});
      std::sort(cuts.begin(), cuts.end(), [](const Cut& x, const Cut& y) { return x.count < y.count || (x.count == y.count && x.budget < y.budget); });
      const auto order = sel.order(o, l, g);
      for (int h = g * s.G; h < (g + 1) * s.G; ++h) {
        const ConstMapMatrixRM a(ly.cont_attn.data() + static_cast<std::size_t>(h) * s.M * s.N, s.M, s.N);
        const ConstMapMatrixRM nc(ref.n_cont.data() + static_cast<std::size_t>(h) * s.M * s.d, s.M, s.d);
        const ConstStridedMap o_ref(ref.o.data() + static_cast<std::size_t>(h) * s.d, s.M, s.d, Eigen::OuterStride<>(Hd));
        const float* zt = ref.z_total.data() + static_cast<std::size_t>(h) * s.M;
        const float* zp = ref.z_prompt.data() + static_cast<std::size_t>(h) * s.M;
        const float* zc = ref.z_cont.data() + static_cast<std::size_t>(h) * s.M;
        // Adds the tokens order[from..to) into acc (Σ a v) and z (Σ a).
        auto add_range = [&](int from, int to) {
          const int k = to - from;
          if (k <= 0) return;
          gathered_a.resize(s.M, k);
          gathered_v.resize(k, s.d);
          for (int j = 0; j < k; ++j) {
            const int i = order[from + j];
            gathered_a.col(j) = a.col(i);
            gathered_v.row(j) = v.row(i);
          }
          acc.noalias() += gathered_a * gathered_v;
          for (int t = 0; t < s.M; ++t) z[t] += static_cast<float>(ordered_sum(&gathered_a(t, 0), k));
          flops += 2.0 * s.M * k * s.d;
        };
        // Recall: Σ_{j∈S} a_j along the order, always from the front so it is non-decreasing
        // in the kept count whatever the rounding.
        {
          std::vector<double> zs(s.M, 0.0);
          int at = 0;
          for (const Cut& c : cuts) {
            for (; at < c.count; ++at) {
              const int i = order[at];
              for (int t = 0; t < s.M; ++t) zs[t] += a(t, i);
            }
            // Clamped at 1 so rounding of the two sums cannot push a near-full set above the
            // full one; the full set is exactly 1.
            for (int t = 0; t < s.M; ++t)
              recall_sum[c.budget] += c.count >= s.T || zp[t] <= 0 ? 1.0 : std::min(1.0, zs[t] / zp[t]);
          }
        }
        // Small counts: sum the kept tokens, front to back.
        acc.setZero();
        z.setZero();
        int at = 0;
        std::size_t split = 0;
        for (; split < cuts.size() && 2 * cuts[split].count <= s.T; ++split) {
          add_range(at, cuts[split].count);
          at = cuts[split].count;
          auto d_rows = delta.block(static_cast<Eigen::Index>(cuts[split].budget) * s.M, static_cast<Eigen::Index>(h) * s.d, s.M, s.d);
          for (int t = 0; t < s.M; ++t) d_rows.row(t) = (acc.row(t) + nc.row(t)) / (z[t] + zc[t]) - o_ref.row(t);
        }
        // Large counts: sum the dropped tokens, back to front; δ = (o·z_D − n_D) / (Z − z_D).
        acc.setZero();
        z.setZero();
        at = s.T;
        for (std::size_t c = cuts.size(); c-- > split;) {
          add_range(cuts[c].count, at);
          at = std::min(at, cuts[c].count);
          if (cuts[c].count >= s.T) continue;  // nothing dropped: δ stays exactly 0
          auto d_rows = delta.block(static_cast<Eigen::Index>(cuts[c].budget) * s.M, static_cast<Eigen::Index>(h) * s.d, s.M, s.d);
          for (int t = 0; t < s.M; ++t) d_rows.row(t) = (o_ref.row(t) * z[t] - acc.row(t)) / (zt[t] - z[t]);
        }
      }
    }
  }
  const ConstMapMatrixRM wo(ly.w_o.data(), s.D, Hd);
  const RowMajorD projected = delta * wo.transpose();  // [nb*M, D]
  flops += 2.0 * nb * s.M * Hd * s.D;
  if (!wo_delta.empty()) {
    KVSIM_CHECK(wo_delta.size() == static_cast<std::size_t>(nb) * s.M * s.D, "layer_metrics: wo_delta size");
    for (Eigen::Index i = 0; i < projected.size(); ++i) wo_delta[static_cast<std::size_t>(i)] = static_cast<float>(projected.data()[i]);
  }
  for (int b = 0; b < nb; ++b) {
    double e = 0, ev = 0;
    for (int t = 0; t < s.M; ++t) {
      const Eigen::Index row = static_cast<Eigen::Index>(b) * s.M + t;
      if (ref.wo_norm[t] > 0) e += ordered_norm(&projected(row, 0), s.D) / ref.wo_norm[t];
      if (ref.o_norm[t] > 0) ev += ordered_norm(&delta(row, 0), Hd) / ref.o_norm[t];
    }
    out[b].out_err = s.M > 0 ? e / s.M : 0.0;
    out[b].out_err_value = s.M > 0 ? ev / s.M : 0.0;
    out[b].recall = s.M > 0 ? recall_sum[b] / (static_cast<double>(s.M) * s.H) : 1.0;
    long kept = 0;
    for (int g = 0; g < s.Hkv; ++g) kept += sel.count(b, l, g);
    out[b].kept = kept;
  }
  return flops;
}

}  // namespace kvsim
