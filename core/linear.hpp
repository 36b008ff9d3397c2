#pragma once
// The prefill's weight products Y = X · Wᵀ on a register-blocked kernel of its own (issue 14):
// W is repacked once into panels of output columns, and every element of Y is one chain of
// fused multiply-adds over the inner dimension in ascending order, whatever the tiling. So a
// row of Y depends on that row of X alone (not on the other rows, their number, the tiles or
// the thread count), and the work can be split over threads in any blocks of output.
#include <vector>

#include "core/matrix.hpp"

namespace kvsim {

// W [out, in] as linear() reads it: panels of kLinearPanel output rows, each [in, kLinearPanel]
// (k-major), the last panel padded with zeros.
class PackedWeights {
 public:
  PackedWeights() = default;
  // From W [out, in]; or, transposed, from Wᵀ [in, out] (e.g. attention's values [len, d]).
  explicit PackedWeights(Eigen::Ref<const MatrixRM> w, bool transposed = false) { assign(w, transposed); }
  // Repacks in place, reusing the memory (attention packs every layer's keys and values).
  void assign(Eigen::Ref<const MatrixRM> w, bool transposed = false);
  Eigen::Index rows() const { return out_; }
  Eigen::Index cols() const { return in_; }
  const float* panel(Eigen::Index p) const { return data_.data() + p * in_ * kPanel; }
  static constexpr int kPanel = 2 * Eigen::internal::packet_traits<float>::size;

 private:
  Eigen::Index out_ = 0, in_ = 0;
  std::vector<float> data_;
};

// Y [n, out] = X [n, in] · Wᵀ, W [out, in] (packed above, or packed for this call). X may be a
// block of rows of a larger row-major matrix.
void linear(Eigen::Ref<const MatrixRM> x, const PackedWeights& w, MatrixRM& y);
void linear(const MatrixRM& x, const MatrixRM& w, MatrixRM& y);
// The same product on the calling thread only, the same tiles in order (and the same bits):
// Y [n, w.rows()] (row stride ldy) = X [n, w.cols()] (row stride ldx) · Wᵀ, for callers that
// already run one task per thread (the replay's W_O projection, one task per layer).
void linear_serial(const float* x, Eigen::Index ldx, Eigen::Index n, const PackedWeights& w, float* y, Eigen::Index ldy);

// nr rows of X (row stride ldx) times columns [c0, c0 + nc) of Wᵀ (c0 a multiple of kPanel),
// summed over the first `inner` <= w.cols() of the inner dimension, into y (row stride ldy),
// single-threaded: the building block of linear(), and of attention's two products
// (tracer/cpu_forward.cpp: scores = Q·Kᵀ over visible keys, then P·V over as many).
void linear_block(const float* x, Eigen::Index ldx, const PackedWeights& w, Eigen::Index inner, Eigen::Index nr,
                  Eigen::Index c0, Eigen::Index nc, float* y, Eigen::Index ldy);

}  // namespace kvsim
