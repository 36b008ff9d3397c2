#pragma once
// The δ sums' kernel (layer_metrics.cpp): Σ over a gathered list of tokens of the outer product
// of each token's attention weights and its value, in double.
#include <cstdint>
#include <span>

namespace kvsim {

// acc [rows, cols] (row-major, double) += Σ_j a_jᵀ v_j and range_sum [rows] = Σ_j a_j, over
// j = idx[0], idx[1], … in that order, where a_j is the first `rows` entries of row j of
// a [*, lda] and v_j the first `cols` entries of row j of v [*, ldv] (both fp32). Each product
// is formed and added with one rounding (fma, in double), token after token: every element
// of acc sees the same operations in the same order on every machine and thread count, AVX-512
// kernel or portable loop.
void add_gathered_outer(std::span<const std::int32_t> idx, const float* a, int lda, int rows, const float* v, int ldv,
                        int cols, double* acc, double* range_sum);

}  // namespace kvsim
