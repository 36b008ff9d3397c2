#include "policies/compilerkv.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <tbb/parallel_for.h>

#include "core/error.hpp"
#include "policies/score_utils.hpp"
#include "policies/decision_table.hpp"

namespace kvsim {

CompilerKvState compilerkv_state(const PromptView& v, int window, int sink) {
  const int L = v.n_layers, H = v.n_heads, Hkv = v.n_kv_heads, T = v.T, d = v.head_dim, N = v.T + v.M;
  CompilerKvState st;
  st.n_layers = L, st.n_heads = H, st.n_kv_heads = Hkv, st.T = T;
  st.window = std::min(window, T);
  st.sink = std::clamp(sink, 0, T - st.window);
  const int w = st.window;
  // Σ over the window queries of A_h[q, i], per layer (parallel), then over layers in order.
  std::vector<std::vector<double>> per_layer(L, std::vector<double>(T, 0.0));
  st.utility.assign(static_cast<std::size_t>(L) * Hkv * T, 0.0f);
  std::vector<std::vector<float>> rho(L);
  tbb::parallel_for(0, L, [&](int l) {
    const LayerData& ly = v.layers[l];
    KVSIM_CHECK(w <= v.W && ly.window_attn.size() == static_cast<std::size_t>(H) * v.W * T, "window attention not derived");
    std::vector<double>& acc = per_layer[l];
    for (int h = 0; h < H; ++h)
      for (int r = v.W - w; r < v.W; ++r) {
        const float* row = ly.window_attn.data() + (static_cast<std::size_t>(h) * v.W + r) * T;
        for (int i = 0; i < T; ++i) acc[i] += row[i];
      }
    // ρ_{l,g,i} = ‖v_i‖ / mean_k ‖v_k‖ over the T prompt tokens.
    rho[l].assign(static_cast<std::size_t>(Hkv) * T, 0.0f);
    for (int g = 0; g < Hkv; ++g) {
      const float* vals = ly.values.data() + static_cast<std::size_t>(g) * N * d;
      double mean = 0;
      std::vector<double> norms(T);
      for (int i = 0; i < T; ++i) {
        double s = 0;
        for (int e = 0; e < d; ++e) s += static_cast<double>(vals[static_cast<std::size_t>(i) * d + e]) * vals[static_cast<std::size_t>(i) * d + e];
        mean += (norms[i] = std::sqrt(s));
      }
      mean /= T;
      for (int i = 0; i < T; ++i) rho[l][static_cast<std::size_t>(g) * T + i] = static_cast<float>(mean > 0 ? norms[i] / mean : 1.0);
    }
  });
  st.alpha.assign(T, 0.0f);
  const double scale = w > 0 ? static_cast<double>(T) / w / (static_cast<double>(L) * H) : 0.0;
  double total = 0;
  for (int i = 0; i < T; ++i) {
    double a = 0;
    for (int l = 0; l < L; ++l) a += per_layer[l][i];
    st.alpha[i] = static_cast<float>(a * scale);
    total += st.alpha[i];
  }
  st.entropy = 0;
  for (int i = 0; i < T; ++i)
    if (st.alpha[i] > 0 && total > 0) {
      const double p = st.alpha[i] / total;
      st.entropy -= p * std::log(p);
    }
  for (int l = 0; l < L; ++l)
    for (int g = 0; g < Hkv; ++g)
      for (int i = 0; i < T; ++i) {
        const std::size_t k = (static_cast<std::size_t>(l) * Hkv + g) * T + i;
        st.utility[k] = st.alpha[i] * rho[l][static_cast<std::size_t>(g) * T + i];
      }
  // Local perplexity of the window tokens (prompt_logprob[0] = 0 is the BOS, never predicted).
  double nll = 0;
  int n = 0;
  if (static_cast<int>(v.prompt_logprob.size()) == T)
    for (int i = std::max(1, T - w); i < T; ++i) nll -= v.prompt_logprob[i], ++n;
  st.perplexity = n > 0 ? std::exp(nll / n) : 1.0;
  return st;
}

void compilerkv_layer_scores(const CompilerKvState& st, int l, std::span<const float> head_w, std::span<float> out) {
  const int H = st.n_heads, G = st.n_heads / st.n_kv_heads, T = st.T;
  KVSIM_CHECK(static_cast<int>(head_w.size()) == H && static_cast<int>(out.size()) == T);
  std::fill(out.begin(), out.end(), -std::numeric_limits<float>::infinity());
  for (int h = 0; h < H; ++h) {
    const float* u = st.utility.data() + (static_cast<std::size_t>(l) * st.n_kv_heads + h / G) * T;
    const float wh = head_w[h];
    for (int i = 0; i < T; ++i) out[i] = std::max(out[i], wh * u[i]);
  }
  protect_last(out, st.window);
  protect_first(out, st.sink);
}

ElasticCount compilerkv_elastic_count(std::span<const float> scores, int window, float tau, int B, GateMode mode,
                                      int sink) {
  const int T = static_cast<int>(scores.size()), w = std::min(window, T), Bp = std::clamp(B, 0, T);
  const int s = std::clamp(sink, 0, T - w);
  int c = 0;
  if (mode == GateMode::absolute) {
    for (int i = s; i < T - w; ++i) c += scores[i] >= tau;
  } else {
    // The fewest top scores whose sum reaches (1 − τ) of the total. Summed in descending order
    // (double), the total is the last prefix sum, so τ = 0 takes every positive score; equal
    // scores contribute equally, so their order does not change the count.
    std::vector<float> sorted(scores.begin() + s, scores.begin() + (T - w));
    std::sort(sorted.begin(), sorted.end(), std::greater<float>());
    double total = 0;
    for (float x : sorted) total += x;
    const double target = (1.0 - static_cast<double>(tau)) * total;
    double prefix = 0;
    while (c < T - w - s && prefix < target) prefix += sorted[c++];
  }
  return {std::min(Bp, w + s + c), w + s + c};
}

namespace {

class CompilerKvPolicy final : public Policy {
 public:
  CompilerKvPolicy(std::string spec, int window, int sink, GateMode gate, std::optional<DecisionTable> table)
      : Policy(std::move(spec)), window_(window), sink_(sink), gate_(gate), table_(std::move(table)) {}
  PolicyNeeds needs() const override { return {.window = window_, .prompt_logprob = true}; }

