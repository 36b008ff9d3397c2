// SGEMM throughput on the tracer's and the replay's shapes (issue 14): kvsim::linear (the
// packed kernel of core/linear.hpp over oneTBB) against Eigen's GEMM split over the threads
// in column blocks, one Eigen GEMM on one thread, and OpenBLAS when the build found it, all
// in the same run, with the FMA peak (bench/peak.hpp) to read them against.
// `bench_gemm bf16` runs main's bf16 section alone (core/gemm_bf16 against Eigen fp32).
// Usage: bench_gemm [threads] | bench_gemm bf16
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string_view>

#include "bench/peak.hpp"
#include "core/gemm_bf16.hpp"

using namespace kvsim;

// ---- bf16 GEMM (core/gemm_bf16) against Eigen fp32, single thread: the replay's W_O shape ------
// `bench_gemm bf16` runs this section alone. Eigen is single-threaded in every kvsim build
// (EIGEN_DONT_PARALLELIZE); gemm_bf16_nt is single-threaded by design. Interleaved, best of 5,
// by wall time and by the thread's CPU time (the steadier figure on a shared machine).
namespace {

struct Bf16Clock {
  std::chrono::steady_clock::time_point wall0 = std::chrono::steady_clock::now();
  double cpu0 = cpu_seconds();
  static double cpu_seconds() {
    timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
  }
  // Keeps the best (wall, cpu) seconds since construction.
  void best(double& wall, double& cpu) const {
    wall = std::min(wall, std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count());
    cpu = std::min(cpu, cpu_seconds() - cpu0);
  }
};

void bench_bf16_w_o() {
  const int n = 4096, k = 4096;
  std::printf("bf16 GEMM (vdpbf16ps, fp32 accumulation) vs Eigen fp32, 1 thread, best of 5 (wall | thread CPU time);"
              " CPU %s AVX512-BF16\n", cpu_has_avx512_bf16() ? "has" : "lacks (portable kernel)");
  const MatrixRM w = bench::random_matrix(n, k, 2);
  double pack_b_wall = 1e30, pack_b_cpu = 1e30;
  const Bf16Clock clock_b;
  const PackedBf16 wp(w.data(), n, k);
  clock_b.best(pack_b_wall, pack_b_cpu);
  std::printf("  pack B [%d x %d] (once per trace): %.1f ms | %.1f ms\n", n, k, pack_b_wall * 1e3, pack_b_cpu * 1e3);
  for (const int m : {2496, 192}) {
    const MatrixRM x = bench::random_matrix(m, k, 1);
    MatrixRM y_eigen(m, n), y_bf16(m, n);
    const double gflop = 2.0 * m * n * k * 1e-9;
    double eigen_wall = 1e30, eigen_cpu = 1e30, bf16_wall = 1e30, bf16_cpu = 1e30, pack_wall = 1e30, pack_cpu = 1e30;
    y_eigen.noalias() = x * w.transpose();  // warm-up
    gemm_bf16_nt(x.data(), m, k, k, wp, y_bf16.data(), n);
    for (int r = 0; r < 5; ++r) {
      const Bf16Clock ce;
      y_eigen.noalias() = x * w.transpose();
      ce.best(eigen_wall, eigen_cpu);
      const Bf16Clock cb;
      gemm_bf16_nt(x.data(), m, k, k, wp, y_bf16.data(), n);
      cb.best(bf16_wall, bf16_cpu);
      const Bf16Clock cp;
      if (detail::gemm_bf16_pack_a_only(x.data(), m, k, k)) cp.best(pack_wall, pack_cpu);
    }
    const double err = (y_bf16 - y_eigen).cwiseAbs().maxCoeff() / y_eigen.cwiseAbs().maxCoeff();
    std::printf("  W_O m=%4d [%d x %d] x [%d x %d]^T  GFLOP/s: Eigen fp32 %5.1f | %5.1f   bf16 %5.1f | %5.1f"
                "   ratio %.2f | %.2f   pack A per call %.1f | %.1f ms (GEMM %.1f | %.1f ms)   max|diff|/max|C| %.1e\n",
                m, m, k, n, k, gflop / eigen_wall, gflop / eigen_cpu, gflop / bf16_wall, gflop / bf16_cpu,
                eigen_wall / bf16_wall, eigen_cpu / bf16_cpu, pack_wall < 1e30 ? pack_wall * 1e3 : 0.0,
                pack_cpu < 1e30 ? pack_cpu * 1e3 : 0.0, bf16_wall * 1e3, bf16_cpu * 1e3, err);
  }
}

}  // namespace
// ---- end bf16 GEMM ------------------------------------------------------------------------------

int main(int argc, char** argv) {
  if (argc > 1 && std::string_view(argv[1]) == "bf16") {
    bench_bf16_w_o();
    return 0;
  }
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
  bench_bf16_w_o();
  return 0;
}
