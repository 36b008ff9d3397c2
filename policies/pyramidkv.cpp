#include "policies/pyramidkv.hpp"

#include <algorithm>
#include <limits>

#include "policies/score_utils.hpp"
#include "policies/snapkv.hpp"

namespace kvsim {

std::vector<int> pyramid_layer_budgets(int L, int T, int B, int protect, double beta) {
  B = std::clamp(B, 0, T);
  const std::vector<int> uniform(L, B);
  double lo = B / beta, hi = 2.0 * B - lo;
  if (hi >= T - protect) hi = T - protect, lo = 2.0 * B - hi;
  if (L <= 1 || !(T >= hi && hi >= lo && lo >= protect)) return uniform;
  const double step = (hi - lo) / (L - 1);
  std::vector<double> raw(L);
  for (int l = 0; l < L; ++l) raw[l] = hi - l * step;
  return allocate(raw, std::vector<int>(L, T), static_cast<long>(L) * B);
}

namespace {

class PyramidKvPolicy final : public ScoredPolicy {
 public:
  PyramidKvPolicy(std::string spec, SnapKvParams params, double beta)
      : ScoredPolicy(std::move(spec), params.sink), params_(params), beta_(beta) {}
  PolicyNeeds needs() const override { return {.window = params_.window}; }
  void score(const PromptView& v, std::span<float> scores) const override { snapkv_score(v, params_, scores); }
  std::vector<int> layer_budgets(const PromptView& v, int B) const override {
    // The sinks come off every layer's budget like the window: both are protected.
    return pyramid_layer_budgets(v.n_layers, v.T, B, params_.window + params_.sink, beta_);
  }

 private:
  SnapKvParams params_;
  double beta_;
};

}  // namespace

PolicyInfo pyramidkv_policy_info() {
  std::vector<ParamInfo> params = snapkv_param_infos();
  params.push_back({"beta", "20", "pyramid steepness: the last layer keeps about B/beta (>= 1)"});
  return {"pyramidkv", "snapkv scores, layer budgets decreasing linearly with depth (Cai et al. 2024; kvpress formula)",
          params, false, [](PolicyArgs a) {
            const SnapKvParams s = read_snapkv_params(a.params);
            const double beta = number_in(a.params, "beta", 1.0, std::numeric_limits<double>::infinity());
            return std::make_unique<PyramidKvPolicy>(a.spec, s, beta);
          }};
}

}  // namespace kvsim
