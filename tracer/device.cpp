#include "tracer/device.hpp"

#include <algorithm>
#include <cstdio>

#include "core/error.hpp"

namespace kvsim {

Device parse_device(const std::string& s) {
  if (s == "cpu") return Device::kCpu;
  if (s == "cuda") return Device::kCuda;
  fail<InputError>("--device: unknown device '", s, "' (choose cpu or cuda)");
}

Precision parse_precision(const std::string& s) {
  if (s == "fp32") return Precision::kFp32;
  if (s == "bf16") return Precision::kBf16;
  if (s == "fp16") return Precision::kFp16;
  fail<InputError>("--precision: unknown precision '", s, "' (choose fp32, bf16 or fp16)");
}

const char* device_name(Device d) { return d == Device::kCpu ? "cpu" : "cuda"; }

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::kFp32: return "fp32";
    case Precision::kBf16: return "bf16";
    case Precision::kFp16: return "fp16";
  }
  return "?";
}

std::size_t precision_bytes(Precision p) { return p == Precision::kFp32 ? 4 : 2; }

GpuLayout gpu_layout(const ModelConfig& c, int n_tokens, int kv_layers, int topk) {
  using Z = std::size_t;
  GpuLayout g;
  const Z N = n_tokens, D = c.hidden, F = c.ffn_hidden, V = c.vocab, d = c.head_dim;
  const Z H = c.n_heads, Hkv = c.n_kv_heads;
  g.n_tokens = n_tokens;
  g.kv_layers = kv_layers;
  g.qkv_dim = (H + 2 * Hkv) * d;
  g.w_qkv = g.qkv_dim * D;
  g.w_o = D * H * d;
  g.w_gate_up = 2 * F * D;
  g.w_down = D * F;
  g.layer_f32 = 2 * D + (c.qkv_bias ? g.qkv_dim : 0);
  g.classifier = V * D;
  g.x = N * D;
  g.xn = N * D;
  g.qkv = N * g.qkv_dim;
  g.att = N * H * d;
  g.row_lse = H * N;
  g.gate_up = N * 2 * F;
  g.mlp = N * F;
  g.kv_one = Hkv * N * d;
  g.q_one = H * N * d;
  g.colsum_one = H * N;
  g.logits = std::min<Z>(N, kLogitRowBlock) * V;
  g.rope = 2 * N * (d / 2);
  g.topk = N * static_cast<Z>(std::max(topk, 0));
  return g;
}

GpuMemoryPlan plan_gpu_memory(const GpuLayout& g, const ModelConfig& c, Precision precision) {
  const std::size_t s = precision_bytes(precision), f = 4, L = c.n_layers, N = g.n_tokens;
  GpuMemoryPlan p;
  p.weights = L * ((g.w_qkv + g.w_o + g.w_gate_up + g.w_down) * s + g.layer_f32 * f) + g.classifier * s +
              static_cast<std::size_t>(c.hidden) * f;
  p.activations = (g.x + g.qkv + g.row_lse + g.gate_up) * f + (g.xn + g.att + g.mlp) * s;
  p.kv_cache = static_cast<std::size_t>(g.kv_layers) * 2 * g.kv_one * s;
  // Two sets (double buffering) of queries and column sums; per-row log-prob, logsumexp and
  // target id; top-K ids and logits.
  p.recording = 2 * (g.q_one * s + g.colsum_one * f) + 3 * N * f + 2 * g.topk * f;
  p.logits = g.logits * f;
  p.workspace = kCublasWorkspaceBytes + g.rope * f;
  // Two sets of one layer's K, V, queries (at most N rows in window + continuation) and
  // column sums, plus fp32 staging for the residual stream's upload.
  p.pinned_host = 2 * ((2 * g.kv_one + g.q_one) * s + g.colsum_one * f) + g.x * f;
  return p;
}

GpuMemoryPlan plan_gpu_memory(const ModelConfig& config, int n_tokens, Precision precision, int kv_layers, int topk) {
  return plan_gpu_memory(gpu_layout(config, n_tokens, kv_layers, topk), config, precision);
}

namespace {
std::string gib(std::size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(bytes) / (1ull << 30));
  return buf;
}
}  // namespace

std::string GpuMemoryPlan::describe() const {
  return "weights " + gib(weights) + " + activations " + gib(activations) + " + KV " + gib(kv_cache) +
         " + recording " + gib(recording) + " + logits " + gib(logits) + " + workspace " + gib(workspace) + " = " +
         gib(device_total());
}

void require_fits(const GpuMemoryPlan& plan, std::size_t free_bytes, const std::string& device) {
  const std::size_t usable = free_bytes - free_bytes / 20;
  if (plan.device_total() <= usable) return;
  fail<DeviceError>(device, ": not enough device memory: the CUDA tracer needs ", plan.describe(), ", ",
                    gib(usable), " usable of ", gib(free_bytes), " free (shorter prompts: --prompt-len/--max-len; ",
                    "a smaller model; or --precision bf16)");
}

}  // namespace kvsim
