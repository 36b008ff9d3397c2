#pragma once
// criticalkv(p): two-stage selection, the second stage weighted by the output projection.
// Feng et al., "Identify Critical KV Cache in LLM Inference from an Output Perturbation
// Perspective", 2025 (arXiv 2502.03805); as kvpress's CriticalKVPress.
//
// Per layer l with budget B_l (the inner's layer_budgets; min(B, T) for most scorers) and
// KV head g, with s[i] = p's score:
//   stage 1: keep the top k1 = ⌊first_stage·B_l⌋ tokens by s;
//   stage 2: rank the other tokens by  (s[i] + ε) · n[g, i]  and keep the top B_l − k1, where
//            n[g, i] = reduce over the query heads h of group g of ‖W_O^h v_i‖₁,
//            W_O^h = the D×d block of this layer's w_o [D, H·d] that reads head h, v_i the
//            value of token i in KV head g. kvpress takes the L1 norm per query head and the
//            group mean (CriticalKVPress.vwl1norm): reduce mean is that default.
// Parameters: epsilon 1e-4 (>= 0), first_stage 0.5 (in [0, 1]), reduce mean.
// Sinks are p's parameter: `criticalkv(snapkv:sink=4)` (`criticalkv(snapkv):sink=4` is refused
// with that spelling). Both stages rank with p's sinks first (order_by_score(..., p.sink())).
// p's protected tokens (+inf) stay protected: stage 1 takes them first and in stage 2 their
// score is +inf whatever the norm (kvpress's SnapKV gives the window the maximum finite score,
// which stage 2 rescales, so kvpress can drop window tokens in stage 2; we do not).
// The weighting assumes p's scores are non-negative (attention); with negative scores (knorm)
// a larger norm lowers the rank, as in kvpress.
// Stage 1 depends on B, so the priority order differs per budget: the Selection stores one
// order per budget. The kept sets still nest when the layer budget grows with B (uniform
// budgets): k1 = ⌊f·B⌋ and B − k1 both grow, a stage-1 token stays in the growing prefix of p's
// order, and a stage-2 token keeps or improves its rank among the non-stage-1 tokens. Under
// pyramidkv's layer budgets, which need not grow with B, nesting is not promised.
// Needs w_o plus whatever p needs.
#include "policies/policy.hpp"

namespace kvsim {
PolicyInfo criticalkv_policy_info();
}
