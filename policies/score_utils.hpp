#pragma once
// Building blocks shared by the score-based policies (docs/methods.md notation).
#include <algorithm>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "policies/prompt_view.hpp"
#include "policies/selection.hpp"
#include "policies/spec.hpp"

namespace kvsim {

enum class GroupReduce { kMean, kMax, kSum };  // how a GQA group's G query heads become one KV head score
enum class PoolKind { kAvg, kMax };

GroupReduce parse_group_reduce(const ParamReader& p, const std::string& name = "reduce");
PoolKind parse_pool(const ParamReader& p, const std::string& name = "pool");
inline const std::vector<std::string> kGroupReduceNames = {"mean", "max", "sum"};
// The `reduce` parameter every query-head scorer declares.
inline ParamInfo reduce_param(const std::string& default_value = "mean") {
  return {"reduce", default_value, "GQA: how a group's query-head scores become one KV-head score (mean|max|sum)"};
}

// Attention sinks (Xiao et al., ICLR 2024): the `sink` parameter of every policy that protects
// a window. The first min(sink, T) prompt tokens of every (layer, KV head) are protected
// exactly like the window tokens: they score +inf (protect_first), count inside the budget, and
// lead the priority order. Order of the protected tokens, for every policy: the sinks first
// (the earliest first), then the window (the latest first), then the scores; so when B is
// smaller than sink + window the sinks win, and below sink the first B tokens are kept (as
// streamingllm). Default 0: the published definitions, whose canonical specs omit `sink=0`.
ParamInfo sink_param();
// The `sink` parameter: an integer >= 0 (InputError naming the policy otherwise).
int read_sink(const ParamReader& p);
// The rank that breaks score ties (higher first): the later token (recency), except that the
// first `sink` tokens rank above every other, the earliest highest. sink 0: the token index.
inline std::int64_t tie_rank(std::int32_t i, int sink) {
  return i < sink ? (std::int64_t{1} << 32) - i : i;
}

// Factory checks (InputError naming the policy and parameter): an integer >= lo; a finite
// number in [lo, hi].
int integer_at_least(const ParamReader& p, const std::string& name, int lo);
double number_in(const ParamReader& p, const std::string& name, double lo, double hi);

// The Gram matrix (Σ_{h∈heads} W_O^h)ᵀ (Σ_{h∈heads} W_O^h) of the given query heads' D×d
// blocks of one layer's W_O [D, H*d], into out [d, d]: ‖(Σ_h W_O^h) v‖₂² = vᵀ·gram·v (LaProx).
void head_gram(std::span<const float> w_o, std::span<const int> heads, int H, int d, int D, std::span<float> out);
// Every query head's own gram, [H, d, d]: a function of the weights only, so the simulator
// computes it once per trace (PolicyNeeds::w_o_gram) and shares it with every prompt.
std::vector<float> head_output_grams(std::span<const float> w_o, int H, int d, int D);

// Mean over the last `window` window queries of A_h[q, i]: out [H, T]. Requires window <= W.
void window_mean_attention(const PromptView& v, int layer, int window, std::vector<float>& out);

// pool_k along tokens with "same" length (docs/methods.md): avg divides by k with zero padding
// (count_include_pad, as torch's avg_pool1d used by kvpress); max ignores the padding.
// kernel 1 (or <= 1) is the identity; even kernels are refused by the callers.
void pool_same(std::span<float> x, int kernel, PoolKind kind);

// [H, T] per query head -> [Hkv, T] per KV head.
void reduce_group(std::span<const float> per_head, int H, int Hkv, int T, GroupReduce r, std::span<float> out);

// The priority order of one score row: descending score, ties broken by tie_rank (the later
// token; the first `sink` tokens before all others), so the order is total and deterministic.
// With the sinks and the window at +inf (protect_first, protect_last) it starts with the
// sinks, then the window, latest first.
void order_by_score(std::span<const float> scores, std::span<std::int32_t> order, int sink = 0);

// Fills order 0 of every (layer, KV head) of s with order_by_score of its row of scores
// [L, Hkv, T], in parallel (one task per row).
void order_rows(const PromptView& v, std::span<const float> scores, Selection& s, int sink = 0);

// Sets the last w of the T scores to +inf (protected window tokens).
void protect_last(std::span<float> scores, int w);
// Sets the first n of the T scores to +inf (protected sink tokens).
void protect_first(std::span<float> scores, int n);

// ⌊fraction·B⌋ for fraction in [0, 1], robust to the binary representation of the fraction
// (0.29·100 is 28.999… in doubles; the result here is 29).
inline int floor_fraction(double fraction, int B) {
  return std::min(B, static_cast<int>(fraction * B + 1e-9));
}

// The (layer l, KV head g) row of scores [L, Hkv, T].
template <typename F>
std::span<F> score_row(std::span<F> scores, const PromptView& v, int l, int g) {
  return scores.subspan((static_cast<std::size_t>(l) * v.n_kv_heads + g) * v.T, static_cast<std::size_t>(v.T));
}

// Scores [L, Hkv, T] of a query-head scorer: per layer (one task per layer, in parallel, so
// the result does not depend on the thread count) head_scores(l, per_head) fills
// per_head [H, T]; reduce_group turns it into [Hkv, T]; then the last `protect` tokens of
// every (layer, KV head) score +inf.
using HeadScoreFn = std::function<void(int layer, std::vector<float>& per_head)>;
void score_query_heads(const PromptView& v, GroupReduce r, int protect, std::span<float> scores,
                       const HeadScoreFn& head_scores);

// Integer split of `total` over entries proportional to `weights`, each at most caps[k],
// preserving the total when the caps allow it (largest remainders, then water-filling the
// excess of capped entries onto the others). Deterministic.
std::vector<int> allocate(const std::vector<double>& weights, const std::vector<int>& caps, long total);

}  // namespace kvsim
