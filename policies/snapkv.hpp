#pragma once
// snapkv: attention of the observation window, pooled, per KV head.
// Li et al., "SnapKV: LLM Knows What You are Looking for Before Generation", NeurIPS 2024;
// defaults and GQA handling as kvpress's SnapKVPress.
//
// With w = window and P = T − w (the non-window prefix):
//   a[h, i] = (1/w) Σ over the last w window queries q of A_h[q, i]        for i < P
//   p[h, :] = pool_k(a[h, 0:P])      pooled over the prefix only: the window tokens are not
//                                    part of the pooled vector (kvpress scores keys[:-w])
//   score[l, g, i] = reduce over the query heads of group g of p[h, i]     for i < P
//   score[l, g, i] = +inf                                                  for i >= P
// pool_k is "same"-length pooling; avg counts the zero padding (torch avg_pool1d, kvpress),
// max ignores it (max_pool1d's -inf padding).
// Defaults window 64, kernel 5, pool avg, reduce mean are kvpress's. The original SnapKV
// settings (its experiments and reference code) are window 32, kernel 7, max pooling:
// `snapkv:window=32,kernel=7,pool=max`. The original sums the window rows instead of
// averaging them (same order) and predates GQA; the group mean is kvpress's answer
// (FasterDecoding/SnapKV issue 22). kvpress pads the window with the maximum prefix score
// (a tie that topk happens to resolve towards the window); we give it +inf, so the window is
// kept whenever B >= w and, when B < w, the most recent B tokens are.
// sink (default 0, not in SnapKV or kvpress): the first min(sink, P) tokens are protected like
// the window (+inf, ahead of it in the order: score_utils.hpp) and, like the window, left out
// of the pooled vector, which then spans [sink, P): their attention does not leak into their
// neighbours' scores.
// Needs window queries: needs().window = window (the trace's W must be at least that).
// Kept sets are nested across budgets.
#include <span>
#include <vector>

#include "policies/policy.hpp"
#include "policies/score_utils.hpp"

namespace kvsim {

PolicyInfo snapkv_policy_info();

// Shared with pyramidkv, which scores exactly like snapkv.
struct SnapKvParams {
  int window = 64;
  int sink = 0;  // protected first tokens (score_utils.hpp), left out of the pooled vector like the window
  int kernel = 5;
  PoolKind pool = PoolKind::kAvg;
  GroupReduce reduce = GroupReduce::kMean;
};
std::vector<ParamInfo> snapkv_param_infos();
// Validates: window >= 1, kernel >= 1 and odd, sink >= 0 (InputError otherwise).
SnapKvParams read_snapkv_params(const ParamReader& p);
// The formula above: scores [L, Hkv, T]; the sinks are pooled out but not yet +inf
// (ScoredPolicy::protected_scores sets them).
void snapkv_score(const PromptView& v, const SnapKvParams& params, std::span<float> scores);

}  // namespace kvsim
