#include "policies/h2o.hpp"

#include "policies/score_utils.hpp"

namespace kvsim {

namespace {

class H2oPolicy final : public ScoredPolicy {
 public:
  H2oPolicy(std::string spec, int window, int sink, GroupReduce reduce)
      : ScoredPolicy(std::move(spec), sink), window_(window), reduce_(reduce) {}
  PolicyNeeds needs() const override { return {.colsum = true}; }
  void score(const PromptView& v, std::span<float> scores) const override {
    const int H = v.n_heads, T = v.T;
    score_query_heads(v, reduce_, window_, scores, [&](int l, std::vector<float>& per_head) {
      const auto& colsum = v.layers[l].attn_colsum;  // [H, T]
      KVSIM_CHECK(colsum.size() == static_cast<std::size_t>(H) * T, "prompt ", v.id, ": attn_colsum missing");
      for (int h = 0; h < H; ++h)
        for (int i = 0; i < T; ++i) {
          const std::size_t k = static_cast<std::size_t>(h) * T + i;
          per_head[k] = colsum[k] / static_cast<float>(T - i);
        }
    });
  }

 private:
  int window_;
  GroupReduce reduce_;
};

}  // namespace

PolicyInfo h2o_policy_info() {
  return {"h2o", "observed attention: prompt attention received / queries that saw it, recent window kept (Zhang et al. 2023)",
          {{"window", "64", "most recent tokens always kept (0: none, as kvpress ObservedAttentionPress)"}, reduce_param(),
           sink_param()},
          false, [](PolicyArgs a) {
            const int window = integer_at_least(a.params, "window", 0);
            return std::make_unique<H2oPolicy>(a.spec, window, read_sink(a.params), parse_group_reduce(a.params));
          }};
}

}  // namespace kvsim
