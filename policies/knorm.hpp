#pragma once
// knorm: keep the keys of smallest L2 norm, score −‖k_i‖ per (layer, KV head).
// Devoto et al., "A Simple and Effective L2 Norm-Based Strategy for KV Cache Compression",
// EMNLP 2024 (kvpress's KnormPress). Keys are post-RoPE, as the cache holds them; RoPE is a
// rotation, so the norm is the same as pre-RoPE. It protects nothing (no window), so it has no
// `sink` parameter (score_utils.hpp).
#include "policies/policy.hpp"

namespace kvsim {
PolicyInfo knorm_policy_info();
}
