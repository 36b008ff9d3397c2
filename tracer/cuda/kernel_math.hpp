#pragma once
// The arithmetic the CUDA kernels share with host code, written once as host+device inline
// functions so the CPU tests check it (tests/021_cuda_host_test.cpp) on machines without a
// GPU: RoPE pairing, the online-softmax merge of the flash attention kernel, the top-K order,
// bf16 rounding.
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define KVSIM_HD __host__ __device__ __forceinline__
#else
#define KVSIM_HD inline
#endif

namespace kvsim::kernel_math {

// Dimensions RoPE rotates together for frequency index i < half = d/2 (RopeStyle).
struct RopePair {
  int a, b;
};
KVSIM_HD RopePair rope_pair(bool interleaved, int i, int half) {
  return interleaved ? RopePair{2 * i, 2 * i + 1} : RopePair{i, i + half};
}

// Online softmax (Milakov & Gimelshein 2018; FlashAttention, Dao et al. 2022): a row's running
// max m and denominator l absorb a tile whose largest score is tile_max. Returns the factor
// that rescales the row's accumulated output (0 on the first visible tile, 1 while nothing
// is visible yet). Scores of masked keys are -inf.
KVSIM_HD float online_rescale(float& m, float& l, float tile_max) {
  const float m_new = m > tile_max ? m : tile_max;
  if (m_new == -INFINITY) return 1.0f;
  const float corr = expf(m - m_new);
  l *= corr;
  m = m_new;
  return corr;
}

// Top-K order: larger logit first, lower token id first among equals (the CPU recorder's
// std::partial_sort comparator), a strict total order so "the next after (v, i)" is defined.
KVSIM_HD bool ranks_before(float va, int ia, float vb, int ib) { return va > vb || (va == vb && ia < ib); }

// IEEE float -> bfloat16 bits, round to nearest even (as __float2bfloat16_rn); NaN stays NaN.
inline std::uint16_t float_to_bf16_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}
inline float bf16_bits_to_float(std::uint16_t b) {
  const std::uint32_t u = static_cast<std::uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace kvsim::kernel_math
