#pragma once
// Logit-space estimate of a kept set's continuation Δ-NLL (docs/metrics.md, "Estimated
// Δ-NLL"). First order through the residual stream's direct path: the attention-output errors
// of every layer, projected by W_O (Σ_l W_O δ_l,t, what layer_metrics computes anyway), are
// taken as the perturbation Δr_t of the final residual at continuation position t (their
// effect through later layers' attention and MLPs is ignored). Δr_t is mapped through the
// final RMSNorm's Jacobian and the classifier rows to logit changes Δz_t, and the log-prob of
// the next token x_{T+t+1} changes, to second order, by
//     Δ-NLL_t ≈ −Δz_gold + E_q[Δz] + ½ Var_q(Δz)
// with q the reference distribution restricted to (and renormalised over) the recorded top-K
// tokens plus the gold one. Positions t = 0..M−2 are scored (position T+M−1 predicts nothing;
// x_T is predicted by the prompt's last position, which compression does not change).
#include <cstdint>
#include <span>
#include <vector>

namespace kvsim {

// What the estimator needs from the trace for one prompt (spans into the caller's buffers).
struct LogitEstimateInput {
  int T = 0, M = 0, D = 0, V = 0, K = 0;
  std::span<const float> cont_residual;      // [M, D] final residual before the final RMSNorm
  std::span<const float> final_norm;         // [D] RMSNorm gain
  double norm_eps = 1e-5;
  std::span<const float> classifier;         // [V, D]
  std::span<const std::int32_t> tokens;      // [T+M]
  std::span<const std::int32_t> cont_topk_ids;  // [M, K]
};

struct LogitEstimate {
  double dnll = 0;  // mean over scored positions of −Δz_gold + E_q[Δz] + ½Var_q(Δz), nats per token
  double kl = 0;    // mean over scored positions of ½Var_q(Δz) ≈ KL(full ‖ compressed), nats
};

class LogitEstimator {
 public:
  // Precomputes, per scored position, the support's effective rows J·(g ⊙ W_cls[k]) and q:
  // cost Σ_t |S_t|·D·4 flops once per prompt.
  explicit LogitEstimator(const LogitEstimateInput& in);
  // delta_residual: [M, D] (rows of every continuation position; the last is ignored).
  // Costs 2·Σ_t |S_t|·D flops (|S_t| ≤ K+1).
  LogitEstimate estimate(std::span<const float> delta_residual) const;
  int M() const { return M_; }
  int D() const { return D_; }
  double flops_per_estimate() const;

 private:
  struct Position {
    std::vector<float> rows;  // [S, D] effective classifier rows
    std::vector<double> q;    // [S] renormalised reference probabilities
    int gold = 0;             // index of the gold token in the support
  };
  int M_ = 0, D_ = 0;
  std::vector<Position> positions_;  // [M−1]
};

}  // namespace kvsim
