#pragma once
// tova: the attention of the last prompt token, averaged over all heads of the layer; one
// kept set per layer, shared by its KV heads.
// Oren et al., "Transformers are Multi-State RNNs", 2024 (TOVA: Token Omission Via
// Attention); as kvpress's TOVAPress.
//
//   score[l, g, i] = (1/H) Σ over all query heads h of A_h[T−1, i]     for every KV head g
//
// A_h[T−1, ·] is the last window row (needs().window = 1).
// Protection: kvpress scores the keys before the last one and pads the last token with the
// maximum score, so the last prompt token is always kept (a "very slight difference from
// TOVA", in kvpress's words; the paper protects nothing). We follow kvpress: parameter
// window, default 1, makes the last `window` tokens +inf; window=0 is the paper's TOVA.
// The last token's own attention A_h[T−1, T−1] is part of the average when unprotected.
// sink, default 0 (not in TOVA or kvpress): the first `sink` tokens are protected too, ahead of
// the window (score_utils.hpp), in the layer's one kept set.
// TOVA evicts one token per decoding step; as a prefill policy it decides once from the last
// prompt query (kvpress's reading). Kept sets are nested across budgets.
#include "policies/policy.hpp"

namespace kvsim {
PolicyInfo tova_policy_info();
}
