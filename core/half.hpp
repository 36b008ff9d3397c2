#pragma once
// IEEE binary16 storage for traces. Conversion uses F16C (8 lanes at a time) where the
// compiler targets it, Eigen::half otherwise; both round to nearest even.
#include <cstddef>
#include <cstdint>
#include <span>

namespace kvsim {

using half_bits = std::uint16_t;  // raw IEEE binary16 bit pattern

void float_to_half(std::span<const float> src, std::span<half_bits> dst);
void half_to_float(std::span<const half_bits> src, std::span<float> dst);

float half_to_float(half_bits h);

// dst.size() little-endian values read from bytes at any alignment (model files):
// IEEE binary16, and bfloat16 (the upper 16 bits of an fp32).
void half_bytes_to_float(const std::byte* src, std::span<float> dst);
void bf16_bytes_to_float(const std::byte* src, std::span<float> dst);
half_bits float_to_half(float f);

// bfloat16 (the upper 16 bits of an fp32) for traces stored with --storage bf16: fp32 -> bf16
// rounds to nearest even (Eigen::bfloat16); bf16 -> fp32 is exact.
using bf16_bits = std::uint16_t;
void float_to_bf16(std::span<const float> src, std::span<bf16_bits> dst);
void bf16_to_float(std::span<const bf16_bits> src, std::span<float> dst);

}  // namespace kvsim
