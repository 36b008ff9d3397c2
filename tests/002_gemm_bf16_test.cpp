// Tests of core/gemm_bf16: bf16 rounding, B packing, and both kernels (AVX512-BF16 where the CPU
// has it, portable everywhere) against a double-precision product of the bf16-rounded inputs.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/gemm_bf16.hpp"
#include "core/half.hpp"
#include "core/rng.hpp"
#include "support/skip.hpp"

using namespace kvsim;

namespace {

std::vector<float> random_values(std::size_t count, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(count);
  for (float& x : v) x = static_cast<float>(rng.normal());
  return v;
}

// The independent rounding: Eigen::bfloat16 (kvsim::float_to_bf16), to a float.
float eigen_bf16(float x) {
  bf16_bits h;
  float_to_bf16(std::span<const float>(&x, 1), std::span<bf16_bits>(&h, 1));
  const std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

const char* kernel_name(Bf16Kernel k) { return k == Bf16Kernel::portable ? "portable" : "avx512_bf16"; }

// C = A B^T through gemm_bf16_nt with strides (lda = k + 3, ldc = n + 5), checked against the
// double-precision product of the rounded inputs: |err| <= 1e-5 * sum |a||b| per element, and the
// padding columns of C left untouched.
void check_product(Bf16Kernel kernel, int m, int n, int k) {
  INFO(kernel_name(kernel) << " m=" << m << " n=" << n << " k=" << k);
  const int lda = k + 3, ldc = n + 5;
  const std::vector<float> a = random_values(static_cast<std::size_t>(m) * lda, 11 + m + 7 * k);
  const std::vector<float> b = random_values(static_cast<std::size_t>(n) * k, 13 + n + 5 * k);
  const PackedBf16 bp(b.data(), n, k);
  REQUIRE(bp.rows() == n);
  REQUIRE(bp.cols() == k);
  std::vector<float> c(static_cast<std::size_t>(m) * ldc, -7.0f);
  gemm_bf16_nt(a.data(), m, k, lda, bp, c.data(), ldc, kernel);
  std::vector<double> ar(static_cast<std::size_t>(m) * k), br(static_cast<std::size_t>(n) * k);
  for (int i = 0; i < m; ++i)
    for (int p = 0; p < k; ++p) ar[i * k + p] = eigen_bf16(a[i * lda + p]);
  for (std::size_t i = 0; i < br.size(); ++i) br[i] = eigen_bf16(b[i]);
  int bad = 0;
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      double ref = 0, mag = 0;
      for (int p = 0; p < k; ++p) {
        ref += ar[i * k + p] * br[j * k + p];
        mag += std::abs(ar[i * k + p] * br[j * k + p]);
      }
      const double err = std::abs(static_cast<double>(c[i * ldc + j]) - ref);
      if (!(err <= 1e-5 * mag) && bad++ < 5) FAIL_CHECK("C[" << i << "," << j << "] = " << c[i * ldc + j] << ", reference " << ref << ", sum |a||b| " << mag);
    }
    for (int j = n; j < ldc; ++j)
      if (c[i * ldc + j] != -7.0f && bad++ < 5) FAIL_CHECK("C[" << i << "," << j << "] past n was written");
  }
  CHECK(bad == 0);
}

std::vector<Bf16Kernel> kernels_here() {
  std::vector<Bf16Kernel> k{Bf16Kernel::portable};
  if (cpu_has_avx512_bf16()) k.push_back(Bf16Kernel::avx512_bf16);
  return k;
}

}  // namespace

