#include "core/linear.hpp"

#include <tbb/blocked_range2d.h>
#include <tbb/parallel_for.h>

#include <algorithm>

#include "core/error.hpp"

namespace kvsim {

namespace {

using Packet = Eigen::internal::packet_traits<float>::type;
constexpr int kP = Eigen::internal::packet_traits<float>::size;
constexpr int kPanel = PackedWeights::kPanel;
// Rows per register block: R × 2 accumulators, the panel's two packets and a broadcast must
// fit the vector registers (32 with AVX-512, 16 below).
constexpr int kRows = kP >= 16 ? 12 : 6;

// Y rows [0, R) × one panel's columns [0, cols): acc = fma(x[r, k], w[k, c], acc) for k = 0,
// 1, … in order, then stored. Every element gets this same chain whatever R and cols.
template <int R>
void micro(const float* x, Eigen::Index ldx, const float* wp, Eigen::Index in, float* y, Eigen::Index ldy, int cols) {
  using namespace Eigen::internal;
  Packet a0[R], a1[R];
  for (int r = 0; r < R; ++r) a0[r] = a1[r] = pset1<Packet>(0.0f);
  const float* xr[R];
  for (int r = 0; r < R; ++r) xr[r] = x + r * ldx;
  for (Eigen::Index k = 0; k < in; ++k, wp += kPanel) {
    const Packet w0 = ploadu<Packet>(wp), w1 = ploadu<Packet>(wp + kP);
    for (int r = 0; r < R; ++r) {
      const Packet xb = pset1<Packet>(xr[r][k]);
      a0[r] = pmadd(xb, w0, a0[r]);
      a1[r] = pmadd(xb, w1, a1[r]);
    }
  }
  if (cols == kPanel) {
    for (int r = 0; r < R; ++r) {
      pstoreu(y + r * ldy, a0[r]);
      pstoreu(y + r * ldy + kP, a1[r]);
    }
  } else {
    alignas(64) float tmp[kPanel];
    for (int r = 0; r < R; ++r) {
      pstoreu(tmp, a0[r]);
      pstoreu(tmp + kP, a1[r]);
      std::copy_n(tmp, cols, y + r * ldy);
    }
  }
}

template <int R = kRows>
void micro_rows(int rows, const float* x, Eigen::Index ldx, const float* wp, Eigen::Index in, float* y,
                Eigen::Index ldy, int cols) {
  if constexpr (R > 1)
    if (rows < R) return micro_rows<R - 1>(rows, x, ldx, wp, in, y, ldy, cols);
  micro<R>(x, ldx, wp, in, y, ldy, cols);
}

// Output columns per tile: the tile's panels (in × columns floats) stay in a ~384 KiB share of
// L2 while the tile's rows pass over them.
Eigen::Index column_tile(Eigen::Index in) {
  const Eigen::Index panels = std::max<Eigen::Index>(1, (384 << 10) / (4 * kPanel * std::max<Eigen::Index>(in, 1)));
  return panels * kPanel;
}

}  // namespace

void PackedWeights::assign(Eigen::Ref<const MatrixRM> w, bool transposed) {
  out_ = transposed ? w.cols() : w.rows();
  in_ = transposed ? w.rows() : w.cols();
  const Eigen::Index panels = (out_ + kPanel - 1) / kPanel;
  data_.assign(static_cast<std::size_t>(panels * in_ * kPanel), 0.0f);
  tbb::parallel_for(Eigen::Index{0}, panels, [&](Eigen::Index p) {
    float* dst = data_.data() + p * in_ * kPanel;
    const Eigen::Index o0 = p * kPanel, n = std::min<Eigen::Index>(kPanel, out_ - o0);
    if (transposed) {
      for (Eigen::Index k = 0; k < in_; ++k) std::copy_n(w.row(k).data() + o0, n, dst + k * kPanel);
    } else {
      for (Eigen::Index c = 0; c < n; ++c) {
        const float* src = w.row(o0 + c).data();
        for (Eigen::Index k = 0; k < in_; ++k) dst[k * kPanel + c] = src[k];
      }
    }
  });
}

void linear_block(const float* x, Eigen::Index ldx, const PackedWeights& w, Eigen::Index inner, Eigen::Index nr,
                  Eigen::Index c0, Eigen::Index nc, float* y, Eigen::Index ldy) {
  const Eigen::Index in = inner;
  for (Eigen::Index r = 0; r < nr; r += kRows) {
    const int rows = static_cast<int>(std::min<Eigen::Index>(kRows, nr - r));
    for (Eigen::Index c = c0; c < c0 + nc; c += kPanel)
      micro_rows(rows, x + r * ldx, ldx, w.panel(c / kPanel), in, y + r * ldy + (c - c0),
                 ldy, static_cast<int>(std::min<Eigen::Index>(kPanel, c0 + nc - c)));
  }
}

namespace {

// Any tiling gives the same bits (core/linear.hpp); these tiles keep the panels in L2.
struct Tiles {
  Eigen::Index n, out, row_tile, col_tile, row_tiles, col_tiles;
  Tiles(Eigen::Index n_, const PackedWeights& w)
      : n(n_), out(w.rows()), row_tile(8 * kRows), col_tile(column_tile(w.cols())),
        row_tiles((n + row_tile - 1) / row_tile), col_tiles((out + col_tile - 1) / col_tile) {}
  void run(Eigen::Index i, Eigen::Index j, const float* x, Eigen::Index ldx, const PackedWeights& w, float* y,
           Eigen::Index ldy) const {
    const Eigen::Index r0 = i * row_tile, c0 = j * col_tile;
    linear_block(x + r0 * ldx, ldx, w, w.cols(), std::min(row_tile, n - r0), c0, std::min(col_tile, out - c0),
                 y + r0 * ldy + c0, ldy);
  }
};

}  // namespace

void linear(Eigen::Ref<const MatrixRM> x, const PackedWeights& w, MatrixRM& y) {
  KVSIM_CHECK(x.cols() == w.cols(), "linear: x ", x.rows(), "x", x.cols(), " w ", w.rows(), "x", w.cols());
  y.resize(x.rows(), w.rows());
  const Tiles t(x.rows(), w);
  tbb::parallel_for(tbb::blocked_range2d<Eigen::Index>(0, t.row_tiles, 0, t.col_tiles),
                    [&](const tbb::blocked_range2d<Eigen::Index>& r) {
                      for (Eigen::Index i = r.rows().begin(); i < r.rows().end(); ++i)
                        for (Eigen::Index j = r.cols().begin(); j < r.cols().end(); ++j)
                          t.run(i, j, x.data(), x.outerStride(), w, y.data(), t.out);
                    });
}

void linear_serial(const float* x, Eigen::Index ldx, Eigen::Index n, const PackedWeights& w, float* y, Eigen::Index ldy) {
  const Tiles t(n, w);
  for (Eigen::Index i = 0; i < t.row_tiles; ++i)
    for (Eigen::Index j = 0; j < t.col_tiles; ++j) t.run(i, j, x, ldx, w, y, ldy);
}

void linear(const MatrixRM& x, const MatrixRM& w, MatrixRM& y) { linear(x, PackedWeights(w), y); }

}  // namespace kvsim
