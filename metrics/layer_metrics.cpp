#include "metrics/layer_metrics.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "core/matrix.hpp"

namespace kvsim {

namespace {

using RowMajorF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowMajorD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MapRowMajorD = Eigen::Map<RowMajorD>;
using ConstMapRowMajorD = Eigen::Map<const RowMajorD>;
using ConstStridedMapD = Eigen::Map<const RowMajorD, 0, Eigen::OuterStride<>>;

// Reductions in a fixed order, in double. Not Eigen's .sum()/.norm() on maps: their
// vectorised loops peel by the address's alignment, which depends on which thread's malloc
// arena served the buffer, so the rounding (and the output bytes) would depend on the thread
// count.
template <typename Real>
double ordered_sum(const Real* x, int n) {
  double s = 0;
  for (int i = 0; i < n; ++i) s += x[i];
  return s;
}
template <typename Real>
double ordered_norm(const Real* x, int n) {
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
  r.o.assign(static_cast<std::size_t>(s.M) * Hd, 0.0);
  r.z_total.assign(static_cast<std::size_t>(s.H) * s.M, 0.0);
  r.z_prompt.assign(r.z_total.size(), 0.0);
  r.z_cont.assign(r.z_total.size(), 0.0);
  r.n_cont.assign(static_cast<std::size_t>(s.H) * s.M * s.d, 0.0);
  for (int h = 0; h < s.H; ++h) {
    // In double: δ = o_S − o is often 1e-4 of o (values share a large common part), so o must
    // be known well below fp32 rounding.
    const RowMajorD a = ConstMapMatrixRM(ly.cont_attn.data() + static_cast<std::size_t>(h) * s.M * s.N, s.M, s.N).cast<double>();
    const RowMajorD v = ConstMapMatrixRM(ly.values.data() + static_cast<std::size_t>(h / s.G) * s.N * s.d, s.N, s.d).cast<double>();
    Eigen::Map<RowMajorD, 0, Eigen::OuterStride<>> o(r.o.data() + static_cast<std::size_t>(h) * s.d, s.M, s.d, Eigen::OuterStride<>(Hd));
    o.noalias() = a * v;
    MapRowMajorD nc(r.n_cont.data() + static_cast<std::size_t>(h) * s.M * s.d, s.M, s.d);
    nc.noalias() = a.rightCols(s.M) * v.bottomRows(s.M);
    for (int t = 0; t < s.M; ++t) {
      const std::size_t ht = static_cast<std::size_t>(h) * s.M + t;
      r.z_prompt[ht] = ordered_sum(a.data() + static_cast<std::size_t>(t) * s.N, s.T);
      r.z_cont[ht] = ordered_sum(a.data() + static_cast<std::size_t>(t) * s.N + s.T, s.M);
      r.z_total[ht] = r.z_prompt[ht] + r.z_cont[ht];
      o.row(t) /= r.z_total[ht];
    }
  }
  const RowMajorF o_all = ConstMapRowMajorD(r.o.data(), s.M, Hd).cast<float>();
  const ConstMapMatrixRM wo(ly.w_o.data(), s.D, Hd);
  const RowMajorF projected = o_all * wo.transpose();  // [M, D]
  r.o_norm.resize(s.M);
  r.wo_norm.resize(s.M);
  for (int t = 0; t < s.M; ++t) {
    r.o_norm[t] = ordered_norm(r.o.data() + static_cast<std::size_t>(t) * Hd, Hd);
    r.wo_norm[t] = ordered_norm(projected.data() + static_cast<std::size_t>(t) * s.D, s.D);
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

// The least surviving share (z_S + z_cont)/Z for which δ is taken from the dropped side.
// Above it the dropped side's cancellation costs at most 20 of double's 53 bits.
constexpr double kMinDroppedSideShare = 0x1p-20;

}  // namespace

double layer_metrics(const PromptView& view, const LayerReference& ref, const Selection& sel,
                     std::span<LayerMetrics> out, std::span<float> wo_delta) {
  const Shape s(view);
  const LayerData& ly = view.layers[ref.layer];
  const int nb = sel.n_budgets(), Hd = s.H * s.d, l = ref.layer;
  KVSIM_CHECK(static_cast<int>(out.size()) == nb && sel.T() == s.T);
  RowMajorF delta = RowMajorF::Zero(static_cast<Eigen::Index>(nb) * s.M, Hd);  // [nb*M, H*d]
  std::vector<double> recall_sum(nb, 0.0);
  double flops = 0;
  Eigen::VectorXd z(s.M);
  RowMajorD acc(s.M, s.d), gathered_a, gathered_v;
  std::vector<double> kept_mass;  // [cuts, M] Σ_{j∈S} a_j of each cut
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
        const ConstMapRowMajorD nc(ref.n_cont.data() + static_cast<std::size_t>(h) * s.M * s.d, s.M, s.d);
        const ConstStridedMapD o_ref(ref.o.data() + static_cast<std::size_t>(h) * s.d, s.M, s.d, Eigen::OuterStride<>(Hd));
        const double* zt = ref.z_total.data() + static_cast<std::size_t>(h) * s.M;
        const double* zp = ref.z_prompt.data() + static_cast<std::size_t>(h) * s.M;
        const double* zc = ref.z_cont.data() + static_cast<std::size_t>(h) * s.M;
        // Adds the tokens order[from..to) into acc (Σ a v) and z (Σ a), in double: either side
        // is a difference from o at the end, which fp32 sums would leave at ~1e-7 of |o|.
        auto add_range = [&](int from, int to) {
          const int k = to - from;
          if (k <= 0) return;
          gathered_a.resize(s.M, k);
          gathered_v.resize(k, s.d);
          for (int j = 0; j < k; ++j) {
            const int i = order[from + j];
            gathered_a.col(j) = a.col(i).cast<double>();
            gathered_v.row(j) = v.row(i).cast<double>();
          }
          acc.noalias() += gathered_a * gathered_v;
          for (int t = 0; t < s.M; ++t) z[t] += ordered_sum(&gathered_a(t, 0), k);
          flops += 2.0 * s.M * k * s.d;
        };
        // Kept prompt mass z_S = Σ_{j∈S} a_j of every cut, summed from the front in double: the
        // recall (non-decreasing in the kept count whatever the rounding), and the surviving
        // mass z_S + z_cont that both sides divide by.
        kept_mass.assign(cuts.size() * s.M, 0.0);
        for (std::size_t c = 0, at = 0; c < cuts.size(); ++c) {
          double* zs = kept_mass.data() + c * s.M;
          if (c > 0) std::copy_n(zs - s.M, s.M, zs);
          for (; static_cast<int>(at) < cuts[c].count; ++at) {
            const int i = order[at];
            for (int t = 0; t < s.M; ++t) zs[t] += a(t, i);
          }
          // Clamped at 1 so rounding of the two sums cannot push a near-full set above the
          // full one; the full set is exactly 1.
          for (int t = 0; t < s.M; ++t)
            recall_sum[cuts[c].budget] += cuts[c].count >= s.T || zp[t] <= 0 ? 1.0 : std::min(1.0, zs[t] / zp[t]);
        }
        // The dropped side (below) is exact only up to about u·Z/(z_S + z_cont) relative
        // (o·z_D and n_D cancel down to (z_S + z_cont)·δ): it is used only for cuts keeping
        // more than T/2 tokens *and* at least kMinDroppedSideShare of the mass at every t. The
        // others are summed from the kept side. The surviving mass grows with the count, so the
        // kept-side cuts are a prefix of `cuts`.
        auto dropped_side = [&](std::size_t c) {
          if (2 * cuts[c].count <= s.T) return false;
          for (int t = 0; t < s.M; ++t)
            if (kept_mass[c * s.M + t] + zc[t] < kMinDroppedSideShare * zt[t]) return false;
          return true;
        };
        // Small counts: sum the kept tokens, front to back.
        acc.setZero();
        z.setZero();
        int at = 0;
        std::size_t split = 0;
        for (; split < cuts.size() && !dropped_side(split); ++split) {
          add_range(at, cuts[split].count);
          at = cuts[split].count;
          auto d_rows = delta.block(static_cast<Eigen::Index>(cuts[split].budget) * s.M, static_cast<Eigen::Index>(h) * s.d, s.M, s.d);
          for (int t = 0; t < s.M; ++t) d_rows.row(t) = ((acc.row(t) + nc.row(t)) / (z[t] + zc[t]) - o_ref.row(t)).cast<float>();
        }
        // Large counts: sum the dropped tokens, back to front; δ = (o·z_D − n_D) / (z_S + z_cont),
        // the denominator Z − z_D taken from the front sum, where it does not cancel.
        acc.setZero();
        z.setZero();
        at = s.T;
        for (std::size_t c = cuts.size(); c-- > split;) {
          add_range(cuts[c].count, at);
          at = std::min(at, cuts[c].count);
          if (cuts[c].count >= s.T) continue;  // nothing dropped: δ stays exactly 0
          auto d_rows = delta.block(static_cast<Eigen::Index>(cuts[c].budget) * s.M, static_cast<Eigen::Index>(h) * s.d, s.M, s.d);
          const double* zs = kept_mass.data() + c * s.M;
          for (int t = 0; t < s.M; ++t)
            d_rows.row(t) = ((o_ref.row(t) * z[t] - acc.row(t)) / (zs[t] + zc[t])).cast<float>();
        }
      }
    }
  }
  const ConstMapMatrixRM wo(ly.w_o.data(), s.D, Hd);
  const RowMajorF projected = delta * wo.transpose();  // [nb*M, D]
  flops += 2.0 * nb * s.M * Hd * s.D;
  if (!wo_delta.empty()) {
    KVSIM_CHECK(wo_delta.size() == static_cast<std::size_t>(nb) * s.M * s.D, "layer_metrics: wo_delta size");
    for (Eigen::Index i = 0; i < projected.size(); ++i) wo_delta[static_cast<std::size_t>(i)] = static_cast<float>(projected.data()[i]);
  }
  for (int b = 0; b < nb; ++b) {
    double e = 0, ev = 0;
    for (int t = 0; t < s.M; ++t) {
      const Eigen::Index row = static_cast<Eigen::Index>(b) * s.M + t;
      if (ref.wo_norm[t] != 0) e += ordered_norm(&projected(row, 0), s.D) / ref.wo_norm[t];
      if (ref.o_norm[t] != 0) ev += ordered_norm(&delta(row, 0), Hd) / ref.o_norm[t];
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
