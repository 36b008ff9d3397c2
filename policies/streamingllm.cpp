#include "policies/streamingllm.hpp"

#include <limits>

namespace kvsim {

namespace {

class StreamingLlmPolicy final : public ScoredPolicy {
 public:
  StreamingLlmPolicy(std::string spec, int sink) : ScoredPolicy(std::move(spec)), sink_(sink) {}
  // Sinks score +inf (kept first, the earliest first among them), then recency: later tokens
  // score higher. order_by_score breaks the +inf ties towards the later token, so the sinks
  // get distinct finite-but-huge scores ordered by position instead.
  void score(const PromptView& v, std::span<float> scores) const override {
    const std::size_t T = static_cast<std::size_t>(v.T);
    for (int lg = 0; lg < v.n_layers * v.n_kv_heads; ++lg)
      for (std::size_t i = 0; i < T; ++i)
        scores[lg * T + i] = static_cast<int>(i) < sink_ ? 2.0f * static_cast<float>(T) - static_cast<float>(i)
                                                          : static_cast<float>(i);
  }

 private:
  int sink_;
};

}  // namespace

PolicyInfo streamingllm_policy_info() {
  return {"streamingllm", "attention sinks + most recent tokens (Xiao et al. 2024)",
          {{"sink", "4", "number of initial tokens always kept"}}, false, [](PolicyArgs a) {
            const int sink = a.params.integer("sink");
            if (sink < 0) fail<InputError>("policy streamingllm: sink must be >= 0, got ", sink);
            return std::make_unique<StreamingLlmPolicy>(a.spec, sink);
          }};
}

}  // namespace kvsim
