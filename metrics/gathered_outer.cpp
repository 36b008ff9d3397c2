#include "metrics/gathered_outer.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#if defined(__x86_64__) && (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 10))
#define KVSIM_HAVE_AVX512_OUTER 1
#include <immintrin.h>
#define KVSIM_TARGET_AVX512F __attribute__((target("avx512f")))
#else
#define KVSIM_HAVE_AVX512_OUTER 0
#endif

namespace kvsim {

namespace {

constexpr int kTokens = 128;  // tokens per block: the converted block is 128 × (rows + cols) doubles (L2)
constexpr int kMR = 8;        // rows of acc per register tile
constexpr int kNR = 16;       // columns of acc per register tile (2 zmm of 8 doubles)

// The block's weights and values converted to double once: ab [k][rows], vb [k][cols].
void convert_block(std::span<const std::int32_t> idx, const float* a, int lda, int rows, const float* v, int ldv,
                   int cols, double* ab, double* vb) {
  for (std::size_t j = 0; j < idx.size(); ++j) {
    const float* ar = a + static_cast<std::size_t>(idx[j]) * lda;
    const float* vr = v + static_cast<std::size_t>(idx[j]) * ldv;
    double* ao = ab + j * rows;
    double* vo = vb + j * cols;
    for (int r = 0; r < rows; ++r) ao[r] = ar[r];
    for (int c = 0; c < cols; ++c) vo[c] = vr[c];
  }
}

// acc[r][c] = fma(ab[j][r], vb[j][c], acc[r][c]) for j = 0 … k-1, for the rows [r0, r1) and
// columns [c0, c1): the reference every kernel matches bit for bit.
void tile_portable(int k, const double* ab, int rows, const double* vb, int cols, double* acc, int r0, int r1, int c0,
                   int c1) {
  for (int r = r0; r < r1; ++r)
    for (int c = c0; c < c1; ++c) {
      double x = acc[static_cast<std::size_t>(r) * cols + c];
      for (int j = 0; j < k; ++j) x = std::fma(ab[static_cast<std::size_t>(j) * rows + r], vb[static_cast<std::size_t>(j) * cols + c], x);
      acc[static_cast<std::size_t>(r) * cols + c] = x;
    }
}

#if KVSIM_HAVE_AVX512_OUTER
// One kMR × kNR tile of acc held in 16 zmm registers over the k tokens of a block.
KVSIM_TARGET_AVX512F void tile_avx512(int k, const double* ab, int rows, const double* vb, int cols, double* acc, int r0,
                                      int c0) {
  __m512d c[kMR][2];
  for (int i = 0; i < kMR; ++i) {
    const double* row = acc + static_cast<std::size_t>(r0 + i) * cols + c0;
    c[i][0] = _mm512_loadu_pd(row), c[i][1] = _mm512_loadu_pd(row + 8);
  }
  for (int j = 0; j < k; ++j) {
    const double* vr = vb + static_cast<std::size_t>(j) * cols + c0;
    const double* ar = ab + static_cast<std::size_t>(j) * rows + r0;
    const __m512d v0 = _mm512_loadu_pd(vr), v1 = _mm512_loadu_pd(vr + 8);
    for (int i = 0; i < kMR; ++i) {
      const __m512d x = _mm512_set1_pd(ar[i]);
      c[i][0] = _mm512_fmadd_pd(x, v0, c[i][0]);
      c[i][1] = _mm512_fmadd_pd(x, v1, c[i][1]);
    }
  }
  for (int i = 0; i < kMR; ++i) {
    double* row = acc + static_cast<std::size_t>(r0 + i) * cols + c0;
    _mm512_storeu_pd(row, c[i][0]), _mm512_storeu_pd(row + 8, c[i][1]);
  }
}

bool cpu_has_avx512f() {
  static const bool has = __builtin_cpu_supports("avx512f");
  return has;
}
#endif

}  // namespace

void add_gathered_outer(std::span<const std::int32_t> idx, const float* a, int lda, int rows, const float* v, int ldv,
                        int cols, double* acc, double* range_sum) {
  std::fill_n(range_sum, rows, 0.0);
  if (idx.empty() || rows <= 0 || cols <= 0) return;
  thread_local std::vector<double> ab, vb;
  ab.resize(static_cast<std::size_t>(kTokens) * rows);
  vb.resize(static_cast<std::size_t>(kTokens) * cols);
#if KVSIM_HAVE_AVX512_OUTER
  const bool wide = cpu_has_avx512f();
#else
  const bool wide = false;
#endif
  const int r_tiles = wide ? rows / kMR * kMR : 0, c_tiles = wide ? cols / kNR * kNR : 0;
  for (std::size_t j0 = 0; j0 < idx.size(); j0 += kTokens) {
    const auto block = idx.subspan(j0, std::min<std::size_t>(kTokens, idx.size() - j0));
    const int k = static_cast<int>(block.size());
    convert_block(block, a, lda, rows, v, ldv, cols, ab.data(), vb.data());
    for (int j = 0; j < k; ++j)
      for (int r = 0; r < rows; ++r) range_sum[r] += ab[static_cast<std::size_t>(j) * rows + r];
#if KVSIM_HAVE_AVX512_OUTER
    for (int r0 = 0; r0 < r_tiles; r0 += kMR)
      for (int c0 = 0; c0 < c_tiles; c0 += kNR) tile_avx512(k, ab.data(), rows, vb.data(), cols, acc, r0, c0);
#endif
    // What the register tiles leave: the last columns of every row, then the last rows.
    if (c_tiles < cols) tile_portable(k, ab.data(), rows, vb.data(), cols, acc, 0, r_tiles, c_tiles, cols);
    tile_portable(k, ab.data(), rows, vb.data(), cols, acc, r_tiles, rows, 0, cols);
  }
}

}  // namespace kvsim
