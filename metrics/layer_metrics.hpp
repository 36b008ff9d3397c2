#pragma once
// Per-(prompt, layer) metrics of a kept set, on the continuation queries (docs/metrics.md,
// docs/metrics.md). For continuation position t, query head h (KV head g) and kept prompt
// set S of g, with a_j = the full-cache attention of the query on key j (prompt and
// continuation keys up to t), z_P = Σ_{j<T} a_j, o = Σ_j a_j v_j (normalised by Σ_j a_j):
//   o_S     = Σ_{j∈S∪cont} a_j v_j / Σ_{j∈S∪cont} a_j       (softmax renormalised over S)
//   δ_h     = o_S − o
//   out_err       = mean_t ‖W_O δ_t‖ / ‖W_O o_t‖   (δ_t, o_t: all heads concatenated, [H*d])
//   out_err_value = mean_t ‖δ_t‖ / ‖o_t‖
//   recall        = mean_{h,t} Σ_{j∈S} a_j / z_P
// Computed for every budget of a Selection at once: along a kept order the sums are prefix
// sums, so each head walks its order once (from the front for small kept counts, from the
// back — summing the dropped tokens, δ = (o·z_D − n_D)/(z_S + z_cont) — for large ones). A head
// that keeps every prompt token has δ = 0 exactly.
//
// Accuracy (issue 15). Every sum (o, n_S, n_D, the masses) is accumulated in double from the
// fp32 attention and values; δ is rounded to fp32 once, W_O δ is an fp32 GEMM. The dropped
// side cancels (o·z_D and n_D agree to all but (z_S + z_cont)·δ), so it is used only where the
// surviving share (z_S + z_cont)/Z is at least 2^-20 at every t; below, the kept side is summed
// instead, whatever the count. Hence, with V = max_j |v_j| and u = 2^-53, each component of δ is
// within 2^-24·|δ| + ~2^20·8u·V ≈ 2^-24·|δ| + 1e-9·V of the exact renormalised output over the
// recorded attention, for any kept share, as long as the surviving weights a_j are normal fp32
// numbers (≥ 1.2e-38). out_err, out_err_value: ~1e-7 relative (tests/300: ≤ 1.5e-7 against a
// double kept-side computation, stories260K, surviving shares down to 1e-24). If every surviving
// weight underflows to 0 (a logit gap of ~100 to the dropped keys), o_S is 0/0: NaN, which
// Replay reports as an error naming the point.
#include <cstdint>
#include <span>
#include <vector>

#include "policies/prompt_view.hpp"
#include "policies/selection.hpp"

namespace kvsim {

// What every policy's metrics on one (prompt, layer) share; computed once.
struct LayerReference {
  int layer = 0;
  std::vector<double> o;         // [M, H*d] full-cache attention output per position, heads concatenated
  std::vector<double> z_total;   // [H, M] Σ_j a_j over all visible keys (1 up to rounding)
  std::vector<double> z_prompt;  // [H, M] Σ_{j<T} a_j
  std::vector<double> n_cont;    // [H, M, d] Σ_{T<=j<=T+t} a_j v_j
  std::vector<double> z_cont;    // [H, M] Σ_{T<=j<=T+t} a_j
  std::vector<double> o_norm;    // [M] ‖o_t‖
  std::vector<double> wo_norm;   // [M] ‖W_O o_t‖
  double flops = 0;
};
LayerReference layer_reference(const PromptView& view, int layer);

struct LayerMetrics {
  double out_err = 0;        // W_O space
  double out_err_value = 0;  // value space
  double recall = 0;
  long kept = 0;             // Σ over KV heads of kept prompt tokens
};

// Metrics of every budget of `selection` on one layer: out [n_budgets]. When `wo_delta` is
// not empty it receives W_O δ_t, the layer's attention-output error in the residual stream,
// [n_budgets, M, D] (the logit-space Δ-NLL estimate sums it over layers). Returns the
// floating point operations spent (for the benchmark's GFLOP/s).
double layer_metrics(const PromptView& view, const LayerReference& ref, const Selection& selection,
                     std::span<LayerMetrics> out, std::span<float> wo_delta = {});

// The same for several selections on one layer (e.g. every policy of a replay): their δ rows
// are stacked in the given order into one [Σ n_budgets·M, H·d] matrix and projected through
// W_O by a single GEMM, which runs near the machine's GEMM peak where one product per
// selection does not (docs/perf.md, "Replay at 8B shape"). out [Σ n_budgets], the selections'
// budgets in order; wo_delta, when not empty, [Σ n_budgets, M, D]. Each selection's values do
// not depend on which others are stacked with it beyond GEMM rounding (fp32, ~1e-7 relative),
// and for given inputs the result is the same bytes at any thread count.
// `projection`, when given, gets the W_O GEMM's flops and the calling thread's CPU seconds spent
// in it added (benchmarks: the GEMM's rate inside the replay).
struct ProjectionCost {
  double flops = 0, cpu_seconds = 0;
};
double layer_metrics_stacked(const PromptView& view, const LayerReference& ref,
                             std::span<const Selection* const> selections, std::span<LayerMetrics> out,
                             std::span<float> wo_delta = {}, ProjectionCost* projection = nullptr);

}  // namespace kvsim
