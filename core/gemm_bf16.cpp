#include "core/gemm_bf16.hpp"

#include <algorithm>
#include <cstring>
#include <new>

#include "core/error.hpp"
#include "core/matrix.hpp"

// The AVX512-BF16 kernel needs GCC >= 10 or clang on x86-64; it is compiled with function-level
// target attributes, whatever -march the rest of the build uses, and run only where
// cpu_has_avx512_bf16() says so.
#if defined(__x86_64__) && (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 10))
#define KVSIM_HAVE_BF16_KERNEL 1
#include <immintrin.h>
#define KVSIM_TARGET_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#else
#define KVSIM_HAVE_BF16_KERNEL 0
#endif

namespace kvsim {

namespace {

constexpr int kNR = PackedBf16::kPanel;  // columns of C per micro-tile (2 zmm)
constexpr int kMR = 12;                  // rows of C per micro-tile: 24 zmm accumulators
constexpr int kKCPairs = 256;            // k-pairs per cache block: B micro-panel 32 KB (L1)
constexpr int kMC = 768;                 // at most this many rows of A per cache block (packed
                                         // 768 KB, L2); m is cut into equal blocks

std::uint32_t* alloc_words(std::size_t count) {
  return static_cast<std::uint32_t*>(::operator new(std::max<std::size_t>(count, 1) * 4, std::align_val_t(64)));
}
void free_words(std::uint32_t* p) { ::operator delete(p, std::align_val_t(64)); }

// Rows of A per cache block: m cut into equal blocks of at most kMC rows, whole micro-tiles.
int mc_block(int m) {
  const int blocks = (m + kMC - 1) / kMC;
  return ((m + blocks - 1) / blocks + kMR - 1) / kMR * kMR;
}

struct WordBuffer {
  explicit WordBuffer(std::size_t count) : p(alloc_words(count)) {}
  ~WordBuffer() { free_words(p); }
  WordBuffer(const WordBuffer&) = delete;
  WordBuffer& operator=(const WordBuffer&) = delete;
  std::uint32_t* p;
};

// The word holding bf16(x[0]) (low half) and bf16(x[1]) (high half) for k index kk of a row of
// k values; values past k are zero.
inline std::uint32_t pair_word(const float* row, int kk, int k) {
  const std::uint32_t lo = bf16_round_bits(row[kk]);
  const std::uint32_t hi = kk + 1 < k ? bf16_round_bits(row[kk + 1]) : 0u;
  return lo | (hi << 16);
}

// ---- portable kernel: the rounded values through Eigen's fp32 GEMM ----------------------------

void gemm_portable(const float* a, int m, int k, int lda, const PackedBf16& b, float* c, int ldc) {
  const int n = b.rows(), kp = b.k_pairs();
  const ConstStridedMap a_map(a, m, k, Eigen::OuterStride<>(lda));
  const MatrixRM ar = a_map.unaryExpr([](float x) { return bf16_round(x); });
  constexpr int kGroup = 8;  // panels per Eigen product: B block [256 x k] fp32
  MatrixRM bg(std::min(n, kGroup * kNR), k);
  for (int j0 = 0; j0 < b.panels(); j0 += kGroup) {
    const int rows = std::min(n - j0 * kNR, kGroup * kNR);
    for (int j = j0; j < std::min(b.panels(), j0 + kGroup); ++j) {
      const std::uint32_t* panel = b.panel(j);
      for (int jj = 0; jj < kNR && (j - j0) * kNR + jj < rows; ++jj) {
        float* dst = bg.row((j - j0) * kNR + jj).data();
        for (int p = 0; p < kp; ++p) {
          const std::uint32_t w = panel[static_cast<std::size_t>(p) * kNR + jj];
          const std::uint32_t lo = w << 16, hi = w & 0xFFFF0000u;
          std::memcpy(&dst[2 * p], &lo, 4);
          if (2 * p + 1 < k) std::memcpy(&dst[2 * p + 1], &hi, 4);
        }
      }
    }
    StridedMap c_block(c + j0 * kNR, m, rows, Eigen::OuterStride<>(ldc));
    c_block.noalias() = ar * bg.topRows(rows).transpose();
  }
}

// ---- AVX512-BF16 kernel -------------------------------------------------------------------------

#if KVSIM_HAVE_BF16_KERNEL

// 16 floats -> 8 words of bf16 pairs (round to nearest even, NaN quieted); as bf16_round_bits.
KVSIM_TARGET_AVX512BF16 inline __m256i round_pairs16(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF)));
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7FFFFFFF)),
                                                _mm512_set1_epi32(0x7F800000));
  r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(u, _mm512_set1_epi32(0x00400000)));
  return _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16));
}

