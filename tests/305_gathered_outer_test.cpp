// add_gathered_outer (the δ sums' kernel) against the definition written out: for every element,
// fma over the listed tokens in order, in double. The AVX-512 tiles and the portable loop must
// give these very bits, whatever the shape (tiles, remainders, several token blocks).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

#include "core/rng.hpp"
#include "metrics/gathered_outer.hpp"

using namespace kvsim;

namespace {

struct Case {
  int rows, cols, n_tokens, list;
};

void check_case(const Case& c) {
  Rng rng(static_cast<std::uint64_t>(c.rows * 1000 + c.cols * 10 + c.list));
  const int lda = c.rows + 3, ldv = c.cols + 5;  // rows longer than what is read
  std::vector<float> a(static_cast<std::size_t>(c.n_tokens) * lda), v(static_cast<std::size_t>(c.n_tokens) * ldv);
  for (float& x : a) x = static_cast<float>(rng.uniform());
  for (float& x : v) x = static_cast<float>(rng.normal() * 3.0 + 10.0);
  std::vector<std::int32_t> idx;
  for (int j = 0; j < c.list; ++j) idx.push_back(static_cast<std::int32_t>(rng.uniform() * c.n_tokens) % c.n_tokens);
  std::vector<double> acc(static_cast<std::size_t>(c.rows) * c.cols), expected(acc.size());
  for (std::size_t i = 0; i < acc.size(); ++i) acc[i] = expected[i] = rng.normal();  // accumulates onto what is there
  std::vector<double> sum(c.rows, 123.0), expected_sum(c.rows, 0.0);
  for (const std::int32_t i : idx)
    for (int r = 0; r < c.rows; ++r) {
      const double ar = a[static_cast<std::size_t>(i) * lda + r];
      expected_sum[r] += ar;
      for (int k = 0; k < c.cols; ++k) {
        double& e = expected[static_cast<std::size_t>(r) * c.cols + k];
        e = std::fma(ar, static_cast<double>(v[static_cast<std::size_t>(i) * ldv + k]), e);
      }
    }
  add_gathered_outer(idx, a.data(), lda, c.rows, v.data(), ldv, c.cols, acc.data(), sum.data());
  INFO("rows " << c.rows << " cols " << c.cols << " tokens listed " << c.list);
  for (std::size_t i = 0; i < acc.size(); ++i) REQUIRE(acc[i] == expected[i]);  // bit for bit
  for (int r = 0; r < c.rows; ++r) REQUIRE(sum[r] == expected_sum[r]);
}

}  // namespace

TEST_CASE("add_gathered_outer: the listed tokens' outer products, fma in list order, bit for bit", "[metrics]") {
  // 128 x 128: whole 8 x 16 tiles (Llama-3-8B: G·M = 4·32, d = 128); 24 x 64 (SmolLM2); 13 x 20
  // and 7 x 9: remainders only; 300 listed tokens: three blocks of 128, repeats included.
  for (const Case& c : {Case{128, 128, 500, 300}, Case{24, 64, 50, 129}, Case{13, 20, 40, 257}, Case{7, 9, 10, 3},
                        Case{16, 32, 5, 0}})
    check_case(c);
}
