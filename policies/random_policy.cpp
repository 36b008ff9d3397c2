#include "policies/random_policy.hpp"

#include "core/hash.hpp"
#include "core/rng.hpp"

namespace kvsim {

namespace {

class RandomPolicy final : public ScoredPolicy {
 public:
  RandomPolicy(std::string spec, std::uint64_t seed) : ScoredPolicy(std::move(spec)), seed_(seed) {}
  void score(const PromptView& v, std::span<float> scores) const override {
    const std::size_t T = static_cast<std::size_t>(v.T);
    const std::uint64_t base = derive_seed(v.seed, seed_);
    for (int lg = 0; lg < v.n_layers * v.n_kv_heads; ++lg) {
      Rng rng(derive_seed(base, static_cast<std::uint64_t>(lg)));
      for (std::size_t i = 0; i < T; ++i) scores[lg * T + i] = static_cast<float>(rng.uniform());
    }
  }

 private:
  std::uint64_t seed_;
};

}  // namespace

PolicyInfo random_policy_info() {
  return {"random", "uniformly random kept set, seeded from the prompt and `seed`",
          {{"seed", "0", "extra seed mixed with the prompt's"}}, false, [](PolicyArgs a) {
            return std::make_unique<RandomPolicy>(a.spec, static_cast<std::uint64_t>(a.params.integer("seed")));
          }};
}

}  // namespace kvsim