TEST_CASE("gemm_bf16: rounding to bf16 is Eigen::bfloat16's (nearest even), NaN stays NaN", "[core][gemm_bf16]") {
  std::vector<float> x = random_values(4000, 1);
  for (float& v : x) v *= 1e3f;
  // Exact ties: 1 + 2^-8 rounds down to 1 (even), 1 + 3 * 2^-8 up to 1 + 2^-6; a denormal; the
  // largest float rounds to infinity; infinities and zeros stay.
  const float inf = std::numeric_limits<float>::infinity();
  x.insert(x.end(), {1.0f + std::ldexp(1.0f, -8), 1.0f + 3 * std::ldexp(1.0f, -8), std::ldexp(1.3f, -130),
                     std::numeric_limits<float>::max(), inf, -inf, 0.0f, -0.0f});
  for (const float v : x) {
    INFO(v);
    const float ours = bf16_round(v), eigen = eigen_bf16(v);
    REQUIRE(std::memcmp(&ours, &eigen, 4) == 0);
  }
  CHECK(bf16_round(1.0f + std::ldexp(1.0f, -8)) == 1.0f);
  CHECK(bf16_round(1.0f + 3 * std::ldexp(1.0f, -8)) == 1.0f + std::ldexp(1.0f, -6));
  CHECK(bf16_round(std::numeric_limits<float>::max()) == inf);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  CHECK(std::isnan(bf16_round(nan)));
  CHECK(std::isnan(bf16_round(-nan)));
  // A signalling NaN whose payload sits only in the low 16 bits must not become infinity.
  std::uint32_t snan_bits = 0x7F800001u;
  float snan;
  std::memcpy(&snan, &snan_bits, 4);
  CHECK(std::isnan(bf16_round(snan)));
}

TEST_CASE("gemm_bf16: PackedBf16 holds B rounded to bf16, zero padding", "[core][gemm_bf16]") {
  for (const auto& [n, k] : {std::pair{1, 1}, {31, 13}, {33, 2}, {70, 257}}) {
    const std::vector<float> b = random_values(static_cast<std::size_t>(n) * k, 5);
    const PackedBf16 bp(b.data(), n, k);
    CHECK(bp.k_pairs() == (k + 1) / 2);
    CHECK(bp.panels() == (n + PackedBf16::kPanel - 1) / PackedBf16::kPanel);
    for (int j = 0; j < n; ++j)
      for (int p = 0; p < k; ++p) REQUIRE(bp.value(j, p) == eigen_bf16(b[j * k + p]));
    // Rows past n and the odd k's partner are zero words / zero halves.
    const std::uint32_t* last = bp.panel(bp.panels() - 1);
    for (int jj = n % PackedBf16::kPanel; jj && jj < PackedBf16::kPanel; ++jj)
      for (int p = 0; p < bp.k_pairs(); ++p) REQUIRE(last[p * PackedBf16::kPanel + jj] == 0u);
    if (k % 2)
      for (int jj = 0; jj < PackedBf16::kPanel; ++jj) REQUIRE((bp.panel(0)[(k / 2) * PackedBf16::kPanel + jj] >> 16) == 0u);
  }
}

TEST_CASE("gemm_bf16: both kernels match the double product of the rounded inputs, edge shapes", "[core][gemm_bf16]") {
  if (!cpu_has_avx512_bf16()) WARN("this CPU has no AVX512-BF16: only the portable kernel is tested");
  for (const Bf16Kernel kernel : kernels_here()) {
    for (const int m : {1, 2, 13, 31, 33})
      for (const int n : {1, 2, 13, 31, 33})
        for (const int k : {1, 2, 13, 31, 33}) check_product(kernel, m, n, k);
    // Past the register tile (12 x 32), the cache blocks (768 rows of A, 512 of k) and odd k.
    check_product(kernel, 257, 257, 257);
    check_product(kernel, 801, 40, 613);
    check_product(kernel, 200, 70, 1101);
    check_product(kernel, 397, 65, 1024);
    check_product(kernel, 12, 32, 512);
  }
}

