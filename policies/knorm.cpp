#include "policies/knorm.hpp"

#include <cmath>

namespace kvsim {

namespace {

class KnormPolicy final : public ScoredPolicy {
 public:
  explicit KnormPolicy(std::string spec) : ScoredPolicy(std::move(spec)) {}
  void score(const PromptView& v, std::span<float> scores) const override {
    const std::size_t T = v.T, N = static_cast<std::size_t>(v.T + v.M), d = v.head_dim;
    for (int l = 0; l < v.n_layers; ++l)
      for (int g = 0; g < v.n_kv_heads; ++g) {
        const float* k = v.layers[l].keys.data() + g * N * d;
        float* out = scores.data() + (static_cast<std::size_t>(l) * v.n_kv_heads + g) * T;
        for (std::size_t i = 0; i < T; ++i) {
          double s = 0;
          for (std::size_t e = 0; e < d; ++e) s += static_cast<double>(k[i * d + e]) * k[i * d + e];
          out[i] = -static_cast<float>(std::sqrt(s));
        }
      }
  }
};

}  // namespace

PolicyInfo knorm_policy_info() {
  return {"knorm", "keep keys of smallest L2 norm (Devoto et al. 2024)", {}, false,
          [](PolicyArgs a) { return std::make_unique<KnormPolicy>(a.spec); }};
}

}  // namespace kvsim
