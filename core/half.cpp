#include "core/half.hpp"

#include <Eigen/Core>
#include <cstring>

#include "core/error.hpp"

#if defined(__F16C__)
#include <immintrin.h>
#endif

namespace kvsim {

half_bits float_to_half(float f) { return Eigen::numext::bit_cast<half_bits>(Eigen::half(f)); }

float half_to_float(half_bits h) {
  return static_cast<float>(Eigen::numext::bit_cast<Eigen::half>(h));
}

void float_to_half(std::span<const float> src, std::span<half_bits> dst) {
  KVSIM_CHECK(src.size() == dst.size());
  std::size_t i = 0;
#if defined(__F16C__)
  for (; i + 8 <= src.size(); i += 8) {
    __m256 v = _mm256_loadu_ps(src.data() + i);
    __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst.data() + i), h);
  }
#endif
  for (; i < src.size(); ++i) dst[i] = float_to_half(src[i]);
}

void half_to_float(std::span<const half_bits> src, std::span<float> dst) {
  KVSIM_CHECK(src.size() == dst.size());
  std::size_t i = 0;
#if defined(__F16C__)
  for (; i + 8 <= src.size(); i += 8) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src.data() + i));
    _mm256_storeu_ps(dst.data() + i, _mm256_cvtph_ps(h));
  }
#endif
  for (; i < src.size(); ++i) dst[i] = half_to_float(src[i]);
}

void half_bytes_to_float(const std::byte* src, std::span<float> dst) {
  std::size_t i = 0;
#if defined(__F16C__)
  for (; i + 8 <= dst.size(); i += 8) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i));
    _mm256_storeu_ps(dst.data() + i, _mm256_cvtph_ps(h));
  }
#endif
  for (; i < dst.size(); ++i) {
    half_bits h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = half_to_float(h);
  }
}

void bf16_bytes_to_float(const std::byte* src, std::span<float> dst) {
  for (std::size_t i = 0; i < dst.size(); ++i) {
    std::uint16_t b;
    std::memcpy(&b, src + 2 * i, 2);
    const std::uint32_t u = static_cast<std::uint32_t>(b) << 16;
    std::memcpy(&dst[i], &u, 4);
  }
}

void float_to_bf16(std::span<const float> src, std::span<bf16_bits> dst) {
  KVSIM_CHECK(src.size() == dst.size());
  for (std::size_t i = 0; i < src.size(); ++i) dst[i] = Eigen::numext::bit_cast<bf16_bits>(Eigen::bfloat16(src[i]));
}

void bf16_to_float(std::span<const bf16_bits> src, std::span<float> dst) {
  KVSIM_CHECK(src.size() == dst.size());
  bf16_bytes_to_float(reinterpret_cast<const std::byte*>(src.data()), dst);
}

}  // namespace kvsim
