#pragma once
// Deterministic random numbers from an explicit seed (STYLE.md habit 4): SplitMix64 for the
// stream, our own uniform/normal transforms so results are identical across standard
// libraries (std::normal_distribution is implementation-defined).
#include <cmath>
#include <cstdint>

namespace kvsim {

class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}

  std::uint64_t next_u64() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
  // Uniform integer in [0, n).
  std::uint64_t below(std::uint64_t n) { return static_cast<std::uint64_t>(uniform() * static_cast<double>(n)); }
  // Standard normal by Box-Muller (one value per call; simple and reproducible).
  double normal() {
    double u1 = uniform();
    double u2 = uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

 private:
  std::uint64_t state_;
};

// Derives an independent seed for a sub-job (e.g. layer l of prompt p) from a parent seed.
inline std::uint64_t derive_seed(std::uint64_t parent, std::uint64_t salt) {
  Rng r(parent ^ (salt * 0xD1B54A32D192ED03ull));
  return r.next_u64();
}

}  // namespace kvsim
