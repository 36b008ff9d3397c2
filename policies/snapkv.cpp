#include "policies/snapkv.hpp"

namespace kvsim {

std::vector<ParamInfo> snapkv_param_infos() {
  return {{"window", "64", "observation window: the last window queries score, the last window tokens are kept"},
          {"kernel", "5", "pooling kernel along tokens (odd; 1 = no pooling)"},
          {"pool", "avg", "pooling kind (avg|max)"},
          reduce_param(),
          sink_param()};
}

SnapKvParams read_snapkv_params(const ParamReader& p) {
  SnapKvParams s;
  s.window = integer_at_least(p, "window", 1);
  s.kernel = integer_at_least(p, "kernel", 1);
  if (s.kernel % 2 == 0)
    fail<InputError>("policy ", p.policy_name(), ": parameter kernel must be odd (same-length pooling), got ", s.kernel);
  s.pool = parse_pool(p);
  s.reduce = parse_group_reduce(p);
  s.sink = read_sink(p);
  return s;
}

void snapkv_score(const PromptView& v, const SnapKvParams& s, std::span<float> scores) {
  // Pooled: the tokens between the sinks and the window (both protected, so their attention
  // does not leak into their neighbours' scores).
  const int H = v.n_heads, T = v.T, prefix = std::max(0, v.T - s.window), first = std::min(s.sink, prefix);
  score_query_heads(v, s.reduce, s.window, scores, [&](int l, std::vector<float>& per_head) {
    window_mean_attention(v, l, s.window, per_head);  // [H, T]
    for (int h = 0; h < H; ++h)
      pool_same(std::span<float>(per_head).subspan(static_cast<std::size_t>(h) * T + first, prefix - first), s.kernel,
                s.pool);
  });
}

namespace {

class SnapKvPolicy final : public ScoredPolicy {
 public:
  SnapKvPolicy(std::string spec, SnapKvParams params) : ScoredPolicy(std::move(spec), params.sink), params_(params) {}
  PolicyNeeds needs() const override { return {.window = params_.window}; }
  void score(const PromptView& v, std::span<float> scores) const override { snapkv_score(v, params_, scores); }

 private:
  SnapKvParams params_;
};

}  // namespace

PolicyInfo snapkv_policy_info() {
  return {"snapkv", "observation-window attention, pooled (Li et al. 2024; kvpress defaults)", snapkv_param_infos(),
          false, [](PolicyArgs a) { return std::make_unique<SnapKvPolicy>(a.spec, read_snapkv_params(a.params)); }};
}

}  // namespace kvsim
