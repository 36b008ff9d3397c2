#include "policies/policy.hpp"

#include <algorithm>

#include "core/error.hpp"
#include "policies/score_utils.hpp"

namespace kvsim {

PolicyNeeds merge(const PolicyNeeds& a, const PolicyNeeds& b) {
  PolicyNeeds m;
  m.window = std::max(a.window, b.window);
  m.colsum = a.colsum || b.colsum;
  m.cont_attn = a.cont_attn || b.cont_attn;
  m.w_o = a.w_o || b.w_o;
  m.w_o_gram = a.w_o_gram || b.w_o_gram;
  m.prompt_logprob = a.prompt_logprob || b.prompt_logprob;
  return m;
}

std::vector<int> ScoredPolicy::layer_budgets(const PromptView& view, int B, double /*B_exact*/) const {
  return std::vector<int>(view.n_layers, std::clamp(B, 0, view.T));
}

std::vector<std::vector<int>> ScoredPolicy::plan_layer_budgets(const PromptView& view, const BudgetPlan& plan) const {
  std::vector<std::vector<int>> out;
  for (int b = 0; b < static_cast<int>(plan.per_head.size()); ++b) {
    std::vector<int> per_layer = layer_budgets(view, plan.per_head[b], plan.exact(b));
    KVSIM_CHECK(static_cast<int>(per_layer.size()) == view.n_layers, spec());
    for (int& x : per_layer) x = std::clamp(x, 0, view.T);
    out.push_back(std::move(per_layer));
  }
  return out;
}

void ScoredPolicy::protected_scores(const PromptView& view, std::span<float> scores) const {
  score(view, scores);
  if (sink_ > 0)
    for (int l = 0; l < view.n_layers; ++l)
      for (int g = 0; g < view.n_kv_heads; ++g) protect_first(score_row(scores, view, l, g), sink_);
}

Selection ScoredPolicy::select(const PromptView& view, const BudgetPlan& plan) const {
  const int L = view.n_layers, Hkv = view.n_kv_heads, T = view.T;
  std::vector<float> scores(static_cast<std::size_t>(L) * Hkv * T);
  protected_scores(view, scores);
  const int nb = static_cast<int>(plan.per_head.size());
  Selection s(nb, 1, L, Hkv, T);
  order_rows(view, scores, s, sink_);
  const auto budgets = plan_layer_budgets(view, plan);
  for (int b = 0; b < nb; ++b)
    for (int l = 0; l < L; ++l)
      for (int g = 0; g < Hkv; ++g) s.count(b, l, g) = budgets[b][l];
  return s;
}

namespace {

std::string canonical_spec(const PolicySpec& spec, const ParamReader& params, const Policy* inner) {
  std::string s = spec.name;
  if (inner) s += "(" + inner->spec() + ")";
  const std::string p = params.canonical();
  if (!p.empty()) s += ":" + p;
  return s;
}

const PolicyInfo* find_policy_info(const std::string& name) {
  for (const auto& info : policy_registry())
    if (info.name == name) return &info;
  return nullptr;
}

bool declares(const PolicyInfo& info, const std::string& key) {
  return std::any_of(info.params.begin(), info.params.end(), [&](const ParamInfo& p) { return p.name == key; });
}

// `adakv(snapkv):sink=4`: a parameter the wrapper lacks but its scorer has goes inside the
// parentheses; say so instead of the generic unknown-parameter message.
void refuse_scorer_params_on_wrapper(const PolicySpec& spec, const PolicyInfo& info) {
  const PolicyInfo* inner = find_policy_info(spec.inner->name);
  if (!inner) return;
  for (const auto& [key, value] : spec.params)
    if (!declares(info, key) && declares(*inner, key))
      fail<InputError>("policy ", spec.name, ": parameter '", key, "' belongs to the wrapped scorer ", inner->name,
                       ": write it inside the parentheses, e.g. ", spec.name, "(", inner->name, ":", key, "=", value, ")");
}

}  // namespace

std::unique_ptr<Policy> make_policy(const PolicySpec& spec) {
  const PolicyInfo* found = find_policy_info(spec.name);
  if (!found) {
    std::string names;
    for (const auto& info : policy_registry()) names += (names.empty() ? "" : ", ") + info.name;
    fail<InputError>("unknown policy '", spec.name, "' (known: ", names, ")");
  }
  const PolicyInfo& info = *found;
  std::unique_ptr<ScoredPolicy> inner;
  if (info.wraps) {
    if (!spec.inner) fail<InputError>("policy ", spec.name, " wraps a scorer: write it as ", spec.name, "(snapkv)");
    refuse_scorer_params_on_wrapper(spec, info);
    std::unique_ptr<Policy> p = make_policy(*spec.inner);
    if (auto* scored = dynamic_cast<ScoredPolicy*>(p.get())) {
      p.release();
      inner.reset(scored);
    } else {
      fail<InputError>("policy ", spec.name, ": '", p->spec(), "' has no per-token score to wrap");
    }
  } else if (spec.inner) {
    fail<InputError>("policy ", spec.name, " takes no inner policy");
  }
  const ParamReader params(spec, info.params);
  std::string canonical = canonical_spec(spec, params, inner.get());
  return info.make(PolicyArgs{std::move(canonical), params, std::move(inner)});
}

std::unique_ptr<Policy> make_policy(std::string_view spec) { return make_policy(parse_policy_spec(spec)); }

}  // namespace kvsim