// Rows [0, mc) of A (row stride lda), k-pairs [p0, p0 + kcp), into micro-panels of kMR rows:
// [mc / kMR rounded up][kcp][kMR] words, rows past mc and k past k zero.
KVSIM_TARGET_AVX512BF16 void pack_a(const float* a, std::ptrdiff_t lda, int mc, int k, int p0, int kcp,
                                    std::uint32_t* ap) {
  for (int i0 = 0; i0 < mc; i0 += kMR) {
    std::uint32_t* dst = ap + static_cast<std::size_t>(i0 / kMR) * kcp * kMR;
    for (int r = 0; r < kMR; ++r) {
      if (i0 + r >= mc) {
        for (int p = 0; p < kcp; ++p) dst[p * kMR + r] = 0;
        continue;
      }
      const float* row = a + (i0 + r) * lda;
      const bool next_row = i0 + r + kMR < mc;  // the row one micro-panel down: prefetched
      for (int p = 0; p < kcp; p += 8) {
        const int kk = 2 * (p0 + p);  // first k of this chunk of 16 (one cache line)
        if (next_row) __builtin_prefetch(row + kMR * lda + kk, 0, 3);
        const int left = std::min(16, k - kk);
        const __mmask16 m = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << std::max(left, 0)) - 1);
        alignas(32) std::uint32_t w[8];
        _mm256_store_si256(reinterpret_cast<__m256i*>(w), round_pairs16(_mm512_maskz_loadu_ps(m, row + kk)));
        const int np = std::min(8, kcp - p);
        for (int j = 0; j < np; ++j) dst[(p + j) * kMR + r] = w[j];
      }
    }
  }
}

// C tile [mr x nr] (=, or += when add) = the product of an A micro-panel [kcp][kMR] and a B
// micro-panel [kcp][kNR]; the whole 12 x 32 tile is computed, the stores are masked.
KVSIM_TARGET_AVX512BF16 void kernel_12x32(int kcp, const std::uint32_t* __restrict a,
                                          const std::uint32_t* __restrict b, float* c, std::ptrdiff_t ldc,
                                          bool add, int mr, int nr, const char* prefetch, int prefetch_lines) {
  // The C tile, for the stores at the end (and the loads when adding), and the share of the next
  // B micro-panel this call brings into L2 (it comes from L3 or memory).
#pragma GCC unroll 12
  for (int r = 0; r < kMR; ++r) {
    if (r >= mr) break;
    __builtin_prefetch(c + r * ldc, 1, 3);
    __builtin_prefetch(c + r * ldc + 16, 1, 3);
  }
  for (int i = 0; i < prefetch_lines; ++i) __builtin_prefetch(prefetch + 64 * i, 0, 2);
  __m512 acc[kMR][2];
#pragma GCC unroll 12
  for (int r = 0; r < kMR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
#pragma GCC unroll 2
  for (int p = 0; p < kcp; ++p) {
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b);
    const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + 16);
#pragma GCC unroll 12
    for (int r = 0; r < kMR; ++r) {
      const __m512bh ar = (__m512bh)_mm512_set1_epi32(static_cast<int>(a[r]));
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], b0, ar);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], b1, ar);
    }
    a += kMR;
    b += kNR;
  }
  const __mmask16 m0 = nr >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << nr) - 1);
  const __mmask16 m1 = nr >= 32 ? __mmask16(0xFFFF) : nr > 16 ? __mmask16((1u << (nr - 16)) - 1) : __mmask16(0);
#pragma GCC unroll 12
  for (int r = 0; r < kMR; ++r) {
    if (r >= mr) break;
    float* cr = c + r * ldc;
    if (add) {
      acc[r][0] = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, cr), acc[r][0]);
      acc[r][1] = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, cr + 16), acc[r][1]);
    }
    _mm512_mask_storeu_ps(cr, m0, acc[r][0]);
    _mm512_mask_storeu_ps(cr + 16, m1, acc[r][1]);
  }
}

KVSIM_TARGET_AVX512BF16 void gemm_avx512(const float* a, int m, int k, int lda, const PackedBf16& b, float* c,
                                         int ldc) {
  const int n = b.rows(), kp = b.k_pairs();
  const int mc_max = mc_block(m);
  const int kc_max = std::min(kKCPairs, kp);
  WordBuffer ap(static_cast<std::size_t>(mc_max) * kc_max);
  for (int ic = 0; ic < m; ic += mc_max) {
    const int mc = std::min(mc_max, m - ic);
    const int calls = (mc + kMR - 1) / kMR;  // micro-tiles per B micro-panel
    for (int pc = 0; pc < kp; pc += kKCPairs) {
      const int kcp = std::min(kKCPairs, kp - pc);
      pack_a(a + static_cast<std::ptrdiff_t>(ic) * lda, lda, mc, k, pc, kcp, ap.p);
      // Each micro-tile of a B micro-panel prefetches its share of the next one's lines.
      const int lines = kcp * kNR * 4 / 64, share = (lines + calls - 1) / calls;
      for (int jp = 0; jp < b.panels(); ++jp) {
        const std::uint32_t* bp = b.panel(jp) + static_cast<std::size_t>(pc) * kNR;
        const char* next = jp + 1 < b.panels() ? reinterpret_cast<const char*>(b.panel(jp + 1) + static_cast<std::size_t>(pc) * kNR) : nullptr;
        const int nr = std::min(kNR, n - jp * kNR);
        for (int ir = 0, t = 0; ir < mc; ir += kMR, ++t) {
          const int pf = next ? std::clamp(lines - t * share, 0, share) : 0;
          kernel_12x32(kcp, ap.p + static_cast<std::size_t>(ir) * kcp, bp,
                       c + static_cast<std::ptrdiff_t>(ic + ir) * ldc + jp * kNR, ldc, pc > 0,
                       std::min(kMR, mc - ir), nr, pf ? next + 64 * t * share : nullptr, pf);
        }
      }
    }
  }
}

