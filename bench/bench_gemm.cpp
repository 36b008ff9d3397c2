// GEMM throughput of kvsim::linear (tiled Eigen over oneTBB) on the tracer's shapes, against
// one untiled single-threaded Eigen GEMM of the same size (the baseline, same run).
// Usage: bench_gemm [threads]
#include <tbb/global_control.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "core/rng.hpp"
#include "tracer/cpu_forward.hpp"

using namespace kvsim;

namespace {

MatrixRM random_matrix(int r, int c, std::uint64_t seed) {
  Rng rng(seed);
  MatrixRM m(r, c);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(rng.normal());
  return m;
}

template <typename F>
double gflops(double flop, int repeats, F&& fn) {
  fn();  // warm-up
  double best = 1e30;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return flop / best * 1e-9;
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
  std::printf("bench_gemm: threads=%d (GFLOP/s, best of 5)\n", threads);
  struct Shape {
    int n, in, out;
    const char* what;
  } shapes[] = {{2048, 576, 576, "SmolLM2 q/o proj"},   {2048, 576, 1536, "SmolLM2 gate/up"},
                {2048, 1536, 576, "SmolLM2 down"},      {2048, 576, 49152, "SmolLM2 classifier"},
                {512, 4096, 4096, "8B-shaped proj"},
                // The replay's W_O projection of δ (metrics/layer_metrics.cpp) at 8B shape, M = 32,
                // 6 budgets: one policy's rows, and 13 policies' rows stacked (issue 14).
                {192, 4096, 4096, "W_O, 1 policy"},     {2496, 4096, 4096, "W_O, 13 policies"}};
  for (const auto& s : shapes) {
    const MatrixRM x = random_matrix(s.n, s.in, 1), w = random_matrix(s.out, s.in, 2);
    MatrixRM y;
    const double flop = 2.0 * s.n * s.in * s.out;
    const double tiled = gflops(flop, 5, [&] { linear(x, w, y); });
    MatrixRM y1(s.n, s.out);
    const double single = gflops(flop, 3, [&] { y1.noalias() = x * w.transpose(); });
    std::printf("  %-20s [%5d x %5d] x [%5d x %5d]^T  linear %7.1f   one Eigen GEMM, 1 thread %7.1f   ratio %.2f\n",
                s.what, s.n, s.in, s.out, s.in, tiled, single, tiled / single);
  }
  return 0;
}