TEST_CASE("gemm_bf16: AVX512-BF16 kernel is deterministic, whatever the buffers' alignment", "[core][gemm_bf16]") {
  if (!cpu_has_avx512_bf16()) KVSIM_SKIP("this CPU has no AVX512-BF16");
  const int m = 203, n = 77, k = 1031;
  const std::vector<float> a = random_values(static_cast<std::size_t>(m) * k, 21);
  const std::vector<float> b = random_values(static_cast<std::size_t>(n) * k, 22);
  const PackedBf16 bp(b.data(), n, k);
  std::vector<float> c1(static_cast<std::size_t>(m) * n), c2(c1.size());
  gemm_bf16_nt(a.data(), m, k, k, bp, c1.data(), n, Bf16Kernel::avx512_bf16);
  gemm_bf16_nt(a.data(), m, k, k, bp, c2.data(), n, Bf16Kernel::avx512_bf16);
  CHECK(std::memcmp(c1.data(), c2.data(), c1.size() * 4) == 0);
  // A and C one float off their allocation's alignment, B packed from a shifted copy.
  for (const int shift : {1, 3, 8}) {
    INFO("shift " << shift);
    std::vector<float> a2(a.size() + shift), b2(b.size() + shift), c3(c1.size() + shift);
    std::copy(a.begin(), a.end(), a2.begin() + shift);
    std::copy(b.begin(), b.end(), b2.begin() + shift);
    const PackedBf16 bp2(b2.data() + shift, n, k);
    gemm_bf16_nt(a2.data() + shift, m, k, k, bp2, c3.data() + shift, n, Bf16Kernel::avx512_bf16);
    CHECK(std::memcmp(c1.data(), c3.data() + shift, c1.size() * 4) == 0);
  }
  // automatic picks this kernel here.
  gemm_bf16_nt(a.data(), m, k, k, bp, c2.data(), n);
  CHECK(std::memcmp(c1.data(), c2.data(), c1.size() * 4) == 0);
}

TEST_CASE("gemm_bf16: portable kernel is deterministic", "[core][gemm_bf16]") {
  const int m = 50, n = 40, k = 301;
  const std::vector<float> a = random_values(static_cast<std::size_t>(m) * k, 31);
  const std::vector<float> b = random_values(static_cast<std::size_t>(n) * k, 32);
  const PackedBf16 bp(b.data(), n, k);
  std::vector<float> c1(static_cast<std::size_t>(m) * n), c2(c1.size());
  gemm_bf16_nt(a.data(), m, k, k, bp, c1.data(), n, Bf16Kernel::portable);
  gemm_bf16_nt(a.data(), m, k, k, bp, c2.data(), n, Bf16Kernel::portable);
  CHECK(std::memcmp(c1.data(), c2.data(), c1.size() * 4) == 0);
}

TEST_CASE("gemm_bf16: NaN and infinity propagate, bad arguments throw", "[core][gemm_bf16]") {
  const int m = 14, n = 35, k = 9;
  std::vector<float> a = random_values(static_cast<std::size_t>(m) * k, 41);
  std::vector<float> b = random_values(static_cast<std::size_t>(n) * k, 42);
  b[33 * k + 4] = std::numeric_limits<float>::quiet_NaN();   // column 33 of C: NaN
  a[13 * k + 8] = std::numeric_limits<float>::infinity();    // row 13 of C: +-inf (or NaN at 33)
  const PackedBf16 bp(b.data(), n, k);
  for (const Bf16Kernel kernel : kernels_here()) {
    INFO(kernel_name(kernel));
    std::vector<float> c(static_cast<std::size_t>(m) * n);
    gemm_bf16_nt(a.data(), m, k, k, bp, c.data(), n, kernel);
    for (int i = 0; i < m; ++i) {
      for (int j = 0; j < n; ++j) {
        const float v = c[i * n + j];
        if (j == 33) REQUIRE(std::isnan(v));
        else if (i == 13) REQUIRE(std::isinf(v));
        else REQUIRE(std::isfinite(v));
      }
    }
  }
  std::vector<float> c(static_cast<std::size_t>(m) * n);
  CHECK_THROWS(gemm_bf16_nt(a.data(), m, k + 1, k + 1, bp, c.data(), n));  // k != B's
  CHECK_THROWS(gemm_bf16_nt(a.data(), m, k, k - 1, bp, c.data(), n));      // lda < k
  CHECK_THROWS(gemm_bf16_nt(a.data(), m, k, k, bp, c.data(), n - 1));      // ldc < n
  CHECK_THROWS(PackedBf16(b.data(), 0, k));
}
