#pragma once
// laprox: output-aware scores, one top-K over the whole model (docs/methods.md, "The policies").
//
// The layer output on the window queries is O = Σ_h Σ_i A_h[:, i] (v_i W_O^h), a sum of
// rank-one terms, one per (query head h, token i). Dropping a set of terms changes O by at most
// Σ ‖A_h[:, i]‖₂·‖v_i W_O^h‖₂ over the dropped terms (the column-row sampling weights of
// approximate matrix multiplication), so with w = window, P = T − w (the non-window prefix):
//
//   p[h, i]  = ‖A_h[last w window rows, i]‖₂ · ‖v_i^{g(h)} W_O^h‖₂              i < P
//              ‖v W_O^h‖² = vᵀ (W_O^hᵀ W_O^h) v with the d×d Gram matrix of the D×d block
//              W_O^h of w_o [D, H·d] that reads head h (computed once per (layer, head) and
//              per select call: W_O belongs to the model, a call is one prompt)
//   pool     = pool_k along the prefix, avg with zero padding (kernel 7), applied where
//              `pool_at` says: product (the whole p) | attention (the ‖A‖ factor) | none
//   reduce   = mean over the G query heads of a group (default) | sum | attn_first:
//              the group-mean attention Ā_g first, then ‖Ā_g[rows, i]‖₂ · ‖v_i Σ_{h∈g} W_O^h‖₂
//              (the norm of the group's summed term when every head of the group attends
//              alike; the Gram matrix of the summed block)
//   normalize= 1: divide every score of layer l by Σ over (KV head, i < P) of that layer
//              (layers compete on their relative share, as the paper); 0: raw scores (the
//              ablation without normalisation)
//   sink     = s (default 0): the first min(s, P) tokens of every (l, g) are protected like the
//              window; pooling and normalisation then run over the competing tokens
//              [s, P) only (the sinks' large attention would otherwise leak into their
//              neighbours and shrink each layer's share by a layer-dependent amount)
//   K        = L·Hkv·(B' − s − w) with B' = min(B, T): the K highest (l, g, s <= i < P) scores
//              of the whole model are kept, plus the s sinks and the w window tokens of every
//              (l, g) (protected, counted in the budget). If B' ≤ s + w every (l, g) keeps the
//              first B' of its protected tokens: the sinks, then the most recent.
//
// Per-(layer, KV head) counts come out uneven; the total is exactly B'·L·Hkv whenever the
// prefix has K tokens. Ties: the later token, then the lower (layer, KV head) index. The
// per-row orders are the restriction of the one global order, so every budget keeps a prefix
// of each row's order and the kept sets are nested across budgets (tested).
// Defaults: window 32, kernel 7, reduce mean, pool_at product, normalize 1. mean and sum give
// the same order (normalisation and the global top-K see G·x instead of x everywhere).
// Needs window queries (needs().window = window) and w_o.
#include "policies/policy.hpp"

namespace kvsim {
PolicyInfo laprox_policy_info();
}
