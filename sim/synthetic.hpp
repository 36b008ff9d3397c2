#pragma once
// Synthetic traces at real-model shapes (e.g. Llama-3-8B at T = 4096) for benchmarks and
// tests, without running a model. Attention has the structure real prefill shows:
//   sinks         the first tokens carry a large key component along a direction u that
//                 every query shares (placed in the lowest-frequency RoPE pairs, which barely
//                 rotate, so it acts at every distance);
//   heavy hitters a few percent of tokens carry the same component, weaker;
//   locality      queries and keys share a component in the high-frequency RoPE pairs, whose
//                 dot product Σ_p |c_p|² cos((t−i)θ_p) peaks at distance 0 and decays;
//   noise         per-(head, token) Gaussian.
// Keys and queries are built pre-RoPE and rotated (rotate_half), as a model's cache holds
// them. attn_colsum is exact for small T and estimated from every `colsum_stride`-th prompt
// query (each weighted by the stride) when T is large; docs/trace-format.md says so.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

#include "traces/trace_types.hpp"

namespace kvsim {

struct SyntheticSpec {
  ModelInfo model;        // shape; rope_theta used for the rotation
  int n_prompts = 1;
  int T = 4096, M = 32, W = 64, topk = 16;
  std::uint64_t seed = 1;
  int colsum_stride = 0;  // 0: 1 when T <= 1024, else 16
  int compression_level = 0;
};

// Named shapes: "llama3-8b" (32 layers, 32 heads, 8 KV heads, head_dim 128, hidden 4096,
// vocab 128256, theta 5e5), "qwen2-7b" (28, 28, 4, 128, 3584; group size 7),
// "smollm2-135m" (30, 9, 3, 64, 576), "tiny" (2, 4, 2, 16, 64). Throws InputError otherwise.
ModelInfo synthetic_shape(const std::string& name);

// Bounds of a synthetic trace (InputError beyond them, before anything is allocated or written):
// 1 <= T <= kMaxSyntheticPrompt, 0 <= M <= kMaxSyntheticCont, W >= 1, 1 <= n_prompts <=
// kMaxSyntheticPrompts, and one layer's buffers (keys, values, queries, colsum) within
// kMaxSyntheticLayerBytes.
inline constexpr int kMaxSyntheticPrompt = 1 << 20;  // 1M tokens
inline constexpr int kMaxSyntheticCont = 1 << 16;
inline constexpr int kMaxSyntheticPrompts = 1 << 20;
inline constexpr std::int64_t kMaxSyntheticLayerBytes = std::int64_t{64} << 30;  // 64 GiB
void check_synthetic_spec(const SyntheticSpec& spec);

// Writes the trace atomically (temp name, rename). `progress` gets prompts done.
void write_synthetic_trace(const std::filesystem::path& path, const SyntheticSpec& spec,
                           const std::function<void(int)>& progress = {});

}  // namespace kvsim
