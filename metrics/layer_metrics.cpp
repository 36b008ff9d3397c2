#include "metrics/layer_metrics.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <ctime>

#include "core/error.hpp"
#include "core/gemm_bf16.hpp"
#include "core/linear.hpp"
#include "core/matrix.hpp"
#include "metrics/gathered_outer.hpp"

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

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
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
  RowMajorD v;  // [N, d] of the current KV head, in double once for its G query heads
  for (int h = 0; h < s.H; ++h) {
    // In double: δ = o_S − o is often 1e-4 of o (values share a large common part), so o must
    // be known well below fp32 rounding.
    const RowMajorD a = ConstMapMatrixRM(ly.cont_attn.data() + static_cast<std::size_t>(h) * s.M * s.N, s.M, s.N).cast<double>();
    if (h % s.G == 0) v = ConstMapMatrixRM(ly.values.data() + static_cast<std::size_t>(h / s.G) * s.N * s.d, s.N, s.d).cast<double>();
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

// The prompt part of the continuation attention transposed, [Hkv, T, G, M]: the M weights of
// every query head of a KV head's group on one token are one contiguous row of G·M, so gathering
// a kept token for the whole group reads one row instead of G·M cache lines T + M floats apart.
// Built once per layer and shared by every selection.
void prompt_attention_by_token(const Shape& s, const LayerData& ly, std::span<float> a_t) {
  KVSIM_CHECK(a_t.size() == static_cast<std::size_t>(s.H) * s.T * s.M);
  constexpr int kTile = 64;  // tokens per tile: the tile's G·M-float rows stay in L1 while written
  const std::size_t stride = static_cast<std::size_t>(s.G) * s.M;
  for (int g = 0; g < s.Hkv; ++g)
    for (int i0 = 0; i0 < s.T; i0 += kTile) {
      const int i1 = std::min(s.T, i0 + kTile);
      for (int k = 0; k < s.G; ++k)
        for (int t = 0; t < s.M; ++t) {
          const float* row = ly.cont_attn.data() + (static_cast<std::size_t>(g * s.G + k) * s.M + t) * s.N;
          float* col = a_t.data() + static_cast<std::size_t>(g) * s.T * stride + static_cast<std::size_t>(k) * s.M + t;
          for (int i = i0; i < i1; ++i) col[i * stride] = row[i];
        }
    }
}

// Per-thread scratch, grown and reused across layers and prompts: at an 8B shape a layer's δ
// rows, their projection and a_t are ~100 MB, and fresh pages for them every layer cost more in
// page faults and zeroing than the sums that fill them. (layer_metrics_stacked runs no nested
// parallel work, so a thread never re-enters it while its scratch is in use.)
template <typename Real>
std::span<Real> scratch(std::vector<Real>& buffer, std::size_t n) {
  if (buffer.size() < n) buffer.resize(n);
  return {buffer.data(), n};
}

// δ of the budgets b of `sel` with block[b] >= 0 into rows block[b]*M … of `delta` [blocks*M,
// H*d] (zero on entry) and their Σ_{h,t} recall into recall_sum[b]; the other budgets are
// skipped. a_t from prompt_attention_by_token. Returns the flops spent.
//
// A KV head's query heads share its values and the policy's order, so each range of tokens is
// gathered once for the whole group: Σ of [G·M]ᵀ ⊗ [d] outer products in double per range
// (add_gathered_outer, token by token with fma).
double layer_deltas(const Shape& s, const LayerData& ly, const LayerReference& ref, const Selection& sel,
                    const float* a_t, std::span<const int> block, Eigen::Map<RowMajorF>& delta,
                    std::span<double> recall_sum) {
  const int nb = sel.n_budgets(), Hd = s.H * s.d, l = ref.layer, GM = s.G * s.M;
  KVSIM_CHECK(sel.T() == s.T && delta.cols() == Hd && static_cast<int>(recall_sum.size()) == nb &&
              static_cast<int>(block.size()) == nb);
  double flops = 0;
  RowMajorD acc(GM, s.d);  // [G·M, d] (row k·M + t: head g·G + k)
  Eigen::VectorXd z(GM), z_part(GM);
  std::vector<double> kept_mass;  // [G, cuts, M] Σ_{j∈S} a_j of each head and cut
  std::vector<std::size_t> split(s.G);  // per head of the group: its cuts below split are summed from the kept side
  for (int g = 0; g < s.Hkv; ++g) {
    const float* v_g = ly.values.data() + static_cast<std::size_t>(g) * s.N * s.d;  // [N, d]
    const float* a_g = a_t + static_cast<std::size_t>(g) * s.T * GM;                // [T, G·M]
    for (int o = 0; o < sel.n_orders(); ++o) {
      std::vector<Cut> cuts;
      for (int b = 0; b < nb; ++b)
        if ((sel.shared_order() || b == o) && block[b] >= 0) cuts.push_back({sel.count(b, l, g), b});
      if (cuts.empty()) continue;
      std::sort(cuts.begin(), cuts.end(), [](const Cut& x, const Cut& y) { return x.count < y.count || (x.count == y.count && x.budget < y.budget); });
      const std::size_t nc_cuts = cuts.size();
      const auto order = sel.order(o, l, g);
      // Kept prompt mass z_S = Σ_{j∈S} a_j of every head and cut, summed from the front in
      // double: the recall (non-decreasing in the kept count whatever the rounding), and the
      // surviving mass z_S + z_cont that both sides divide by.
      kept_mass.assign(static_cast<std::size_t>(s.G) * nc_cuts * s.M, 0.0);
      for (int k = 0; k < s.G; ++k) {
        const int h = g * s.G + k;
        const double* zt = ref.z_total.data() + static_cast<std::size_t>(h) * s.M;
        const double* zp = ref.z_prompt.data() + static_cast<std::size_t>(h) * s.M;
        const double* zc = ref.z_cont.data() + static_cast<std::size_t>(h) * s.M;
        double* head_mass = kept_mass.data() + static_cast<std::size_t>(k) * nc_cuts * s.M;
        for (std::size_t c = 0, at = 0; c < nc_cuts; ++c) {
          double* zs = head_mass + c * s.M;
          if (c > 0) std::copy_n(zs - s.M, s.M, zs);
          for (; static_cast<int>(at) < cuts[c].count; ++at) {
            const float* row = a_g + static_cast<std::size_t>(order[at]) * GM + static_cast<std::size_t>(k) * s.M;
            for (int t = 0; t < s.M; ++t) zs[t] += row[t];
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
            if (head_mass[c * s.M + t] + zc[t] < kMinDroppedSideShare * zt[t]) return false;
          return true;
        };
        split[k] = 0;
        while (split[k] < nc_cuts && !dropped_side(split[k])) ++split[k];
      }
      // Adds the tokens order[from..to) into acc (Σ a v) and z (Σ a) of every head of the group,
      // in double: either side is a difference from o at the end, which fp32 sums would leave at
      // ~1e-7 of |o|.
      auto add_range = [&](int from, int to) {
        const int k = to - from;
        if (k <= 0) return;
        add_gathered_outer(order.subspan(from, k), a_g, GM, GM, v_g, s.d, s.d, acc.data(), z_part.data());
        z += z_part;
        flops += 2.0 * GM * k * s.d;
      };
      auto head_rows = [&](std::size_t c, int k) {
        return delta.block(static_cast<Eigen::Index>(block[cuts[c].budget]) * s.M,
                           static_cast<Eigen::Index>(g * s.G + k) * s.d, s.M, s.d);
      };
      // Small counts: sum the kept tokens, front to back, for every head that takes them so.
      const std::size_t kept_end = *std::max_element(split.begin(), split.end());
      acc.setZero();
      z.setZero();
      int at = 0;
      for (std::size_t c = 0; c < kept_end; ++c) {
        add_range(at, cuts[c].count);
        at = cuts[c].count;
        for (int k = 0; k < s.G; ++k) {
          if (c >= split[k]) continue;
          const int h = g * s.G + k;
          const ConstMapRowMajorD nc(ref.n_cont.data() + static_cast<std::size_t>(h) * s.M * s.d, s.M, s.d);
          const ConstStridedMapD o_ref(ref.o.data() + static_cast<std::size_t>(h) * s.d, s.M, s.d, Eigen::OuterStride<>(Hd));
          const double* zc = ref.z_cont.data() + static_cast<std::size_t>(h) * s.M;
          auto d_rows = head_rows(c, k);
          for (int t = 0; t < s.M; ++t) {
            const int r = k * s.M + t;
            d_rows.row(t) = ((acc.row(r) + nc.row(t)) / (z[r] + zc[t]) - o_ref.row(t)).cast<float>();
          }
        }
      }
      // Large counts: sum the dropped tokens, back to front; δ = (o·z_D − n_D) / (z_S + z_cont),
      // the denominator Z − z_D taken from the front sum, where it does not cancel.
      const std::size_t dropped_begin = *std::min_element(split.begin(), split.end());
      acc.setZero();
      z.setZero();
      at = s.T;
      for (std::size_t c = nc_cuts; c-- > dropped_begin;) {
        add_range(cuts[c].count, at);
        at = std::min(at, cuts[c].count);
        if (cuts[c].count >= s.T) continue;  // nothing dropped: δ stays exactly 0
        for (int k = 0; k < s.G; ++k) {
          if (c < split[k]) continue;
          const int h = g * s.G + k;
          const ConstStridedMapD o_ref(ref.o.data() + static_cast<std::size_t>(h) * s.d, s.M, s.d, Eigen::OuterStride<>(Hd));
          const double* zc = ref.z_cont.data() + static_cast<std::size_t>(h) * s.M;
          const double* zs = kept_mass.data() + (static_cast<std::size_t>(k) * nc_cuts + c) * s.M;
          auto d_rows = head_rows(c, k);
          for (int t = 0; t < s.M; ++t) {
            const int r = k * s.M + t;
            d_rows.row(t) = ((o_ref.row(t) * z[r] - acc.row(r)) / (zs[t] + zc[t])).cast<float>();
          }
        }
      }
    }
  }
  return flops;
}

// The metrics of budget b of `sel` from its rows of δ [M, H*d] and W_O δ [M, D] (row t), in a
// fixed order of operations; both null when δ = 0 (every prompt token kept).
LayerMetrics finish_metrics(const Shape& s, const LayerReference& ref, const Selection& sel, int b, const float* delta,
                            const float* projected, double recall_sum) {
  const int Hd = s.H * s.d;
  double e = 0, ev = 0;
  if (delta)
    for (int t = 0; t < s.M; ++t) {
      if (ref.wo_norm[t] != 0) e += ordered_norm(projected + static_cast<std::size_t>(t) * s.D, s.D) / ref.wo_norm[t];
      if (ref.o_norm[t] != 0) ev += ordered_norm(delta + static_cast<std::size_t>(t) * Hd, Hd) / ref.o_norm[t];
    }
  LayerMetrics m;
  m.out_err = s.M > 0 ? e / s.M : 0.0;
  m.out_err_value = s.M > 0 ? ev / s.M : 0.0;
  m.recall = s.M > 0 ? recall_sum / (static_cast<double>(s.M) * s.H) : 1.0;
  for (int g = 0; g < s.Hkv; ++g) m.kept += sel.count(b, ref.layer, g);
  return m;
}

std::uint64_t mix64(std::uint64_t x) {  // splitmix64's finaliser
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Which (selection, budget) points of a stack need their own δ rows on layer l. Identical kept
// sets give identical δ (it depends on the set, not the order), so a point whose kept sets equal
// an earlier point's on every KV head shares that point's rows, and a point that keeps every
// prompt token of every KV head has δ = 0 and needs none: block[point] = the row block it reads
// (kZero for none), owner[point] = whether it computes that block.
constexpr int kZero = -1;
struct StackRows {
  std::vector<int> block;   // [points]
  std::vector<char> owner;  // [points]
  int n_blocks = 0;
};

StackRows plan_stack_rows(std::span<const Selection* const> selections, int l, int T) {
  struct Point {
    const Selection* sel;
    int b;
    std::uint64_t key;
  };
  std::vector<Point> points;
  for (const Selection* sel : selections)
    for (int b = 0; b < sel->n_budgets(); ++b) {
      // Order-independent: a sum over the kept tokens, per KV head with its count.
      std::uint64_t key = 0;
      bool full = true;
      for (int g = 0; g < sel->n_kv_heads(); ++g) {
        const auto kept = sel->kept(b, l, g);
        std::uint64_t set = 0;
        for (const std::int32_t i : kept) set += mix64(static_cast<std::uint64_t>(i));
        key = mix64(key ^ mix64(set + (static_cast<std::uint64_t>(kept.size()) << 32) + static_cast<std::uint64_t>(g)));
        full = full && static_cast<int>(kept.size()) >= T;
      }
      points.push_back({sel, b, full ? 0 : key | 1});  // key 0: δ = 0
    }
  auto same_sets = [&](const Point& x, const Point& y) {
    std::vector<std::int32_t> a, c;
    for (int g = 0; g < x.sel->n_kv_heads(); ++g) {
      const auto kx = x.sel->kept(x.b, l, g), ky = y.sel->kept(y.b, l, g);
      if (kx.size() != ky.size()) return false;
      a.assign(kx.begin(), kx.end()), c.assign(ky.begin(), ky.end());
      std::sort(a.begin(), a.end()), std::sort(c.begin(), c.end());
      if (a != c) return false;
    }
    return true;
  };
  StackRows r;
  r.block.assign(points.size(), kZero);
  r.owner.assign(points.size(), 0);
  for (std::size_t p = 0; p < points.size(); ++p) {
    if (points[p].key == 0) continue;
    for (std::size_t q = 0; q < p && r.block[p] == kZero; ++q)
      if (r.owner[q] && points[q].key == points[p].key && same_sets(points[q], points[p])) r.block[p] = r.block[q];
    if (r.block[p] == kZero) r.block[p] = r.n_blocks++, r.owner[p] = 1;
  }
  return r;
}

}  // namespace

double layer_metrics(const PromptView& view, const LayerReference& ref, const Selection& sel,
                     std::span<LayerMetrics> out, std::span<float> wo_delta) {
  const Selection* one[] = {&sel};
  return layer_metrics_stacked(view, ref, one, out, wo_delta);
}

double layer_metrics_stacked(const PromptView& view, const LayerReference& ref, std::span<const Selection* const> selections,
                             std::span<LayerMetrics> out, std::span<float> wo_delta, ProjectionCost* projection) {
  const Shape s(view);
  const LayerData& ly = view.layers[ref.layer];
  const int Hd = s.H * s.d;
  std::size_t n_out = 0;
  for (const Selection* sel : selections) n_out += static_cast<std::size_t>(sel->n_budgets());
  KVSIM_CHECK(out.size() == n_out, "layer_metrics: ", out.size(), " outputs for ", n_out, " budgets");
  KVSIM_CHECK(wo_delta.empty() || wo_delta.size() == n_out * s.M * s.D, "layer_metrics: wo_delta size");
  const StackRows plan = plan_stack_rows(selections, ref.layer, s.T);
  const Eigen::Index rows = static_cast<Eigen::Index>(plan.n_blocks) * s.M;
  thread_local std::vector<float> delta_buffer, projected_buffer, a_t_buffer;
  Eigen::Map<RowMajorF> delta(scratch(delta_buffer, static_cast<std::size_t>(rows) * Hd).data(), rows, Hd);  // [blocks*M, H*d], the distinct points' δ in stack order
  delta.setZero();
  const std::span<float> a_t = scratch(a_t_buffer, static_cast<std::size_t>(s.H) * s.T * s.M);
  prompt_attention_by_token(s, ly, a_t);
  std::vector<double> recall_sum(n_out, 0.0);
  std::vector<int> own_block;  // per budget of one selection: its block where it computes one, else skip
  double flops = 0;
  for (std::size_t k = 0, at = 0; k < selections.size(); ++k) {
    const int nb = selections[k]->n_budgets();
    own_block.assign(nb, kZero);
    for (int b = 0; b < nb; ++b)
      if (plan.owner[at + b]) own_block[b] = plan.block[at + b];
    flops += layer_deltas(s, ly, ref, *selections[k], a_t.data(), own_block, delta, std::span(recall_sum).subspan(at, nb));
    at += nb;
  }
  // One GEMM for the distinct points' rows: the dominant term (2·rows·H·d·D flops), and a tall
  // product runs near the machine's GEMM peak where one per selection (a few hundred rows against
  // the whole of W_O) spends a large part of its time packing W_O. Rows are independent, and the
  // stacking depends only on the inputs, so the bytes do not depend on the thread count.
  const ConstMapMatrixRM wo(ly.w_o.data(), s.D, Hd);
  const bool direct = !wo_delta.empty() && static_cast<std::size_t>(plan.n_blocks) == n_out;  // no sharing: project in place
  Eigen::Map<RowMajorF> projected(
      direct ? wo_delta.data() : scratch(projected_buffer, static_cast<std::size_t>(rows) * s.D).data(), rows, s.D);  // [blocks*M, D]
  const double cpu0 = projection ? thread_cpu_seconds() : 0.0;
  if (rows > 0 && ly.w_o_bf16) {
    KVSIM_CHECK(ly.w_o_bf16->rows() == s.D && ly.w_o_bf16->cols() == Hd, "layer_metrics: packed W_O shape");
    gemm_bf16_nt(delta.data(), static_cast<int>(rows), Hd, Hd, *ly.w_o_bf16, projected.data(), s.D);
  } else if (rows > 0 && ly.w_o_packed) {
    KVSIM_CHECK(ly.w_o_packed->rows() == s.D && ly.w_o_packed->cols() == Hd, "layer_metrics: packed W_O shape");
    linear_serial(delta.data(), Hd, rows, *ly.w_o_packed, projected.data(), s.D);
  } else {
    projected.noalias() = delta * wo.transpose();
  }
  const double projection_flops = 2.0 * static_cast<double>(rows) * Hd * s.D;
  flops += projection_flops;
  if (projection) {
    projection->cpu_seconds += thread_cpu_seconds() - cpu0;
    projection->flops += projection_flops;
  }
  const std::size_t md = static_cast<std::size_t>(s.M) * s.D;
  std::vector<double> block_recall(plan.n_blocks, 0.0);
  for (std::size_t p = 0; p < n_out; ++p)
    if (plan.owner[p]) block_recall[plan.block[p]] = recall_sum[p];
  for (std::size_t k = 0, at = 0; k < selections.size(); ++k) {
    for (int b = 0; b < selections[k]->n_budgets(); ++b, ++at) {
      const int blk = plan.block[at];
      if (blk == kZero) {
        out[at] = finish_metrics(s, ref, *selections[k], b, nullptr, nullptr, static_cast<double>(s.M) * s.H);
        if (!wo_delta.empty()) std::fill_n(wo_delta.begin() + at * md, md, 0.0f);
        continue;
      }
      const float* proj = projected.data() + static_cast<std::size_t>(blk) * md;
      out[at] = finish_metrics(s, ref, *selections[k], b, delta.data() + static_cast<std::size_t>(blk) * s.M * Hd, proj,
                               block_recall[blk]);
      if (!wo_delta.empty() && !direct) std::copy_n(proj, md, wo_delta.begin() + at * md);
    }
  }
  return flops;
}

}  // namespace kvsim
