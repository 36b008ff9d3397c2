// Tests of core/half: F16C and Eigen::half conversions agree with IEEE binary16 facts.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include "core/half.hpp"

using namespace kvsim;

TEST_CASE("half: known bit patterns", "[core][half]") {
  // IEEE 754 binary16: 1.0 = 0x3C00, -2.0 = 0xC000, 65504 = 0x7BFF (max finite),
  // 2^-24 = 0x0001 (smallest subnormal), 0.1 rounds to 0x2E66.
  CHECK(float_to_half(1.0f) == 0x3C00);
  CHECK(float_to_half(-2.0f) == 0xC000);
  CHECK(float_to_half(65504.0f) == 0x7BFF);
  CHECK(float_to_half(std::ldexp(1.0f, -24)) == 0x0001);
  CHECK(float_to_half(0.1f) == 0x2E66);
  CHECK(half_to_float(0x3555) == Approx(0.333251953125f).epsilon(0));
}

TEST_CASE("half: vector path equals scalar path, round to nearest even", "[core][half]") {
  std::vector<float> x;
  for (int i = -2000; i < 2000; ++i) x.push_back(static_cast<float>(i) * 0.01234567f);
  x.push_back(1.0f + std::ldexp(1.0f, -11));  // exact tie: rounds to even (1.0)
  std::vector<half_bits> h(x.size());
  float_to_half(x, h);
  for (std::size_t i = 0; i < x.size(); ++i) REQUIRE(h[i] == float_to_half(x[i]));
  CHECK(h.back() == 0x3C00);
  std::vector<float> back(x.size());
  half_to_float(h, back);
  for (std::size_t i = 0; i + 1 < x.size(); ++i) {
    // binary16 has an 11-bit significand: relative error <= 2^-11 for normal numbers.
    if (std::abs(x[i]) > 1e-4f) REQUIRE(std::abs(back[i] - x[i]) <= std::abs(x[i]) * 4.9e-4f);
  }
}
