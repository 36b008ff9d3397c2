#pragma once
// bf16 GEMM with fp32 accumulation: C[m x n] = bf16(A)[m x k] * bf16(B)[n x k]^T.
//
// The math: every input is rounded to bfloat16 (round to nearest even; a NaN stays a NaN, a
// finite value past the bf16 range becomes +-inf), products are exact in fp32, sums are fp32.
// B is converted and packed once (PackedBf16), A is converted while its blocks are packed.
//
// Two kernels compute that definition:
//  - avx512_bf16: AVX512-BF16 vdpbf16ps (12 x 32 register tile). The instruction has its own
//    rules: bf16 denormal inputs count as zero and denormal results are flushed to zero, and it
//    adds the two products of a k-pair to the accumulator with its own internal rounding. Its
//    results are therefore not bitwise those of the portable kernel (they agree to fp32
//    accumulation error, ~1e-6 relative to sum |a||b|), but they are deterministic: the same
//    inputs give the same bytes, whatever the buffers' alignment.
//  - portable: the bf16-rounded values as floats, multiplied by Eigen's fp32 GEMM; for CPUs
//    without AVX512-BF16 (the AVX-512 code is compiled with function-level target attributes,
//    so the file builds with any x86-64 flags, and elsewhere without it).
// Both are single-threaded: callers run one GEMM per task.
#include <cstddef>
#include <cstdint>
#include <memory>

namespace kvsim {

// The CPU (and OS) run AVX512-BF16 instructions; false where the kernel is not compiled in.
bool cpu_has_avx512_bf16();

// The bf16 bit pattern of x: round to nearest even, NaN stays NaN (quieted, sign kept).
std::uint16_t bf16_round_bits(float x);
// x rounded to bf16, as a float (exact).
float bf16_round(float x);

// B [n x k] row-major fp32, rounded to bf16 and packed for gemm_bf16_nt: panels of kPanel
// rows of B (columns of C), each [k_pairs][kPanel] 32-bit words, a word holding the bf16
// values of k = 2p (low half) and 2p + 1 (high half). n is padded to whole panels and k to
// an even count, with zeros.
class PackedBf16 {
 public:
  static constexpr int kPanel = 32;

  PackedBf16(const float* b, int n, int k);

  int rows() const { return n_; }
  int cols() const { return k_; }
  int k_pairs() const { return kp_; }
  int panels() const { return panels_; }
  // Panel j: rows [j * kPanel, j * kPanel + kPanel) of B, k_pairs() * kPanel words.
  const std::uint32_t* panel(int j) const { return data_.get() + static_cast<std::size_t>(j) * kp_ * kPanel; }
  // B[row, col] as stored (rounded to bf16), as a float.
  float value(int row, int col) const;

 private:
  struct Free {
    void operator()(std::uint32_t* p) const;
  };
  int n_, k_, kp_, panels_;
  std::unique_ptr<std::uint32_t[], Free> data_;
};

enum class Bf16Kernel {
  automatic,    // avx512_bf16 where the CPU has it, portable otherwise
  avx512_bf16,  // throws kvsim::Error where the CPU lacks AVX512-BF16
  portable,
};

// C = bf16(A) * bf16(B)^T, fp32 accumulation. A: m rows of k floats, row stride lda >= k; C: m
// rows of b.rows() floats, row stride ldc >= b.rows(), overwritten. k must equal b.cols().
// Any m, n, k >= 1; single-threaded; deterministic.
void gemm_bf16_nt(const float* a, int m, int k, int lda, const PackedBf16& b, float* c, int ldc,
                  Bf16Kernel kernel = Bf16Kernel::automatic);

namespace detail {
// For benchmarks: converts and packs every block of A exactly as gemm_bf16_nt's AVX512-BF16
// kernel does (into scratch, no product), so that the packing's share can be timed; false
// where that kernel is not available.
bool gemm_bf16_pack_a_only(const float* a, int m, int k, int lda);
}  // namespace detail

}  // namespace kvsim
