#pragma once
// The machine's peak in the same run as a benchmark (issue 14, item 4): an FMA peak (a tight
// loop of independent fused multiply-add chains on registers, per core and on N threads) and
// the best SGEMM of the candidate libraries at a given shape (kvsim::linear, one Eigen GEMM on
// one thread, Eigen's GEMM split over the threads in column blocks, OpenBLAS when the build
// found it), so that every figure can be read as a fraction of what the machine can do.
// Bench-only: nothing under bench/ is part of the libraries.
#include <immintrin.h>
#include <tbb/global_control.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "core/rng.hpp"
#include "core/linear.hpp"

#ifdef KVSIM_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace kvsim::bench {

inline double best_of(int repeats, const auto& fn) {
  double best = 1e30;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

// Flops of one FMA loop of `iters` iterations: kChains independent chains of one vector FMA each.
#if defined(__AVX512F__)
using FmaVec = __m512;
inline FmaVec fma_set1(float v) { return _mm512_set1_ps(v); }
inline FmaVec fma_step(FmaVec a, FmaVec b, FmaVec c) { return _mm512_fmadd_ps(a, b, c); }
constexpr const char* kFmaIsa = "avx512";
#elif defined(__FMA__)
using FmaVec = __m256;
inline FmaVec fma_set1(float v) { return _mm256_set1_ps(v); }
inline FmaVec fma_step(FmaVec a, FmaVec b, FmaVec c) { return _mm256_fmadd_ps(a, b, c); }
constexpr const char* kFmaIsa = "avx2+fma";
#endif

#if defined(__AVX512F__) || defined(__FMA__)
inline float fma_sum(FmaVec v) {
  float t[sizeof(FmaVec) / sizeof(float)];
  std::memcpy(t, &v, sizeof v);
  float s = 0;
  for (float x : t) s += x;
  return s;
}

// 16 chains: more than FMA latency × FMA ports on any current x86 core, so the ports stay busy.
inline float fma_loop(long iters) {
  constexpr int kChains = 16;
  FmaVec acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = fma_set1(static_cast<float>(j));
  const FmaVec a = fma_set1(0.999999f), b = fma_set1(1e-6f);
  for (long i = 0; i < iters; ++i) {
    for (int j = 0; j < kChains; ++j) acc[j] = fma_step(acc[j], a, b);  // FMAs are never folded (no -ffast-math)
  }
  FmaVec total = acc[0];
  for (int j = 1; j < kChains; ++j) total = fma_step(total, a, acc[j]);
  return fma_sum(total);
}

// GFLOP/s of the FMA loop on `threads` threads at once: best of 15 short runs (a few ms
// each), so that on a shared machine some run has the cores to itself.
inline double fma_peak_gflops(int threads) {
  constexpr long kIters = 2'000'000;
  constexpr double kFlopsPerIter = 16.0 * 2 * sizeof(FmaVec) / sizeof(float);
  std::vector<float> sink(threads);
  const double s = best_of(15, [&] {
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) pool.emplace_back([&sink, t] { sink[t] = fma_loop(kIters); });
    for (auto& th : pool) th.join();
  });
  return threads * kIters * kFlopsPerIter / s * 1e-9;
}
#else
constexpr const char* kFmaIsa = "none";
inline double fma_peak_gflops(int) { return 0; }
#endif

inline MatrixRM random_matrix(Eigen::Index r, Eigen::Index c, std::uint64_t seed) {
  Rng rng(seed);
  MatrixRM m(r, c);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(rng.normal());
  return m;
}

// GFLOP/s of Y [n, out] = X [n, in] · Wᵀ with each candidate on `threads` threads (Eigen one
// GEMM: one thread), best of `repeats` after a warm-up; openblas < 0 when the build has none.
struct GemmRates {
  double kvsim = 0, eigen_split = 0, eigen_one = 0, openblas = -1;
  double best() const { return std::max({kvsim, eigen_split, eigen_one, openblas}); }
  const char* best_name() const {
    const double b = best();
    return b == kvsim ? "kvsim linear" : b == openblas ? "OpenBLAS" : b == eigen_split ? "Eigen split" : "Eigen 1 thread";
  }
};

