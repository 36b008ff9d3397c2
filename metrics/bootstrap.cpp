#include "metrics/bootstrap.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.hpp"
#include "core/rng.hpp"

namespace kvsim {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

void check_values(const char* what, std::span<const double> x, bool nonnegative) {
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i])) fail<InputError>(what, "[", i, "] = ", x[i], " is not finite");
    if (nonnegative && x[i] < 0) fail<InputError>(what, "[", i, "] = ", x[i], " is negative (task scores are in [0, 1])");
  }
}

void check_n_boot(const char* what, int n_boot) {
  if (n_boot < 0) fail<InputError>(what, ": n_boot = ", n_boot, ", expected >= 0");
}

}  // namespace

Interval bootstrap_ratio_of_sums(std::span<const double> num, std::span<const double> den, int n_boot,
                                 std::uint64_t seed) {
  KVSIM_CHECK(num.size() == den.size() && !num.empty() && n_boot >= 1, num.size(), " vs ", den.size(),
              " units, n_boot ", n_boot);
  const std::size_t n = num.size();
  Rng rng(seed);
  std::vector<double> stats(static_cast<std::size_t>(n_boot));
  for (double& v : stats) {
    double sn = 0, sd = 0;
    for (std::size_t j = 0; j < n; ++j) {
      const std::size_t i = rng.below(n);
      sn += num[i], sd += den[i];
    }
    v = sd == 0 ? kInf : sn / sd;
  }
  std::sort(stats.begin(), stats.end());
  return {stats[static_cast<std::size_t>(std::floor(0.025 * (n_boot - 1)))],
          stats[static_cast<std::size_t>(std::ceil(0.975 * (n_boot - 1)))]};
}

MeanCi mean_ci(std::span<const double> x, int n_boot, std::uint64_t seed) {
  if (x.empty()) fail<InputError>("mean_ci: no values");
  check_values("mean_ci: value", x, false);
  check_n_boot("mean_ci", n_boot);
  double sum = 0;
  for (double v : x) sum += v;
  MeanCi r;
  r.mean = sum / static_cast<double>(x.size());
  if (n_boot == 0) {
    r.lo = r.hi = r.mean;
    return r;
  }
  const std::vector<double> ones(x.size(), 1.0);
  const Interval ci = bootstrap_ratio_of_sums(x, ones, n_boot, seed);
  r.lo = ci.lo, r.hi = ci.hi;
  return r;
}

RatioCi percent_of_reference(std::span<const double> scores, std::span<const double> reference, int n_boot,
                             std::uint64_t seed) {
  if (scores.size() != reference.size())
    fail<InputError>("percent_of_reference: ", scores.size(), " scores but ", reference.size(),
                     " reference scores (they must be paired, one per prompt)");
  if (scores.empty()) fail<InputError>("percent_of_reference: no prompts");
  check_values("percent_of_reference: scores", scores, true);
  check_values("percent_of_reference: reference", reference, true);
  check_n_boot("percent_of_reference", n_boot);
  double ss = 0, sr = 0;
  for (std::size_t i = 0; i < scores.size(); ++i) ss += scores[i], sr += reference[i];
  RatioCi r;
  if (sr == 0) {
    r.ratio = r.lo = r.hi = std::numeric_limits<double>::quiet_NaN();
    return r;
  }
  r.ratio = ss / sr;  // = mean(scores) / mean(reference): the same n divides both
  if (n_boot == 0) {
    r.lo = r.hi = r.ratio;
    return r;
  }
  const Interval ci = bootstrap_ratio_of_sums(scores, reference, n_boot, seed);
  r.lo = ci.lo, r.hi = ci.hi;
  return r;
}

}  // namespace kvsim
