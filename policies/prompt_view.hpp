#pragma once
// What a retention policy sees of one prompt: read-only fp32 views of every layer, plus the
// attention derived once per (prompt, layer) by the simulator and shared by all policies.
// Policies never see HDF5 (STYLE.md). Index letters: l layer, h query head, g KV head,
// i token, T prompt length, M continuation length, W recorded window, d head_dim, D hidden.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/layer_tensors.hpp"
#include "core/model_shape.hpp"

namespace kvsim {

class PackedBf16;     // core/gemm_bf16.hpp
class PackedWeights;  // core/linear.hpp

// A layer's recorded tensors as views (LayerView: keys, values, q_window, q_cont, attn_colsum,
// value_wo_l1), plus the weights and the attention the simulator shares with every policy.
struct LayerData : LayerView {
  std::span<const float> w_o;          // [D, H*d] this layer's output projection
  const PackedBf16* w_o_bf16 = nullptr;  // w_o rounded to bf16 and packed, when the replay projects in bf16
  const PackedWeights* w_o_packed = nullptr;  // w_o packed for linear_serial, when the replay projects in fp32
  std::span<const float> w_o_gram;     // [H, d, d] W_O^hᵀ W_O^h (head_output_grams) when the simulator shares them, else empty
  // Derived by the simulator:
  std::span<const float> window_attn;  // [H, W, T] softmax of window queries over prompt keys (causal)
  std::span<const float> cont_attn;    // [H, M, T+M] softmax of continuation queries (causal)
};

// The model's shape fields (n_layers, n_heads, n_kv_heads, head_dim, hidden) are ModelShape's.
struct PromptView : ModelShape {
  std::string id;
  std::string task;
  int T = 0;  // prompt tokens
  int M = 0;  // continuation tokens
  int W = 0;  // recorded window (queries T-W..T-1)
  std::vector<LayerData> layers;          // [L]
  std::span<const float> prompt_logprob;  // [T], [0] = 0
  std::uint64_t seed = 0;                 // per prompt; policies derive theirs from it

  int group_size() const { return n_heads / n_kv_heads; }
  const ModelShape& shape() const { return *this; }
};

}  // namespace kvsim
