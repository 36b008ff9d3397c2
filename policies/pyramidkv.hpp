#pragma once
// pyramidkv: snapkv scores with per-layer budgets decreasing linearly with depth.
// Cai et al., "PyramidKV: Dynamic KV Cache Compression based on Pyramidal Information
// Funneling", 2024; budget formula as kvpress's PyramidKVPress (which takes it from the
// authors' KVCache-Factory).
//
// Scores: exactly snapkv's (same parameters window 64, kernel 5, pool avg, reduce mean, sink 0).
// Budgets, for an average budget B (clamped to T) per KV head, w = the protected tokens
// (window + sink: the sinks come off every layer's budget like the window), L layers, β = beta:
//   min = B / β,  max = 2B − min                         (mean of max and min is B)
//   if max >= T − w:  max = T − w,  min = 2B − max
//   if not (T >= max >= min >= w) or L = 1:  B in every layer (kvpress falls back to SnapKV)
//   else raw[l] = max − l · (max − min) / (L − 1)        (Σ_l raw[l] = L·B exactly)
// Rounding, parameter `rounding`:
//   largest_remainder (default): the integer B (int(T·(1 − r)) for a ratio), raw[l] rounded with
//     largest remainders (`allocate`), so Σ_l budget[l] = L·min(B, T) exactly and each
//     budget[l] is in [0, T]. The default because it was kvsim's only rule: results stay
//     byte-identical, and every budget is exactly the B that results files report.
//   kvpress: kvpress 0.5.x's get_layer_budget exactly: B is the fractional T·(1 − r) (with
//     --budget B, B itself), each raw[l] is rounded on its own with Python's round() (halves to
//     even), and the fallback keeps round(T·(1 − r)), not SnapKV's int(): the total can exceed
//     L·int(T·(1 − r)) by up to 1.5·L tokens (budget_slack 2) or fall short of it. At L = 1
//     (a ZeroDivisionError in kvpress) it falls back.
// Like kvpress, budget[l] counts the protected window.
// Note the condition min >= w: with β = 20 it needs B >= 20·w (1280 tokens at w = 64); below
// that PyramidKV is SnapKV, in kvpress as here.
// The order is snapkv's, shared by all budgets, so kept sets are nested wherever budget[l]
// grows with B; it can shrink where the formula switches branch (from the uniform fallback to
// the pyramid the last layers drop from B to about B/β), so nesting is not promised.
#include <vector>

#include "policies/policy.hpp"

namespace kvsim {

PolicyInfo pyramidkv_policy_info();
// The per-layer budgets above (exposed for tests); protect = window + sink.
std::vector<int> pyramid_layer_budgets(int L, int T, int B, int protect, double beta);
// rounding=kvpress: `kept` is kvpress's q_len * (1 - compression_ratio) (BudgetPlan::exact).
std::vector<int> pyramid_layer_budgets_kvpress(int L, int T, double kept, int protect, double beta);

}  // namespace kvsim