inline GemmRates sgemm_rates(int n, int in, int out, int threads, int repeats = 3) {
  const MatrixRM x = random_matrix(n, in, 1), w = random_matrix(out, in, 2);
  MatrixRM y(n, out);
  const double gflop = 2.0 * n * in * out * 1e-9;
  auto rate = [&](const auto& fn) {
    fn();
    return gflop / best_of(repeats, fn);
  };
  GemmRates g;
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
  const PackedWeights packed(w);
  g.kvsim = rate([&] { linear(x, packed, y); });
  g.eigen_one = rate([&] { y.noalias() = x * w.transpose(); });
  // Eigen's GEMM on `threads` column blocks of Y at once (Eigen itself runs single-threaded in
  // kvsim builds: EIGEN_DONT_PARALLELIZE).
  g.eigen_split = rate([&] {
    const int blocks = threads;
    tbb::parallel_for(0, blocks, [&](int b) {
      const Eigen::Index c0 = out * b / blocks, c1 = out * (b + 1) / blocks;
      y.middleCols(c0, c1 - c0).noalias() = x * w.middleRows(c0, c1 - c0).transpose();
    }, tbb::simple_partitioner());
  });
#ifdef KVSIM_HAVE_OPENBLAS
  openblas_set_num_threads(threads);
  g.openblas = rate([&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x.data(), in, w.data(), in, 0.0f,
                y.data(), out);
  });
#endif
  return g;
}

inline std::string openblas_rate(const GemmRates& g) {
  char buf[32];
  if (g.openblas < 0) return "n/a";  // the build found no OpenBLAS
  std::snprintf(buf, sizeof buf, "%.1f", g.openblas);
  return buf;
}

// OpenBLAS's kernel family (its CPU detection, or OPENBLAS_CORETYPE: bench/run.sh), or "none".
inline std::string openblas_core() {
#ifdef KVSIM_HAVE_OPENBLAS
  return openblas_get_corename();
#else
  return "none";
#endif
}

// The FMA peak on `threads` threads and the capacity those threads would have on idle cores
// (threads × the one-core peak): on a shared machine the first is what this run could get.
struct FmaPeak {
  double core = 0, measured = 0, idle = 0;
};
inline FmaPeak fma_peak(int threads) {
  FmaPeak p;
  p.core = fma_peak_gflops(1);
  p.measured = threads > 1 ? fma_peak_gflops(threads) : p.core;
  p.idle = threads * p.core;
  return p;
}

inline void print_fma_peak(int threads, const FmaPeak& p) {
  std::printf("peak: FMA (%s) %.1f GFLOP/s per core; on %d threads %.1f measured, %.1f = %d x per core; OpenBLAS kernels: %s\n",
              kFmaIsa, p.core, threads, p.measured, p.idle, threads, openblas_core().c_str());
}

// The FMA peak, then one line with the best SGEMM at the shape as a fraction of it.
inline GemmRates print_peak(int threads, int n, int in, int out) {
  const FmaPeak p = fma_peak(threads);
  print_fma_peak(threads, p);
  const GemmRates g = sgemm_rates(n, in, out, threads);
  std::printf(
      "peak: SGEMM [%d x %d]·[%d x %d]^T on %d threads, GFLOP/s: kvsim linear %.1f, Eigen split %.1f, Eigen 1 thread "
      "%.1f, OpenBLAS %s; best %.1f (%s) = %.0f%% of %d x per-core FMA peak\n",
      n, in, out, in, threads, g.kvsim, g.eigen_split, g.eigen_one, openblas_rate(g).c_str(), g.best(), g.best_name(),
      p.idle > 0 ? 100.0 * g.best() / p.idle : 0.0, threads);
  return g;
}

}  // namespace kvsim::bench
