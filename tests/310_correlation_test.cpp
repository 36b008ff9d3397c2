// Correlation coefficients of `kvsim validate`, pinned to values scipy.stats documents (and
// recomputed by hand from the definitions), with ties.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "metrics/correlation.hpp"

using namespace kvsim;

TEST_CASE("correlation: average ranks give ties their mean rank", "[metrics][correlation]") {
  const std::vector<double> x = {10, 20, 10, 30, 20, 20};
  // Sorted: 10,10 -> ranks 1,2 (avg 1.5); 20,20,20 -> 3,4,5 (avg 4); 30 -> 6.
  CHECK(average_ranks(x) == std::vector<double>{1.5, 4, 1.5, 6, 4, 4});
}

TEST_CASE("correlation: scipy's documented examples", "[metrics][correlation]") {
  // scipy.stats.pearsonr([1, 2, 3, 4, 5], [10, 9, 2.5, 6, 4]) -> -0.7426106572325056
  CHECK(pearson(std::vector<double>{1, 2, 3, 4, 5}, std::vector<double>{10, 9, 2.5, 6, 4}) ==
        Approx(-0.7426106572325056).epsilon(1e-12));
  // scipy.stats.spearmanr([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) -> 0.8207826816681233 (a tie in y)
  CHECK(spearman(std::vector<double>{1, 2, 3, 4, 5}, std::vector<double>{5, 6, 7, 8, 7}) ==
        Approx(0.8207826816681233).epsilon(1e-12));
  // scipy.stats.kendalltau([12, 2, 1, 12, 2], [1, 4, 7, 1, 0]) -> -0.47140452079103173 (tau-b,
  // ties in x and a pair tied in both)
  CHECK(kendall_tau_b(std::vector<double>{12, 2, 1, 12, 2}, std::vector<double>{1, 4, 7, 1, 0}) ==
        Approx(-0.47140452079103173).epsilon(1e-12));
}

TEST_CASE("correlation: hand-computed tau-b and the degenerate cases", "[metrics][correlation]") {
  // x = 1,2,2,3 ; y = 1,3,2,2. Pairs: (1,2) c, (1,3) c, (1,4) c, (2,3) x-tie, (2,4) d, (3,4) y-tie.
  // n_c = 3, n_d = 1, t_x = 1, t_y = 1: tau_b = 2 / sqrt(5 * 5) = 0.4.
  CHECK(kendall_tau_b(std::vector<double>{1, 2, 2, 3}, std::vector<double>{1, 3, 2, 2}) == Approx(0.4).epsilon(1e-15));
  // Monotone but non-linear: rank correlations are exactly 1, Pearson below.
  const std::vector<double> x = {1, 2, 3, 4, 5}, y = {1, 4, 9, 16, 250};
  CHECK(spearman(x, y) == 1.0);
  CHECK(kendall_tau_b(x, y) == 1.0);
  CHECK(pearson(x, y) < 0.9);
  CHECK(std::isnan(pearson(std::vector<double>{1, 2, 3}, std::vector<double>{4, 4, 4})));
  CHECK(std::isnan(kendall_tau_b(std::vector<double>{1}, std::vector<double>{2})));
}
