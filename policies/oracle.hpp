#pragma once
// oracle: keeps the prompt tokens the continuation actually attends to. It reads the future
// (the continuation's queries, recorded teacher-forced under the full cache), so no real
// system can run it: an upper-bound reference, like Belady's MIN in cache simulation. Not
// from a paper; docs/methods.md, "The policies".
//
//   score[l, g, i] = reduce over the query heads h of group g of  Σ_{t < M} cont_attn[h, t, i]   (i < T)
//
// cont_attn[h, t, ·] is the softmax of continuation query t over the T prompt keys and the
// continuation keys up to t (the full cache). reduce defaults to sum: the total attention mass
// the group's queries pay to token i. Every KV head of a model has the same group size G, so
// sum = G·mean and the two give the same order, within a KV head and across heads (adakv);
// only max orders differently. Parameter window, default 0 (no protection): the last `window`
// tokens score +inf. Parameter sink, default 0: the first `sink` tokens are protected too,
// ahead of the window (score_utils.hpp), so the bound can be compared with a policy that keeps
// sinks. Needs cont_attn. Kept sets are nested across budgets.
// Attention mass is not the output error (values and W_O matter too), so this is the best
// kept set by attention recall, not necessarily by output error or Δ-NLL.
#include "policies/policy.hpp"

namespace kvsim {
PolicyInfo oracle_policy_info();
}
