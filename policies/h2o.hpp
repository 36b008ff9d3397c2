#pragma once
// h2o: observed attention, the "heavy hitters" of H2O plus a protected recent window.
// Zhang et al., "H2O: Heavy-Hitter Oracle for Efficient Generative Inference of Large
// Language Models", NeurIPS 2023; scored as kvpress's ObservedAttentionPress.
//
//   score[l, g, i] = reduce over the query heads h of group g of  attn_colsum[h, i] / (T − i)
//
// attn_colsum[h, i] = Σ over the T prompt queries q of A_h[q, i]; T − i queries can see token i
// (causal), so the score is the mean attention token i received while visible (kvpress divides
// by the same count; without it early tokens win by having been visible longer).
// Parameters: window 64 (the most recent tokens score +inf: H2O's "recent" part; 0 gives
// kvpress's ObservedAttentionPress, which protects nothing), reduce mean (kvpress: group mean),
// sink 0 (the first `sink` tokens protected too, ahead of the window: score_utils.hpp; 0 is
// the paper, whose recent window alone drops the attention sink).
// Reads attn_colsum only, no window queries. Kept sets are nested across budgets.
// H2O evicts greedily during generation and splits its budget half heavy / half recent; as a
// prefill policy (kvpress's reading) the accumulated prefill attention decides once.
#include "policies/policy.hpp"

namespace kvsim {
PolicyInfo h2o_policy_info();
}
