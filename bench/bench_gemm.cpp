// SGEMM throughput on the tracer's and the replay's shapes (issue 14): kvsim::linear (the
// packed kernel of tracer/linear.hpp over oneTBB) against Eigen's GEMM split over the threads
// in column blocks, one Eigen GEMM on one thread, and OpenBLAS when the build found it, all
// in the same run, with the FMA peak (bench/peak.hpp) to read them against.
// Usage: bench_gemm [threads]
#include <cstdio>
#include <cstdlib>

#include "bench/peak.hpp"

using namespace kvsim;

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  std::printf("bench_gemm: threads=%d (GFLOP/s, best of 3)\n", threads);
  const bench::FmaPeak peak = bench::fma_peak(threads);
  bench::print_fma_peak(threads, peak);
  struct Shape {
    int n, in, out;
    const char* what;
  } shapes[] = {{2048, 576, 576, "SmolLM2 q/o proj"},   {2048, 576, 192, "SmolLM2 k/v proj"},
                {2048, 576, 1536, "SmolLM2 gate/up"},   {2048, 1536, 576, "SmolLM2 down"},
                {128, 576, 49152, "SmolLM2 classifier"}, {512, 576, 49152, "SmolLM2 classifier"},
                {512, 4096, 4096, "8B-shaped proj"},
                // The replay's W_O projection of δ (metrics/layer_metrics.cpp) at 8B shape, M = 32,
                // 6 budgets: one policy's rows, and 13 policies' rows stacked (issue 14).
                {192, 4096, 4096, "W_O, 1 policy"},     {2496, 4096, 4096, "W_O, 13 policies"}};
  std::printf("  %-20s %-30s %8s %8s %8s %8s   %s\n", "shape", "[n x in]·[out x in]^T", "kvsim", "Eigen-sp", "Eigen-1",
              "OpenBLAS", "kvsim/best, best/(threads x per-core FMA peak)");
  for (const auto& s : shapes) {
    const bench::GemmRates g = bench::sgemm_rates(s.n, s.in, s.out, threads);
    char dims[64];
    std::snprintf(dims, sizeof dims, "[%d x %d]·[%d x %d]^T", s.n, s.in, s.out, s.in);
    std::printf("  %-20s %-30s %8.1f %8.1f %8.1f %8s   %.2f  %.0f%% (%s)\n", s.what, dims, g.kvsim, g.eigen_split,
                g.eigen_one, bench::openblas_rate(g).c_str(), g.kvsim / g.best(),
                peak.idle > 0 ? 100.0 * g.best() / peak.idle : 0.0, g.best_name());
  }
  return 0;
}
