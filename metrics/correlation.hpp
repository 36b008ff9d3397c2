#pragma once
// Correlation coefficients for `kvsim validate` (how well cheap Δ-NLL estimates predict the
// exact one). Definitions follow scipy.stats: Pearson r; Spearman ρ = Pearson r of the ranks,
// ties given their average rank; Kendall τ-b, which corrects for ties in either variable:
//     τ_b = (n_c − n_d) / sqrt((n_c + n_d + t_x)(n_c + n_d + t_y))
// (t_x: pairs tied in x only, t_y: in y only; pairs tied in both count in neither).
// All loops run in a fixed order: the result depends only on the inputs. NaN when undefined
// (fewer than 2 points, or a constant variable).
#include <span>
#include <vector>

namespace kvsim {

// 1-based ranks, ties sharing their average rank.
std::vector<double> average_ranks(std::span<const double> x);
double pearson(std::span<const double> x, std::span<const double> y);
double spearman(std::span<const double> x, std::span<const double> y);
// O(n²) pairs: fine for the tens of thousands of (prompt, policy, budget) points validate sees.
double kendall_tau_b(std::span<const double> x, std::span<const double> y);

}  // namespace kvsim
