#pragma once
// Where the tracer's forward pass runs and in which number format (kvsim trace --device,
// --precision), and the device memory it needs (checked before anything is allocated).
#include <cstddef>
#include <string>

#include "tracer/model.hpp"

namespace kvsim {

enum class Device { kCpu, kCuda };

// Storage type of the CUDA backend's weights and GEMM inputs. GEMMs accumulate in fp32;
// the residual stream, norms, softmax and log-probs are fp32 in every mode.
enum class Precision { kFp32, kBf16, kFp16 };

// Parse the CLI spellings "cpu"|"cuda" and "fp32"|"bf16"|"fp16"; InputError lists the choices.
Device parse_device(const std::string& s);
Precision parse_precision(const std::string& s);
const char* device_name(Device d);
const char* precision_name(Precision p);
std::size_t precision_bytes(Precision p);  // 4 | 2 | 2

// Device memory of the CUDA backend, in bytes, buffer by buffer, as it allocates it: the
// model (once), the workspace for one pass of up to n_tokens positions (one layer's
// activations at a time), and the KV cache. Recording keeps two layers' K/V (double
// buffered for the copy to the host); a decode sequence keeps every layer's.
struct GpuMemoryPlan {
  std::size_t weights = 0;      // per-layer matrices in the storage type, norms/biases fp32, classifier
  std::size_t activations = 0;  // residual, normed input, qkv, attention output, MLP (one layer)
  std::size_t kv_cache = 0;     // K and V
  std::size_t recording = 0;    // double-buffered queries and column sums, per-row log-probs
  std::size_t logits = 0;       // classifier output for one block of rows [rows, V] fp32
  std::size_t workspace = 0;    // cuBLAS workspace and RoPE tables
  std::size_t pinned_host = 0;  // page-locked host buffers (not device memory)

  std::size_t device_total() const { return weights + activations + kv_cache + recording + logits + workspace; }
  // "weights 14.96 GiB + activations ... = total X GiB"
  std::string describe() const;
};

// Rows of logits computed at once when recording log-probs.
inline constexpr int kLogitRowBlock = 512;
// cuBLAS workspace the backend gives each handle.
inline constexpr std::size_t kCublasWorkspaceBytes = std::size_t{32} << 20;

// Element counts of every device buffer of the CUDA backend for passes of up to n_tokens
// positions; the backend allocates exactly these, and the plan is their sum in bytes.
struct GpuLayout {
  int n_tokens = 0;           // N: rows of every activation buffer
  int kv_layers = 0;          // layers of K/V held on the device
  std::size_t qkv_dim = 0;    // (H + 2 Hkv) d: rows of the stacked [wq; wk; wv]
  // Weights (per layer, storage type unless noted).
  std::size_t w_qkv = 0, w_o = 0, w_gate_up = 0, w_down = 0;
  std::size_t layer_f32 = 0;  // attn_norm, ffn_norm, stacked qkv bias (fp32)
  std::size_t classifier = 0; // [V, D]
  // Activations (one layer): x residual [N, D] fp32, xn normed [N, D], qkv [N, (H + 2 Hkv) d]
  // fp32, att attention output [N, H d], row_lse softmax log-sum-exp [H, N] fp32, gate_up
  // [N, 2F] fp32, mlp [N, F].
  std::size_t x = 0, xn = 0, qkv = 0, att = 0, row_lse = 0, gate_up = 0, mlp = 0;
  // K or V of one layer [Hkv, N, d]; queries of one layer [H, N, d]; column sums [H, N].
  std::size_t kv_one = 0, q_one = 0, colsum_one = 0;
  std::size_t logits = 0;     // [min(N, kLogitRowBlock), V] fp32
  std::size_t rope = 0;       // cos and sin tables [N, d/2] fp32 each
  std::size_t topk = 0;       // [N, K] ids and logits (bound: continuation rows <= N)
};

// kv_layers: layers of K/V held on the device (2 when recording, n_layers for a decode
// sequence); topk: the recording's K (0 when not recording).
GpuLayout gpu_layout(const ModelConfig& config, int n_tokens, int kv_layers, int topk);
GpuMemoryPlan plan_gpu_memory(const GpuLayout& layout, const ModelConfig& config, Precision precision);
GpuMemoryPlan plan_gpu_memory(const ModelConfig& config, int n_tokens, Precision precision, int kv_layers, int topk);

// Throws DeviceError naming the device, the plan and the shortfall when the plan does not
// fit in free_bytes (keeping a 5% reserve for the CUDA context and fragmentation).
void require_fits(const GpuMemoryPlan& plan, std::size_t free_bytes, const std::string& device);

}  // namespace kvsim
