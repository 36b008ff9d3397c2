#include "metrics/logit_estimate.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"

namespace kvsim {

LogitEstimator::LogitEstimator(const LogitEstimateInput& in) : M_(in.M), D_(in.D) {
  const int D = in.D;
  KVSIM_CHECK(in.M >= 1 && D > 0 && in.K > 0, "logit estimate: M ", in.M, " D ", D, " K ", in.K);
  KVSIM_CHECK(in.cont_residual.size() == static_cast<std::size_t>(in.M) * D, "logit estimate: cont_residual size");
  KVSIM_CHECK(in.final_norm.size() == static_cast<std::size_t>(D), "logit estimate: final_norm size");
  KVSIM_CHECK(in.classifier.size() == static_cast<std::size_t>(in.V) * D, "logit estimate: classifier size");
  KVSIM_CHECK(in.tokens.size() == static_cast<std::size_t>(in.T + in.M), "logit estimate: tokens size");
  KVSIM_CHECK(in.cont_topk_ids.size() == static_cast<std::size_t>(in.M) * in.K, "logit estimate: top-k size");
  positions_.resize(static_cast<std::size_t>(std::max(0, in.M - 1)));
  std::vector<double> u(D), c(D), h(D);
  std::vector<double> z;
  for (int t = 0; t + 1 < in.M; ++t) {
    Position& pos = positions_[t];
    // u = r / rms(r), rms = sqrt(mean(r²) + eps): the RMSNorm Jacobian is (I − u uᵀ/D) / rms.
    const float* r = in.cont_residual.data() + static_cast<std::size_t>(t) * D;
    double ss = 0;
    for (int e = 0; e < D; ++e) ss += static_cast<double>(r[e]) * r[e];
    const double rms = std::sqrt(ss / D + in.norm_eps);
    for (int e = 0; e < D; ++e) u[e] = r[e] / rms, h[e] = u[e] * in.final_norm[e];
    // Support: the top-K of the distribution predicting x_{T+t+1}, plus that token.
    const std::int32_t* ids = in.cont_topk_ids.data() + static_cast<std::size_t>(t + 1) * in.K;
    std::vector<std::int32_t> support(ids, ids + in.K);
    const std::int32_t gold = in.tokens[static_cast<std::size_t>(in.T + t + 1)];
    auto it = std::find(support.begin(), support.end(), gold);
    pos.gold = static_cast<int>(it - support.begin());
    if (it == support.end()) support.push_back(gold);
    const int S = static_cast<int>(support.size());
    pos.rows.resize(static_cast<std::size_t>(S) * D);
    z.assign(S, 0.0);
    for (int k = 0; k < S; ++k) {
      KVSIM_CHECK(support[k] >= 0 && support[k] < in.V, "logit estimate: token id ", support[k], " outside the vocabulary");
      const float* w = in.classifier.data() + static_cast<std::size_t>(support[k]) * D;
      double uc = 0;
      for (int e = 0; e < D; ++e) {
        c[e] = static_cast<double>(w[e]) * in.final_norm[e];
        uc += u[e] * c[e];
        z[k] += static_cast<double>(w[e]) * h[e];
      }
      float* row = pos.rows.data() + static_cast<std::size_t>(k) * D;
      for (int e = 0; e < D; ++e) row[e] = static_cast<float>((c[e] - u[e] * uc / D) / rms);
    }
    const double mx = *std::max_element(z.begin(), z.end());
    pos.q.resize(S);
    double sum = 0;
    for (int k = 0; k < S; ++k) sum += (pos.q[k] = std::exp(z[k] - mx));
    for (int k = 0; k < S; ++k) pos.q[k] /= sum;
  }
}

LogitEstimate LogitEstimator::estimate(std::span<const float> delta_residual) const {
  KVSIM_CHECK(delta_residual.size() == static_cast<std::size_t>(M_) * D_, "logit estimate: delta size ",
              delta_residual.size(), ", expected ", M_, "x", D_);
  LogitEstimate out;
  if (positions_.empty()) return out;
  std::vector<double> dz;
  for (std::size_t t = 0; t < positions_.size(); ++t) {
    const Position& pos = positions_[t];
    const float* dr = delta_residual.data() + t * D_;
    const int S = static_cast<int>(pos.q.size());
    dz.assign(S, 0.0);
    double mean = 0;
    for (int k = 0; k < S; ++k) {
      const float* row = pos.rows.data() + static_cast<std::size_t>(k) * D_;
      double s = 0;
      for (int e = 0; e < D_; ++e) s += static_cast<double>(row[e]) * dr[e];
      dz[k] = s;
      mean += pos.q[k] * s;
    }
    double var = 0;
    for (int k = 0; k < S; ++k) var += pos.q[k] * (dz[k] - mean) * (dz[k] - mean);
    out.dnll += -dz[pos.gold] + mean + 0.5 * var;
    out.kl += 0.5 * var;
  }
  out.dnll /= static_cast<double>(positions_.size());
  out.kl /= static_cast<double>(positions_.size());
  return out;
}

double LogitEstimator::flops_per_estimate() const {
  double f = 0;
  for (const auto& p : positions_) f += 2.0 * static_cast<double>(p.q.size()) * D_ + 4.0 * p.q.size();
  return f;
}

}  // namespace kvsim
