#pragma once
// Launchers of the CUDA backend's kernels (tracer/cuda/kernels.cu), callable from host C++.
// Tensors are device pointers; "st" buffers hold the storage type (DType), the rest fp32.
// Layouts in brackets, memory order; N rows of the pass, H query heads, Hkv KV heads, d head_dim.
#include <cuda_runtime.h>

#include <cstddef>

namespace kvsim::cuda {

enum class DType { kF32, kBF16, kF16 };

// out st [rows, cols] = x [rows, cols] / rms(x) * gain [cols] (rms over each row, fp32).
void rms_norm(const float* x, const float* gain, void* out, DType t, int rows, int cols, float eps, cudaStream_t s);

// qkv [n, (H+2Hkv) d] (+ bias [(H+2Hkv) d] or null) -> queries st [H, n, d] and, at
// positions pos0..pos0+n-1 of the cache, keys and values st [Hkv, cap, d]; RoPE on q and k
// with cos/sin [n, d/2] (positions pos0..), pairs per kernel_math::rope_pair.
void qkv_rope(const float* qkv, const float* bias, const float* cos, const float* sin, void* q, void* k, void* v,
              DType t, int n, int H, int Hkv, int d, int cap, int pos0, bool interleaved, cudaStream_t s);

// Causal attention of n queries (positions pos0..) q st [H, n, d] over keys/values st
// [Hkv, cap, d] positions 0..pos0+n-1; out st [n, H*d], row_lse [H, n] (natural-log
// logsumexp of each row's scaled scores, for attention_colsum). Tiled, online softmax in fp32.
void flash_attention(const void* q, const void* k, const void* v, void* out, float* row_lse, DType t, int n, int H,
                     int Hkv, int d, int cap, int pos0, cudaStream_t s);

// Prefill from position 0 only: colsum [H, T] = Σ_{q<T} softmax row q at key i, recomputed
// from q st [H, n, d], keys st [Hkv, cap, d] and row_lse [H, n]. Key-tile-major, no atomics:
// deterministic.
void attention_colsum(const void* q, const void* k, const float* row_lse, float* colsum, DType t, int n, int T,
                      int H, int Hkv, int d, int cap, cudaStream_t s);

// out st [n, F] = silu(gate) * up, gate_up [n, 2F] (gate columns first).
void swiglu(const float* gate_up, void* out, DType t, int n, int F, cudaStream_t s);

// For rows r of logits [rows, V]: lse[r] = logsumexp, logprob[r] = logits[r, target[r]] - lse[r].
void row_logprob(const float* logits, const int* target, float* logprob, float* lse, int rows, int V, cudaStream_t s);

// For rows r of logits [rows, V]: the K largest in kernel_math::ranks_before order,
// ids/vals [rows, K].
void topk(const float* logits, int* ids, float* vals, int rows, int V, int K, cudaStream_t s);

}  // namespace kvsim::cuda
