#pragma once
// The two halves of a Llama layer around attention, shared by CpuForward (prefill, one
// sequence) and GreedyGenerator (sim/generate.hpp: one decode step of many sequences, all rows
// at the same position). Rows are independent: row t of every output depends only on row t of
// the input (and its position), so both callers get the same per-row arithmetic.
#include <functional>
#include <vector>

#include "core/matrix.hpp"
#include "tracer/model.hpp"

namespace kvsim {

// cos and sin of the RoPE angles of n rows, row t at position pos0 + t * pos_step: the same
// for every layer of one pass, so computed once per pass.
struct RopeTable {
  std::vector<float> cos, sin;  // [n, head_dim / 2] each
  // Fills the table unless it already holds these rows.
  void prepare(Eigen::Index n, int head_dim, int pos0, double theta, int pos_step);

 private:
  Eigen::Index n_ = -1;
  int head_dim_ = 0, pos0_ = 0, pos_step_ = 0;
  double theta_ = 0;
};

// Rotates q or k rows [n, heads*d] in place with the table's angles.
void apply_rope(MatrixRM& x, int heads, int head_dim, RopeStyle style, const RopeTable& table);

// Activations of one layer for n rows, reused across layers and steps.
struct LayerScratch {
  MatrixRM xn;          // [n, D] normed input
  MatrixRM q;           // [n, H*d] post-RoPE queries
  MatrixRM k, v;        // [n, Hkv*d] post-RoPE keys, values
  MatrixRM att;         // [n, H*d] attention output (the caller fills it)
  MatrixRM proj;        // [n, D]
  MatrixRM gate, up;    // [n, F]
  RopeTable rope;
};

// The weight products: linear (prefill: core/linear.hpp's packed GEMM) or linear_rowwise (decode
// batches: one dot per element), tracer/cpu_forward.hpp.
// CpuForward's multiplies by its packed copy of w (CpuForward::packed).
using LinearFn = std::function<void(const MatrixRM& x, const MatrixRM& w, MatrixRM& y)>;

// out [n, D] = RMSNorm(x) ⊙ gain, per row.
void rms_norm(const MatrixRM& x, const VectorF& gain, double eps, MatrixRM& out);

// Attention inputs of layer w for rows x [n, D]: s.xn, then s.q, s.k, s.v (bias, RoPE). Row t
// is at position pos0 + t * pos_step (pos_step 1: a prefill; 0: a batch of sequences at the
// same position).
void layer_qkv(const ModelConfig& c, const LayerWeights& w, const MatrixRM& x, int pos0, int pos_step, LayerScratch& s,
               const LinearFn& product);

// The rest of the layer once s.att is filled: x += s.att · W_Oᵀ, then x += SwiGLU FFN of
// RMSNorm(x).
void layer_out_ffn(const ModelConfig& c, const LayerWeights& w, MatrixRM& x, LayerScratch& s, const LinearFn& product);

}  // namespace kvsim