  void check_model(const ModelShape& shape) const override {
    if (table_) (void)map_table_to_model(*table_, shape);
  }

  Selection select(const PromptView& v, const BudgetPlan& plan) const override {
    const int L = v.n_layers, Hkv = v.n_kv_heads, T = v.T, nb = static_cast<int>(plan.per_head.size());
    const DecisionTable table = table_ ? map_table_to_model(*table_, v.shape()) : DecisionTable::defaults(v.shape(), plan.per_head, window_, gate_);
    const CompilerKvState st = compilerkv_state(v, window_, sink_);
    const int be = table.entropy_bin(st.entropy), bp = table.perplexity_bin(st.perplexity);
    Selection s(nb, nb, L, Hkv, T);
    tbb::parallel_for(0, nb * L, [&](int bl) {
      const int b = bl / L, l = bl % L, tb = table.budget_index(plan.per_head[b]);
      std::vector<float> scores(T);
      compilerkv_layer_scores(st, l, std::span<const float>(&table.head[(static_cast<std::size_t>(tb) * L + l) * v.n_heads], v.n_heads), scores);
      const ElasticCount c = compilerkv_elastic_count(scores, st.window, table.gate_at(tb, l, be, bp), plan.per_head[b], table.gate_mode, st.sink);
      order_by_score(scores, s.order(b, l, 0), st.sink);
      for (int g = 0; g < Hkv; ++g) {
        if (g > 0) std::copy_n(s.order(b, l, 0).begin(), T, s.order(b, l, g).begin());
        s.count(b, l, g) = c.kept;
      }
    });
    return s;
  }

 private:
  int window_, sink_;
  GateMode gate_;
  std::optional<DecisionTable> table_;
};

}  // namespace

PolicyInfo compilerkv_policy_info() {
  return {"compilerkv",
          "utility alpha*rho, head weights and risk-binned gate thresholds from a compiled table, elastic per-layer "
          "selection (CompilerKV, docs/methods.md)",
          {{"window", "32", "observation window: its queries give alpha, its tokens are kept in every layer"},
           {"table", "default", "decision table JSON from 'kvsim compile' (default: weights 1.0, thresholds 0.8)"},
           {"gate", "table",
            "gate rule: absolute (published: keep s >= tau) | coverage (keep the top scores holding 1 - tau of the "
            "utility mass); 'table': the table's, absolute for the default table"},
           sink_param()},
          false, [](PolicyArgs a) {
            const int window = integer_at_least(a.params, "window", 1);
            const int sink = read_sink(a.params);
            const std::string& gate_text = a.params.text("gate");
            const std::optional<GateMode> gate =
                gate_text == "table" ? std::nullopt
                                     : std::optional(parse_gate_mode(gate_text, "policy compilerkv: parameter gate"));
            std::optional<DecisionTable> table;
            const std::string& path = a.params.text("table");
            if (path != "default") {
              table = read_table(path);
              if (table->window != window)
                fail<InputError>("policy compilerkv: table ", path, " was compiled with window ", table->window,
                                 ", the policy's window is ", window, " (pass window=", table->window, ")");
              if (table->sink != sink)
                fail<InputError>("policy compilerkv: table ", path, " was compiled with sink ", table->sink,
                                 ", the policy's sink is ", sink, " (pass sink=", table->sink, ")");
              if (gate && *gate != table->gate_mode)
                fail<InputError>("policy compilerkv: table ", path, " was compiled with the ",
                                 gate_mode_name(table->gate_mode), " gate, the policy asks for gate=", gate_text);
            }
            return std::make_unique<CompilerKvPolicy>(a.spec, window, sink, gate.value_or(GateMode::absolute), std::move(table));
          }};
}

}  // namespace kvsim
