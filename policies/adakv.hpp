#pragma once
// adakv(p): head-adaptive budgets for any scorer p.
// Feng et al., "Ada-KV: Optimizing KV Cache Eviction by Adaptive Budget Allocation for
// Efficient LLM Inference", 2024; as kvpress's AdaKVPress (safeguard alpha_safeguard = 0.2).
//
// Per layer l with budget B_l (the inner's layer_budgets, so adakv(pyramidkv) is the paper's
// Ada-Pyramid; B_l = min(B, T) for the others) and f = ⌊α·B_l⌋:
//   1. every KV head keeps a floor of its own top f tokens by p's score;
//   2. the remaining Hkv·B_l − Hkv·f tokens of the layer go to the highest remaining scores
//      across all KV heads of the layer (ties: the later token, then the lower KV head).
// Per-head counts vary, the layer total is Hkv·B_l, the model total L·Hkv·B. Each head keeps a
// prefix of p's own order, so the Selection shares p's order and only the counts differ per
// budget; p's protected tokens (+inf) are first in that order and first across heads, so
// they stay kept. A head's count is max(f, its tokens above the layer's threshold); when B_l
// grows with B (uniform budgets) f and the layer total grow and no count can shrink, so kept
// sets are nested across budgets (not promised under pyramidkv's layer budgets).
// α = alpha, default 0.2, in [0, 1] (α = 1: p's uniform selection).
// Sinks are p's parameter: `adakv(snapkv:sink=4)`; `adakv(snapkv):sink=4` is refused with that
// spelling (make_policy). p's sinks and window are +inf in every head and go first across
// heads, the sinks first (tie_rank), so with B_l >= sink + window every head keeps all of
// them, the sinks coming off each head's share like the window.
// Scores are compared across heads as p produces them: kvpress also compares raw scores
// (its SnapKV scores are per-head attention means, comparable across heads).
// kvpress differences: kvpress marks the floor with the largest finite float and lets topk
// break ties (unspecified order); here ties go to the later token, then the lower KV head, so
// the result is deterministic. f = ⌊α·B_l⌋ as kvpress's int(n_kept·alpha_safeguard).
#include "policies/policy.hpp"

namespace kvsim {
PolicyInfo adakv_policy_info();
}
