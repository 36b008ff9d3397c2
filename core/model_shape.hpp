#pragma once
// The shape of a transformer model as the simulator's per-model data (traces, decision
// tables) records it. Index letters: L layers, H query heads, Hkv KV heads, d head_dim,
// D hidden.
namespace kvsim {

struct ModelShape {
  int n_layers = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0, hidden = 0;
};

}  // namespace kvsim
