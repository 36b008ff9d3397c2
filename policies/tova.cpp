#include "policies/tova.hpp"

#include "policies/score_utils.hpp"

namespace kvsim {

namespace {

class TovaPolicy final : public ScoredPolicy {
 public:
  TovaPolicy(std::string spec, int window, int sink) : ScoredPolicy(std::move(spec), sink), window_(window) {}
  PolicyNeeds needs() const override { return {.window = 1}; }
  void score(const PromptView& v, std::span<float> scores) const override {
    const int H = v.n_heads, T = v.T;
    // The mean over all H heads, written to each KV head: the mean over the group of the
    // layer-wide mean, so score_query_heads' group reduction and protection apply unchanged.
    score_query_heads(v, GroupReduce::kMean, window_, scores, [&](int l, std::vector<float>& per_head) {
      std::vector<float> last;  // [H, T]
      window_mean_attention(v, l, 1, last);
      std::vector<float> mean(T, 0.0f);
      for (int h = 0; h < H; ++h)
        for (int i = 0; i < T; ++i) mean[i] += last[static_cast<std::size_t>(h) * T + i];
      for (int h = 0; h < H; ++h)
        for (int i = 0; i < T; ++i) per_head[static_cast<std::size_t>(h) * T + i] = mean[i] / static_cast<float>(H);
    });
  }

 private:
  int window_;
};

}  // namespace

PolicyInfo tova_policy_info() {
  return {"tova", "last prompt query's attention, mean over all heads, one kept set per layer (Oren et al. 2024)",
          {{"window", "1", "most recent tokens always kept (1: the last token, as kvpress; 0: the paper)"}, sink_param()},
          false, [](PolicyArgs a) {
            return std::make_unique<TovaPolicy>(a.spec, integer_at_least(a.params, "window", 0), read_sink(a.params));
          }};
}

}  // namespace kvsim
