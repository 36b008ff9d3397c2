#include "policies/oracle.hpp"

#include "policies/score_utils.hpp"

namespace kvsim {

namespace {

class OraclePolicy final : public ScoredPolicy {
 public:
  OraclePolicy(std::string spec, int window, int sink, GroupReduce reduce)
      : ScoredPolicy(std::move(spec), sink), window_(window), reduce_(reduce) {}
  PolicyNeeds needs() const override { return {.cont_attn = true}; }
  void score(const PromptView& v, std::span<float> scores) const override {
    const int H = v.n_heads, T = v.T, M = v.M, N = v.T + v.M;
    score_query_heads(v, reduce_, window_, scores, [&](int l, std::vector<float>& per_head) {
      const auto& a = v.layers[l].cont_attn;  // [H, M, T+M]
      KVSIM_CHECK(a.size() == static_cast<std::size_t>(H) * M * N, "prompt ", v.id, ": continuation attention not derived");
      for (int h = 0; h < H; ++h) {
        float* o = per_head.data() + static_cast<std::size_t>(h) * T;
        for (int t = 0; t < M; ++t) {
          const float* row = a.data() + (static_cast<std::size_t>(h) * M + t) * N;
          for (int i = 0; i < T; ++i) o[i] += row[i];
        }
      }
    });
  }

 private:
  int window_;
  GroupReduce reduce_;
};

}  // namespace

PolicyInfo oracle_policy_info() {
  return {"oracle", "attention the continuation actually pays (future information: an upper bound, like Belady)",
          {{"window", "0", "most recent tokens always kept (default none)"}, reduce_param("sum"), sink_param()}, false,
          [](PolicyArgs a) {
            const int window = integer_at_least(a.params, "window", 0);
            return std::make_unique<OraclePolicy>(a.spec, window, read_sink(a.params), parse_group_reduce(a.params));
          }};
}

}  // namespace kvsim
