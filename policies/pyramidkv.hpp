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
// kvpress rounds each raw[l] independently, so its total can be off by up to L/2 tokens;
// we round with largest remainders (`allocate`), so Σ_l budget[l] = L·min(B, T) exactly and
// each budget[l] is in [0, T]. Like kvpress, budget[l] counts the protected window.
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

}  // namespace kvsim
