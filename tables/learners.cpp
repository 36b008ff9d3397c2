#include "tables/learners.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace kvsim {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// Arms in tie-break order: the default, then by distance to it, then the lower index.
std::vector<int> tie_order(int n, int default_arm) {
  std::vector<int> a(n);
  std::iota(a.begin(), a.end(), 0);
  std::stable_sort(a.begin(), a.end(), [&](int x, int y) { return std::abs(x - default_arm) < std::abs(y - default_arm); });
  return a;
}

double reward_range(const ArmStats& s) {
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (int a = 0; a < s.arms(); ++a)
    if (s.n[a]) lo = std::min(lo, s.mean(a)), hi = std::max(hi, s.mean(a));
  return hi > lo ? hi - lo : 1e-6;
}

}  // namespace

int ArmStats::total() const { return std::accumulate(n.begin(), n.end(), 0); }

std::vector<double> cql_fit(const ArmStats& s, double lambda) {
  const int A = s.arms(), n = s.total();
  std::vector<double> q(A, kNegInf);
  if (n == 0) return q;
  std::vector<double> pi(A), rbar(A);
  double pi_max = 0;
  for (int a = 0; a < A; ++a) {
    pi[a] = static_cast<double>(s.n[a]) / n;
    rbar[a] = s.mean(a);
    if (s.n[a]) q[a] = rbar[a];
    pi_max = std::max(pi_max, pi[a]);
  }
  // Gradient of the objective for observed arms: λ(softmax_a − π_a) + π_a(Q_a − r̄_a). Its
  // Hessian is at most λ + max π, so that step is safe; 4000 steps reach ~1e-12 for A ≤ 64.
  const double step = 1.0 / (lambda + pi_max);
  std::vector<double> p(A);
  for (int it = 0; it < 4000; ++it) {
    double mx = kNegInf;
    for (int a = 0; a < A; ++a) mx = std::max(mx, q[a]);
    double z = 0;
    for (int a = 0; a < A; ++a) z += (p[a] = s.n[a] ? std::exp(q[a] - mx) : 0.0);
    for (int a = 0; a < A; ++a)
      if (s.n[a]) q[a] -= step * (lambda * (p[a] / z - pi[a]) + pi[a] * (q[a] - rbar[a]));
  }
  return q;
}

int choose_arm(const std::vector<double>& values, int default_arm) {
  int best = -1;
  for (int a : tie_order(static_cast<int>(values.size()), default_arm)) {
    if (!std::isfinite(values[a])) continue;
    // A strictly larger value is needed to move away from the default (and nearer arms).
    if (best < 0 || values[a] > values[best] + 1e-12 * (1.0 + std::abs(values[best]))) best = a;
  }
  return best < 0 ? default_arm : best;
}

int best_mean_arm(const ArmStats& s, int default_arm) {
  std::vector<double> m(s.arms(), kNegInf);
  for (int a = 0; a < s.arms(); ++a)
    if (s.n[a]) m[a] = s.mean(a);
  return choose_arm(m, default_arm);
}

int ucb_pick(const ArmStats& s, int default_arm) {
  for (int a : tie_order(s.arms(), default_arm))
    if (s.n[a] == 0) return a;
  const double t = s.total(), scale = reward_range(s);
  std::vector<double> u(s.arms());
  for (int a = 0; a < s.arms(); ++a) u[a] = s.mean(a) + scale * std::sqrt(2.0 * std::log(t) / s.n[a]);
  return choose_arm(u, default_arm);
}

int thompson_pick(const ArmStats& s, int default_arm, Rng& rng) {
  for (int a : tie_order(s.arms(), default_arm))
    if (s.n[a] == 0) return a;
  // Pooled within-arm variance.
  double ss = 0;
  int dof = 0;
  for (int a = 0; a < s.arms(); ++a) {
    ss += s.sum_sq[a] - s.sum[a] * s.sum[a] / s.n[a];
    dof += s.n[a] - 1;
  }
  const double sigma = dof > 1 && ss > 0 ? std::sqrt(ss / dof) : reward_range(s);
  std::vector<double> draw(s.arms());
  for (int a = 0; a < s.arms(); ++a) draw[a] = s.mean(a) + sigma / std::sqrt(static_cast<double>(s.n[a])) * rng.normal();
  return choose_arm(draw, default_arm);
}

}  // namespace kvsim
