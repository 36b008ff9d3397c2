#pragma once
// The recorded tensors of one (prompt, layer): one set of names and shapes for every module,
// owned (LayerRecord: read back from a trace, built by a test) or viewed (LayerView: the
// tracer's buffers handed to the writer; a policy's view of a prompt extends it, PromptView).
// H query heads, Hkv KV heads, d head_dim, T prompt and M continuation tokens, W window.
#include <span>
#include <vector>

namespace kvsim {

template <typename Buffer>
struct LayerTensorsOf {
  Buffer keys;         // [Hkv, T+M, d] post-RoPE
  Buffer values;       // [Hkv, T+M, d]
  Buffer q_window;     // [H, W, d] post-RoPE, prompt rows T-W..T-1
  Buffer q_cont;       // [H, M, d] post-RoPE, rows T..T+M-1
  Buffer attn_colsum;  // [H, T] Σ_{q<T} A_h[q, i] over prompt queries
  // [H, T] ‖W_O^h v_i‖₁ (core/value_norm.hpp), optional: empty when the trace does not record
  // it; handed to the writer empty, the writer computes it (WriterOptions::value_norms).
  Buffer value_wo_l1;
};

using LayerRecord = LayerTensorsOf<std::vector<float>>;   // owned, fp32
using LayerView = LayerTensorsOf<std::span<const float>>;  // read-only

// A view of owned tensors (every field, value_wo_l1 included).
inline LayerView layer_view(const LayerRecord& r) {
  return {r.keys, r.values, r.q_window, r.q_cont, r.attn_colsum, r.value_wo_l1};
}

}  // namespace kvsim
