#pragma once
// CriticalKV's projected value norms ‖W_O^h v_i‖₁ (docs/methods.md, "criticalkv"): for query
// head h and prompt token i, the L1 norm of value i of h's KV head projected through h's block
// of the output projection. Policy-independent and per prompt, so the trace writer records it
// (dataset `value_wo_l1`, docs/trace-format.md) and criticalkv reads it instead of spending
// 2·T·H·d·D flops per layer in every replay; traces without it fall back to this same function
// on the same (stored-precision) values, so both give the same bytes.
#include <span>

namespace kvsim {

struct ValueNormShape {
  int n_heads, n_kv_heads, head_dim, hidden;
  int T;  // prompt tokens: the rows scored
  int N;  // rows per KV head in `values` (T + M)
};

// out[k*T + i] = ‖W_O^h v_i‖₁ for the query heads h = first_head + k, k < n_out_heads (all of
// one KV head's group or any run of heads), i < T. values [Hkv, N, d], w_o [D, H*d]. fp32 GEMM
// in 256-row chunks, then the sum of |x| in Eigen's order: a fixed sequence of operations for
// a given shape, whatever the thread or the buffer. Single-threaded.
void value_wo_l1(const ValueNormShape& s, std::span<const float> values, std::span<const float> w_o, int first_head,
                 int n_out_heads, std::span<float> out);

}  // namespace kvsim
