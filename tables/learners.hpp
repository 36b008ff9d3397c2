#pragma once
// Tabular bandit learners over one context's arms (docs/tables.md, "Learners").
//
// cql: the conservative Q fit of docs/methods.md ("CompilerKV"). For a context with n_a rewards of arm a (mean
// r̄_a, data distribution π_a = n_a / n), Q minimises
//     λ · ( logsumexp_a Q_a − Σ_a π_a Q_a )  +  ½ Σ_a π_a (Q_a − r̄_a)²
// (horizon 1, so the Bellman target is the reward itself). Unobserved arms are pushed to −∞
// (never chosen); with uniform data (every arm equally often, as the exhaustive sweep gives)
// the argmax is the best mean (Q_a + λ·A·softmax_a = r̄_a + λ is increasing in Q_a), and with
// uneven data a rarely observed arm needs a larger mean to win. Solved by gradient descent
// (convex; fixed iteration count, deterministic).
// ucb / thompson: adaptive data collection (UCB1 with the reward range as scale; Gaussian
// Thompson sampling); the recommendation is the best observed mean.
// Every choice breaks ties towards the default arm, then towards the arm nearest to it
// (then the lower one): with no evidence the table keeps its default.
#include <vector>

#include "core/rng.hpp"

namespace kvsim {

struct ArmStats {
  explicit ArmStats(int n_arms = 0) : n(n_arms, 0), sum(n_arms, 0.0), sum_sq(n_arms, 0.0) {}
  std::vector<int> n;
  std::vector<double> sum, sum_sq;
  void add(int arm, double reward) { ++n[arm], sum[arm] += reward, sum_sq[arm] += reward * reward; }
  int arms() const { return static_cast<int>(n.size()); }
  int total() const;
  double mean(int arm) const { return n[arm] ? sum[arm] / n[arm] : 0.0; }
};

// The fitted Q of every arm (−inf for unobserved arms).
std::vector<double> cql_fit(const ArmStats& s, double lambda);
// argmax of values with the tie rule above; default_arm when nothing is finite.
int choose_arm(const std::vector<double>& values, int default_arm);
// Best observed mean (unobserved arms excluded), ties as above.
int best_mean_arm(const ArmStats& s, int default_arm);

// UCB1: an unpulled arm first (nearest to the default first), else argmax of
// mean + scale·sqrt(2 ln t / n_a), t = total pulls, scale = observed reward range.
int ucb_pick(const ArmStats& s, int default_arm);
// Gaussian Thompson sampling: mean_a + σ/√n_a · N(0,1), σ = pooled standard deviation
// (the observed range when fewer than two rewards); an unpulled arm first.
int thompson_pick(const ArmStats& s, int default_arm, Rng& rng);

}  // namespace kvsim
