#include "core/value_norm.hpp"

#include <algorithm>

#include "core/error.hpp"
#include "core/matrix.hpp"

namespace kvsim {

void value_wo_l1(const ValueNormShape& s, std::span<const float> values, std::span<const float> w_o, int first_head,
                 int n_out_heads, std::span<float> out) {
  const int H = s.n_heads, G = H / s.n_kv_heads, d = s.head_dim, D = s.hidden, T = s.T, N = s.N;
  KVSIM_CHECK(values.size() == static_cast<std::size_t>(s.n_kv_heads) * N * d, "value_wo_l1: values size");
  KVSIM_CHECK(w_o.size() == static_cast<std::size_t>(D) * H * d, "value_wo_l1: w_o size");
  KVSIM_CHECK(first_head >= 0 && first_head + n_out_heads <= H && out.size() == static_cast<std::size_t>(n_out_heads) * T,
              "value_wo_l1: heads or out size");
  constexpr int kChunk = 256;  // token rows per GEMM: bounds the [rows, D] buffer
  MatrixRM x;
  for (int k = 0; k < n_out_heads; ++k) {
    const int h = first_head + k, g = h / G;
    const ConstStridedMap w_h(w_o.data() + static_cast<std::size_t>(h) * d, D, d, Eigen::OuterStride<>(H * d));  // [D, d]
    for (int i0 = 0; i0 < T; i0 += kChunk) {
      const int rows = std::min(kChunk, T - i0);
      const ConstMapMatrixRM vals(values.data() + (static_cast<std::size_t>(g) * N + i0) * d, rows, d);  // [rows, d]
      x.noalias() = vals * w_h.transpose();  // [rows, D]
      for (int r = 0; r < rows; ++r) out[static_cast<std::size_t>(k) * T + i0 + r] = x.row(r).cwiseAbs().sum();
    }
  }
}

}  // namespace kvsim
