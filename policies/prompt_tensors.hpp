#pragma once
// Owns the tensors a PromptView points to: one prompt's layers as read from a trace (or built
// by a test), plus the attention derived from them once and shared by every policy and metric.
#include <memory>
#include <vector>

#include "core/gemm_bf16.hpp"
#include "core/layer_tensors.hpp"
#include "core/linear.hpp"
#include "policies/prompt_view.hpp"

namespace kvsim {

// A layer as read (LayerRecord), plus the attention derived from it once per prompt.
struct LayerTensors : LayerRecord {
  std::vector<float> window_attn;  // [H, W, T] derived
  std::vector<float> cont_attn;    // [H, M, T+M] derived
};

struct PromptTensors : ModelShape {  // the model's shape fields are ModelShape's
  std::string id, task;
  int T = 0, M = 0, W = 0;
  std::uint64_t seed = 0;
  std::vector<LayerTensors> layers;                          // [L]
  std::vector<float> prompt_logprob;                         // [T]
  std::shared_ptr<const std::vector<std::vector<float>>> w_o;  // [L][D, H*d], shared by a trace's prompts
  std::shared_ptr<const std::vector<PackedBf16>> w_o_bf16;     // [L] or null: W_O for bf16 projections
  std::shared_ptr<const std::vector<PackedWeights>> w_o_packed;  // [L] or null: W_O for fp32 projections (linear_serial)
  std::shared_ptr<const std::vector<std::vector<float>>> w_o_gram;  // [L][H, d, d] or null: head_output_grams

  // Fills window_attn (when window) and cont_attn (when cont) for every layer, in parallel
  // over (layer, head). Checks every tensor's size first.
  void derive_attention(bool window, bool cont);
  PromptView view() const;
};

// Softmax (scale 1/sqrt(d)) of query rows at absolute positions first_pos.. over keys
// 0..n_keys-1 of one head, causal (row r sees keys <= first_pos + r): out [rows, n_keys].
void causal_attention(const float* q, int rows, int first_pos, const float* k, int n_keys, int d, float* out);

}  // namespace kvsim
