#pragma once
// The CPU forward pass of a Llama-family decoder: batched over positions (prefill), Eigen
// GEMMs tiled over oneTBB, attention computed explicitly so the tracer can record what it
// needs (window queries, attention column sums). The reference backend for the CUDA one.
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "core/matrix.hpp"
#include "tracer/forward_backend.hpp"
#include "core/linear.hpp"
#include "tracer/model.hpp"

namespace kvsim {

// Keys and values of every layer. Per layer: keys [Hkv, capacity, d], values likewise; the
// first length() positions are filled.
class KvCache {
 public:
  KvCache(const ModelConfig& config, int capacity);
  int length() const { return length_; }
  int capacity() const { return capacity_; }
  float* keys(int l) { return keys_[l].data(); }
  float* values(int l) { return values_[l].data(); }
  const float* keys(int l) const { return keys_[l].data(); }
  const float* values(int l) const { return values_[l].data(); }
  void set_length(int n) { length_ = n; }

 private:
  int capacity_;
  int length_ = 0;
  std::vector<std::vector<float>> keys_;    // [L][Hkv, capacity, d]
  std::vector<std::vector<float>> values_;  // [L][Hkv, capacity, d]
};

// What one layer computed for the new positions [pos0, pos0 + n), handed to an observer.
struct LayerActivations {
  int layer = 0;
  int pos0 = 0;
  int n = 0;
  const MatrixRM* q = nullptr;            // [n, H*d] post-RoPE queries
  const float* attn_colsum = nullptr;     // [H, colsum_len] or null
  int colsum_len = 0;
  // Compressed prompt cache (exact re-decode, sim/exact_decode.hpp). When keep is not empty,
  // query rows at absolute position >= keep_len see a key at position j < keep_len only if
  // keep[(l * Hkv + g) * keep_len + j] != 0 (the others get −inf logits); keys at positions
  // >= keep_len stay visible (causally). keep: [L, Hkv, keep_len]. Rows before keep_len
  // (the prompt's own prefill) are unaffected.
  std::span<const std::uint8_t> keep;
  int keep_len = 0;
  // When set, receives the residual stream after the last layer, before the final RMSNorm:
  // [n, D] (the tracer records it for the logit-space Δ-NLL estimate).
  MatrixRM* final_residual = nullptr;
};

struct ForwardOptions {
  // When > 0: accumulate Σ_q A_h[q, i] over query positions q < colsum_len, for key
  // positions i < colsum_len (the H2O statistic over the prompt).
  int colsum_len = 0;
  // Compressed prompt cache (exact re-decode, sim/exact_decode.hpp). When keep is not empty,
  // query rows at absolute position >= keep_len see a key at position j < keep_len only if
  // keep[(l * Hkv + g) * keep_len + j] != 0 (the others get −inf logits); keys at positions
  // >= keep_len stay visible (causally). keep: [L, Hkv, keep_len]. Rows before keep_len
  // (the prompt's own prefill) are unaffected.
  std::span<const std::uint8_t> keep;
  int keep_len = 0;
  // When set, receives the residual stream after the last layer, before the final RMSNorm:
  // [n, D] (the tracer records it for the logit-space Δ-NLL estimate).
  MatrixRM* final_residual = nullptr;
};

using LayerObserver = std::function<void(const LayerActivations&)>;

class CpuForward : public ForwardBackend {
 public:
  // Packs every weight matrix of the model for linear() (core/linear.hpp): a second copy of
  // the weights in memory, made once; the model must not change while this object lives.
  explicit CpuForward(const Model& model);

  // Runs tokens at positions cache.length() .. cache.length()+n-1, appending their keys and
  // values to the cache. Returns the final-normed hidden states [n, D].
  MatrixRM forward(std::span<const int> tokens, KvCache& cache, const ForwardOptions& options = {},
                   const LayerObserver& observer = {}) const;

  // logits [n, V] = hidden [n, D] · classifierᵀ.
  MatrixRM logits(const MatrixRM& hidden) const;

  const Model& model() const override { return model_; }
  const char* name() const override { return "cpu"; }
  // forward() with column sums over the prompt, then the log-probs and top-K from logits
  // taken in row blocks; calls sink.layer for every layer after the whole pass.
  void record(std::span<const int> tokens, const RecordShape& shape, PromptSink& sink) const override;
  std::unique_ptr<DecodeSequence> start(int capacity) const override;

  // The packed copy of one of the model's weight matrices (of model().layers, or
  // model().output_matrix()).
  const PackedWeights& packed(const MatrixRM& w) const;

 private:
  const Model& model_;
  std::unordered_map<const MatrixRM*, PackedWeights> packed_;
};

// The same product for decoding batches (sim/generate.hpp), register-blocked, with every
// element summed in one fixed order (packets over the inner dimension, then the remainder):
// row t of Y depends on row t of X alone, never on the other rows, their number or the thread
// count. W is read from memory once per call without packing (linear() packs W on every call
// it is not given packed, which costs more than the product below ~8 rows; for one row this is a GEMV).
void linear_rowwise(const MatrixRM& x, const MatrixRM& w, MatrixRM& y);

// RoPE frequencies θ^(-2i/d), i < d/2, in fp32 as llama2.c and HF compute them; the angle
// of position p is float(p) * freq[i] (the CUDA backend's tables use the same values).
std::vector<float> rope_frequencies(int head_dim, double theta);

// Rotates q or k rows [n, heads*d] in place, row t at position pos0 + t * pos_step (1: the
// positions of a prefill; 0: a batch of sequences all at pos0).
void apply_rope(MatrixRM& x, int heads, int head_dim, int pos0, double theta, RopeStyle style, int pos_step = 1);

}  // namespace kvsim
