#pragma once
// Building blocks shared by the score-based policies (METHODS.md notation).
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "policies/prompt_view.hpp"
#include "policies/spec.hpp"

namespace kvsim {

enum class GroupReduce { kMean, kMax, kSum };  // how a GQA group's G query heads become one KV head score
enum class PoolKind { kAvg, kMax };

GroupReduce parse_group_reduce(const ParamReader& p, const std::string& name = "reduce");
PoolKind parse_pool(const ParamReader& p, const std::string& name = "pool");
inline const std::vector<std::string> kGroupReduceNames = {"mean", "max", "sum"};

// Mean over the last `window` window queries of A_h[q, i]: out [H, T]. Requires window <= W.
void window_mean_attention(const PromptView& v, int layer, int window, std::vector<float>& out);

// pool_k along tokens with "same" length (METHODS.md): avg divides by k with zero padding
// (count_include_pad, as torch's avg_pool1d used by kvpress); max ignores the padding.
// kernel 1 (or <= 1) is the identity; even kernels are refused by the callers.
void pool_same(std::span<float> x, int kernel, PoolKind kind);

// [H, T] per query head -> [Hkv, T] per KV head.
void reduce_group(std::span<const float> per_head, int H, int Hkv, int T, GroupReduce r, std::span<float> out);

// The priority order of one score row: descending score, ties broken towards the later
// token (recency), so the order is total and deterministic.
void order_by_score(std::span<const float> scores, std::span<std::int32_t> order);

// Sets the last w of the T scores to +inf (protected window tokens).
void protect_last(std::span<float> scores, int w);

// Integer split of `total` over entries proportional to `weights`, each at most caps[k],
// preserving the total when the caps allow it (largest remainders, then water-filling the
// excess of capped entries onto the others). Deterministic.
std::vector<int> allocate(const std::vector<double>& weights, const std::vector<int>& caps, long total);

}  // namespace kvsim
