#pragma once
// compilerkv: risk-adaptive elastic retention driven by compiled decision tables
// (docs/methods.md, "CompilerKV", the later table-driven formulation). Per prompt, with
// w = min(window, T), P = T − w:
//
//   utility   α_i = (T/w) · mean over all layers l and query heads h of Σ_{q ∈ last w window
//             queries} A_h[q, i]                  (one attention mass per token; Σ_i α_i = T)
//             ρ_{l,g,i} = ‖v_i‖ / mean_{k<T} ‖v_k‖   per (layer, KV head)
//             u_{l,g,i} = α_i · ρ_{l,g,i}
//   heads     s_{l,i} = max over query heads h of W_head[B, l, h] · u_{l,g(h),i}
//   risk      entropy of α/Σα (nats) and the local perplexity exp(−mean log p) of the w window
//             tokens from prompt_logprob, binned by the table's edges (20 × 4 bins)
//   gate      τ = T_gate[B, l, b_ent, b_ppl]; the table's gate mode says what τ means:
//   sinks     parameter sink (default 0, the published definition): the first s = min(sink, T − w)
//             tokens are protected like the window (docs/policies.md, "Sinks"); the gate judges
//             the tokens s ≤ i < P only.
//   elastic   absolute (published): C = {i < P : s_{l,i} ≥ τ};
//             coverage: C = the fewest top-scored i < P whose s sum to ≥ (1 − τ)·Σ_{i<P} s_{l,i}
//             (docs/methods.md, "CompilerKV gate"); layer l keeps the w window tokens (protected, counted
//             in the budget) and the top min(|C|, B' − w) of C by s, B' = min(B, T): the clamp
//             when |C| > B' − w, under-retention otherwise. If B' ≤ w: the most recent B'.
//             One kept set per layer, shared by all its KV heads.
// In both modes C is a prefix of the layer's score order (ties aside), so the kept set
// is always a prefix of order_by_score(s) (window +inf) of length
//   count = min(B', w + |C|)            and |C_w| = w + |C| is the elastic set before the clamp.
//
// Tables (parameter `table`, a kvsim-table JSON file, docs/tables.md): without one, every
// head weight is 1.0, every threshold the gate mode's default (parameter `gate`: absolute 0.8,
// the published default; coverage 0.01) and every prompt falls in bin (0, 0) (edges at
// +inf). With a table, the table's gate mode rules (`gate` may repeat it, not contradict it). A budget the table does not hold uses the nearest table budget (ties: the smaller).
// A table for another depth is mapped by relative depth; other head counts are refused
// (check_model, before any work). The table's window must equal the policy's.
// The kept sets are not nested across budgets in general (the tables differ per budget): the
// Selection holds one order per budget. Needs window queries and prompt_logprob.
#include <span>
#include <vector>

#include "policies/policy.hpp"
#include "policies/decision_table.hpp"

namespace kvsim {

PolicyInfo compilerkv_policy_info();

// The per-prompt quantities CompilerKV decides from, shared with the table compiler.
struct CompilerKvState {
  int n_layers = 0, n_heads = 0, n_kv_heads = 0, T = 0;
  int window = 0;                // w = min(window, T)
  int sink = 0;                  // s = min(sink, T − w): the first s tokens are protected too
  std::vector<float> alpha;      // [T]
  std::vector<float> utility;    // u [L, Hkv, T]
  double entropy = 0;            // of α/Σα, nats
  double perplexity = 1;         // exp(−mean log p) over the window tokens
};
// Requires window <= the view's W and the window attention derived.
CompilerKvState compilerkv_state(const PromptView& v, int window, int sink = 0);

// s_{l,i} for layer l with head weights head_w [H]: out [T], window and sink tokens +inf.
void compilerkv_layer_scores(const CompilerKvState& st, int l, std::span<const float> head_w, std::span<float> out);

struct ElasticCount {
  int kept = 0;        // min(B', w + |C|)
  int candidates = 0;  // w + s + |C|: the elastic set before the budget clamp
};
// From the layer's scores (window and sinks +inf), threshold τ, budget B and the gate mode.
// The gate judges the unprotected tokens s ≤ i < T − w; the protected ones always count:
// kept = min(B', w + s + |C|).
ElasticCount compilerkv_elastic_count(std::span<const float> scores, int window, float tau, int B,
                                      GateMode mode = GateMode::absolute, int sink = 0);

}  // namespace kvsim
