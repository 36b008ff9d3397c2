// rope_frequencies on its own: the CUDA module (docs/cuda.md) compiles this file in too, so
// that its RoPE tables hold the CPU pass's values without linking the CPU pass.
#include <cmath>

#include "tracer/cpu_forward.hpp"

namespace kvsim {

std::vector<float> rope_frequencies(int head_dim, double theta) {
  std::vector<float> freq(head_dim / 2);
  for (int i = 0; i < head_dim / 2; ++i)
    freq[i] = 1.0f / std::pow(static_cast<float>(theta), static_cast<float>(2 * i) / static_cast<float>(head_dim));
  return freq;
}

}  // namespace kvsim