KVSIM_TARGET_AVX512BF16 void pack_a_only(const float* a, int m, int k, int lda) {
  const int kp = (k + 1) / 2;
  const int mc_max = mc_block(m);
  WordBuffer ap(static_cast<std::size_t>(mc_max) * std::min(kKCPairs, kp));
  for (int ic = 0; ic < m; ic += mc_max)
    for (int pc = 0; pc < kp; pc += kKCPairs)
      pack_a(a + static_cast<std::ptrdiff_t>(ic) * lda, lda, std::min(mc_max, m - ic), k, pc,
             std::min(kKCPairs, kp - pc), ap.p);
  // Keep the packing from being optimised away.
  asm volatile("" : : "r"(ap.p) : "memory");
}

#endif  // KVSIM_HAVE_BF16_KERNEL

}  // namespace

bool detail::gemm_bf16_pack_a_only(const float* a, int m, int k, int lda) {
#if KVSIM_HAVE_BF16_KERNEL
  if (!cpu_has_avx512_bf16()) return false;
  pack_a_only(a, m, k, lda);
  return true;
#else
  return false;
#endif
}

bool cpu_has_avx512_bf16() {
#if KVSIM_HAVE_BF16_KERNEL
  // Once, thread-safely (gemm_bf16_nt runs in concurrent tasks).
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl");
  }();
  return has;
#else
  return false;
#endif
}

std::uint16_t bf16_round_bits(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<std::uint16_t>((u | 0x00400000u) >> 16);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}

float bf16_round(float x) {
  const std::uint32_t u = static_cast<std::uint32_t>(bf16_round_bits(x)) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

void PackedBf16::Free::operator()(std::uint32_t* p) const { free_words(p); }

PackedBf16::PackedBf16(const float* b, int n, int k)
    : n_(n), k_(k), kp_((k + 1) / 2), panels_((n + kPanel - 1) / kPanel), data_(nullptr) {
  KVSIM_CHECK(n >= 1 && k >= 1, "PackedBf16: n = ", n, ", k = ", k);
  data_.reset(alloc_words(static_cast<std::size_t>(panels_) * kp_ * kPanel));
  for (int j = 0; j < panels_; ++j) {
    std::uint32_t* dst = data_.get() + static_cast<std::size_t>(j) * kp_ * kPanel;
    for (int jj = 0; jj < kPanel; ++jj) {
      const int row = j * kPanel + jj;
      if (row >= n) {
        for (int p = 0; p < kp_; ++p) dst[static_cast<std::size_t>(p) * kPanel + jj] = 0;
        continue;
      }
      const float* src = b + static_cast<std::size_t>(row) * k;
      for (int p = 0; p < kp_; ++p) dst[static_cast<std::size_t>(p) * kPanel + jj] = pair_word(src, 2 * p, k);
    }
  }
}

float PackedBf16::value(int row, int col) const {
  KVSIM_CHECK(row >= 0 && row < n_ && col >= 0 && col < k_);
  const std::uint32_t w = panel(row / kPanel)[static_cast<std::size_t>(col / 2) * kPanel + row % kPanel];
  const std::uint32_t u = col % 2 ? (w & 0xFFFF0000u) : (w << 16);
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

void gemm_bf16_nt(const float* a, int m, int k, int lda, const PackedBf16& b, float* c, int ldc,
                  Bf16Kernel kernel) {
  KVSIM_CHECK(m >= 1 && k >= 1 && k == b.cols() && lda >= k && ldc >= b.rows(), "gemm_bf16_nt: m = ", m,
              ", k = ", k, ", B [", b.rows(), " x ", b.cols(), "], lda = ", lda, ", ldc = ", ldc);
  if (kernel == Bf16Kernel::automatic) kernel = cpu_has_avx512_bf16() ? Bf16Kernel::avx512_bf16 : Bf16Kernel::portable;
#if KVSIM_HAVE_BF16_KERNEL
  if (kernel == Bf16Kernel::avx512_bf16) {
    KVSIM_CHECK(cpu_has_avx512_bf16(), "gemm_bf16_nt: this CPU has no AVX512-BF16");
    gemm_avx512(a, m, k, lda, b, c, ldc);
    return;
  }
#else
  KVSIM_CHECK(kernel != Bf16Kernel::avx512_bf16, "gemm_bf16_nt: built without the AVX512-BF16 kernel");
#endif
  gemm_portable(a, m, k, lda, b, c, ldc);
}

}  // namespace kvsim
