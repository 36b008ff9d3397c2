#include "policies/pyramidkv.hpp"

#include <algorithm>
#include <cmath>
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

// Python 3's round() on a float: to the nearest integer, halves to the even one (exact on the
// double, whatever the FPU rounding mode).
int python_round(double x) {
  const double f = std::floor(x), d = x - f;  // x - f is exact for x >= 0
  if (d > 0.5 || (d == 0.5 && std::fmod(f, 2.0) != 0.0)) return static_cast<int>(f) + 1;
  return static_cast<int>(f);
}

}  // namespace

std::vector<int> pyramid_layer_budgets_kvpress(int L, int T, double kept, int protect, double beta) {
  // kvpress 0.5.x PyramidKVPress.get_layer_budget, operation for operation in double (q_len = T,
  // window_size = protect, q_len * (1 - compression_ratio) = kept).
  kept = std::clamp(kept, 0.0, static_cast<double>(T));
  const double max_capacity_prompt = protect + kept;
  double min_num = (max_capacity_prompt - protect) / beta;
  double max_num = (max_capacity_prompt - protect) * 2 - min_num;
  if (max_num >= T - protect) {
    max_num = T - protect;
    min_num = (max_capacity_prompt - protect) * 2 - max_num;
  }
  // kvpress divides by num_hidden_layers - 1 (a ZeroDivisionError at L = 1): one layer falls back.
  if (L <= 1 || !(T >= max_num && max_num >= min_num && min_num >= protect))
    return std::vector<int>(L, python_round(kept));  // "Fall back to SnapKV", but round(), not int()
  const double steps = (max_num - min_num) / (L - 1);
  std::vector<int> budget(L);
  for (int l = 0; l < L; ++l) budget[l] = python_round(max_num - l * steps);
  return budget;
}

namespace {

enum class PyramidRounding { kLargestRemainder, kKvpress };

class PyramidKvPolicy final : public ScoredPolicy {
 public:
  PyramidKvPolicy(std::string spec, SnapKvParams params, double beta, PyramidRounding rounding)
      : ScoredPolicy(std::move(spec), params.sink), params_(params), beta_(beta), rounding_(rounding) {}
  PolicyNeeds needs() const override { return {.window = params_.window}; }
  void score(const PromptView& v, std::span<float> scores) const override { snapkv_score(v, params_, scores); }
  // kvpress's rule keeps round(T·(1 − r)) >= B in its fallback (B + 1 at most, B = int(T·(1 − r)))
  // and Σ_l round(raw[l]) <= L·T·(1 − r) + L/2 < L·(B + 1.5) in its pyramid.
  int budget_slack() const override { return rounding_ == PyramidRounding::kKvpress ? 2 : 0; }
  std::vector<int> layer_budgets(const PromptView& v, int B, double B_exact) const override {
    // The sinks come off every layer's budget like the window: both are protected.
    const int protect = params_.window + params_.sink;
    if (rounding_ == PyramidRounding::kKvpress)
      return pyramid_layer_budgets_kvpress(v.n_layers, v.T, B_exact, protect, beta_);
    return pyramid_layer_budgets(v.n_layers, v.T, B, protect, beta_);
  }

 private:
  SnapKvParams params_;
  double beta_;
  PyramidRounding rounding_;
};

}  // namespace

PolicyInfo pyramidkv_policy_info() {
  std::vector<ParamInfo> params = snapkv_param_infos();
  params.push_back({"beta", "20", "pyramid steepness: the last layer keeps about B/beta (>= 1)"});
  // Left out of the canonical spec at its default: specs and results from before stay byte-identical.
  params.push_back({"rounding", "largest_remainder",
                    "layer budgets: largest_remainder (sum exactly L*B) | kvpress (each layer of T(1-r) rounded on its own)",
                    /*omit_default=*/true});
  return {"pyramidkv", "snapkv scores, layer budgets decreasing linearly with depth (Cai et al. 2024; kvpress formula)",
          params, false, [](PolicyArgs a) {
            const SnapKvParams s = read_snapkv_params(a.params);
            const double beta = number_in(a.params, "beta", 1.0, std::numeric_limits<double>::infinity());
            const PyramidRounding rounding = a.params.choice("rounding", {"largest_remainder", "kvpress"}) == "kvpress"
                                                 ? PyramidRounding::kKvpress
                                                 : PyramidRounding::kLargestRemainder;
            return std::make_unique<PyramidKvPolicy>(a.spec, s, beta, rounding);
          }};
}

}  // namespace kvsim
