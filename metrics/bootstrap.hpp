#pragma once
// Seeded percentile bootstrap confidence intervals over prompts, for the headline units of the
// long-context papers: a mean task score, and a policy's score as a fraction of a reference's
// (full cache) on the same prompts.
//
// One rule serves all: a statistic that is a ratio of sums, Σ_i num_i / Σ_i den_i, over units i
// (prompts). A bootstrap replicate draws n units with replacement (Rng::below, seeded) and
// recomputes the statistic; the 95% interval is the percentile interval of the B sorted
// replicates, [v_(⌊0.025 (B−1)⌋), v_(⌈0.975 (B−1)⌉)] (0-based order statistics). The same
// seed gives the same bytes: one Rng, a fixed draw order, sequential sums.
//   mean:                  num_i = x_i,       den_i = 1
//   percent of reference:  num_i = score_i,   den_i = reference_i (paired: the same prompt i is
//                          drawn for both, so ratio = mean(scores) / mean(reference))
//   grouped mean (tables/analysis diff): num_g = Σ of group g's values, den_g = its count.
// n_boot = 0 gives no interval: lo = hi = the point estimate.
#include <cstdint>
#include <span>

namespace kvsim {

struct Interval {
  double lo = 0, hi = 0;
};

// Percentile 95% interval of Σ num / Σ den over units resampled with replacement (n_boot ≥ 1
// replicates). A replicate whose Σ den is 0 has no ratio; it counts as +∞ (the data do not bound
// the ratio there), so it sorts last and widens hi.
Interval bootstrap_ratio_of_sums(std::span<const double> num, std::span<const double> den, int n_boot,
                                 std::uint64_t seed);

struct MeanCi {
  double mean = 0, lo = 0, hi = 0;
};

// Mean of x with its bootstrap 95% CI. Refuses (InputError) an empty x, a non-finite value or
// n_boot < 0.
MeanCi mean_ci(std::span<const double> x, int n_boot, std::uint64_t seed);

struct RatioCi {
  double ratio = 0, lo = 0, hi = 0;
};

// ratio = mean(scores) / mean(reference) over paired prompts (scores[i] and reference[i] belong
// to prompt i), with the paired bootstrap 95% CI resampling prompts. For task scores (≥ 0):
// refuses (InputError) different lengths, no prompts, negative or non-finite values, n_boot < 0.
// When the reference scored 0 on every prompt the ratio is undefined: ratio, lo and hi are NaN
// (a sweep reports "n/a" for that task rather than stopping).
RatioCi percent_of_reference(std::span<const double> scores, std::span<const double> reference, int n_boot,
                             std::uint64_t seed);

}  // namespace kvsim
