#pragma once
// streamingllm: the first `sink` tokens (attention sinks) plus the most recent tokens.
// Xiao et al., "Efficient Streaming Language Models with Attention Sinks", ICLR 2024.
// As a prefill policy (kvpress's StreamingLLMPress): with budget B, keep tokens 0..sink-1
// and the last B - sink tokens; when B <= sink, the first B tokens.
#include "policies/policy.hpp"

namespace kvsim {
PolicyInfo streamingllm_policy_info();
}
