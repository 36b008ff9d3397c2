#pragma once
// The retention policy interface. A policy decides once, at the end of prefill, which prompt
// tokens each (layer, KV head) keeps, for every budget of a sweep (see selection.hpp).
// A new policy is a file pair, one line in registry.cpp and one test file (STYLE.md habit 1);
// docs/adding-a-policy.md walks through one.
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "policies/prompt_view.hpp"
#include "policies/selection.hpp"
#include "policies/spec.hpp"

namespace kvsim {

// What a policy reads beyond keys/values; the simulator checks the trace has it before any
// work starts and derives the attention only when some policy needs it.
struct PolicyNeeds {
  int window = 0;          // window queries used (<= the trace's W); > 0 means window_attn is read
  bool colsum = false;     // attn_colsum (H2O)
  bool cont_attn = false;  // continuation attention (oracle: future information)
  bool w_o = false;        // output projection (CriticalKV, LaProx)
  bool w_o_gram = false;   // per-head W_O^hᵀ W_O^h (LaProx), computed once per trace when given
  bool prompt_logprob = false;
};
PolicyNeeds merge(const PolicyNeeds& a, const PolicyNeeds& b);

class Policy {
 public:
  virtual ~Policy() = default;
  // Canonical spec, every parameter written out, e.g. "snapkv:window=64,kernel=5,pool=avg,reduce=mean".
  const std::string& spec() const { return spec_; }
  virtual PolicyNeeds needs() const { return {}; }
  // Refuses (InputError) a model this policy cannot run on, e.g. a decision table compiled
  // for another shape. The simulator calls it for every trace before any work (fail fast).
  virtual void check_model(const ModelShape& shape) const {}
  // False only for `full`, the reference that ignores the budget.
  virtual bool respects_budget() const { return true; }
  // Tokens per (layer, KV head), on average, that the policy may keep beyond B: 0, except for
  // a rule reproducing another tool's rounding (pyramidkv:rounding=kvpress rounds each layer
  // of T·(1 − r) on its own, as kvpress does). check_selection allows (B + slack)·L·Hkv.
  virtual int budget_slack() const { return 0; }
  // Kept sets for every budget of the plan. Called concurrently for different prompts and
  // policies: implementations are const and keep no state.
  virtual Selection select(const PromptView& view, const BudgetPlan& plan) const = 0;

 protected:
  explicit Policy(std::string spec) : spec_(std::move(spec)) {}

 private:
  std::string spec_;
};

// A policy that keeps, per (layer, KV head), the top of one score vector: the common case.
// Its kept sets are nested across budgets. Wrappers (adakv, criticalkv) take any of these.
class ScoredPolicy : public Policy {
 public:
  // Scores [L, Hkv, T], higher = keep; protected window tokens +inf. The sinks are the base's.
  virtual void score(const PromptView& view, std::span<float> scores) const = 0;
  // score() with the first sink() tokens of every (layer, KV head) at +inf (protect_first):
  // what select() and the wrappers (adakv, criticalkv) rank by, with order_rows(..., sink()).
  void protected_scores(const PromptView& view, std::span<float> scores) const;
  // The attention sinks this scorer protects: its `sink` parameter (score_utils.hpp), 0 for
  // scorers without one. They lead every order, ahead of the window.
  int sink() const { return sink_; }
  Selection select(const PromptView& view, const BudgetPlan& plan) const override;
  // Per-layer budgets (tokens per KV head) for an average budget B, each in [0, T], summing
  // to at most (B + budget_slack())·L. B_exact is B before truncation (BudgetPlan::exact:
  // T·(1 − r) for a ratio), for rules that round as kvpress does. Default: min(B, T) in every
  // layer. Public so that wrappers (adakv, criticalkv) keep the inner's layer allocation
  // (AdaKV's "Ada-Pyramid").
  virtual std::vector<int> layer_budgets(const PromptView& view, int B, double B_exact) const;
  // layer_budgets for every budget of the plan, each clamped to [0, T]: [n_budgets][L].
  std::vector<std::vector<int>> plan_layer_budgets(const PromptView& view, const BudgetPlan& plan) const;

 protected:
  explicit ScoredPolicy(std::string spec, int sink = 0) : Policy(std::move(spec)), sink_(sink) {}

 private:
  int sink_;
};

// What a registry factory receives.
struct PolicyArgs {
  std::string spec;  // canonical spec of the policy being built
  const ParamReader& params;
  std::unique_ptr<ScoredPolicy> inner;  // wrapped scorer (wrappers only)
};

// Registry entry: name, parameters with defaults, and a factory.
struct PolicyInfo {
  std::string name;
  std::string summary;  // one line, citing the paper it follows
  std::vector<ParamInfo> params;
  bool wraps = false;  // takes an inner scorer: name(inner):params
  std::function<std::unique_ptr<Policy>(PolicyArgs args)> make;
};

// Every policy, one line each in registry.cpp.
const std::vector<PolicyInfo>& policy_registry();
// Parses and builds one policy; throws InputError on an unknown policy or parameter, or a
// bad parameter value, before any work starts.
std::unique_ptr<Policy> make_policy(const PolicySpec& spec);
std::unique_ptr<Policy> make_policy(std::string_view spec);

}  // namespace kvsim
