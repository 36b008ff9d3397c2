#pragma once
// In-memory records of a kvsim trace (format v1 to v3, docs/trace-format.md). Layouts are written
// once, in brackets, in memory order (row-major). Index letters: l layer, h query head,
// g KV head, i token, T prompt length, M continuation length, W window, d head_dim.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/layer_tensors.hpp"
#include "core/model_shape.hpp"

namespace kvsim {

inline constexpr const char* kTraceFormatName = "kvsim-trace";
// The format_version this kvsim writes (every storage), the newest it reads; it reads every
// version from 1.
inline constexpr int kTraceFormatVersion = 3;
// The first format_version whose files HDF5 checksums (docs/trace-format.md, "Checksums"):
// object headers and other metadata (file format 1.10), the data of every non-empty dataset
// (Fletcher-32), and attributes stored as fixed-length strings (no global heap to follow).
inline constexpr int kFirstChecksumVersion = 3;

// Element type of the keys, values, q_window and q_cont datasets (docs/trace-format.md,
// "Storage precision"). Version 1 is always fp16; version 2 (fp32, bf16) and version 3 (every
// storage) name it in the root attribute `storage` (a v1 reader would read fp32 or bf16 as fp16
// without noticing the precision).
enum class KvStorage { kFp16, kFp32, kBf16 };
inline constexpr int kFirstStorageVersion = 2;  // the first format_version with `storage`
const char* storage_name(KvStorage s);                // "fp16" | "fp32" | "bf16"
// "fp16" / "fp32" / "bf16" into out; false (out untouched) for any other text.
bool parse_storage(const std::string& text, KvStorage& out);
// The exponent bits of a 16-bit storage (fp16 / bf16): all ones is Inf or NaN.
inline std::uint16_t nonfinite_exponent(KvStorage s) { return s == KvStorage::kFp16 ? 0x7C00 : 0x7F80; }
// `value_wo_l1` holds L1 norms: TraceError "<file>: <object>: value x at flat index i is
// negative (an L1 norm)" at the first negative one (writer and reader).
void check_value_norms_non_negative(std::span<const float> norms, const std::string& file, const std::string& object);

// What the model looks like; stored once per trace under /model.
// The shape fields (n_layers, n_heads, n_kv_heads, head_dim, hidden) are ModelShape's.
struct ModelInfo : ModelShape {
  std::string arch;        // "llama" (Llama, Mistral, Qwen2 share the computation)
  int vocab = 0;
  double rope_theta = 10000.0;
  std::string rope_style;  // "interleaved" (llama2.c, GPT-J) | "rotate_half" (HF Llama)
  double norm_eps = 1e-5;
  std::string source;      // checkpoint path and a content hash, for provenance
};

// Root attributes: who wrote the file and when.
struct TraceProducer {
  std::string version;     // kvsim tool version
  std::string git_sha;
  std::string backend;     // "cpu" | "cuda"
  std::string created_utc; // ISO 8601
};

// Attributes of one prompt group /prompts/<id>.
struct PromptMeta {
  std::string id;          // group name under /prompts, e.g. "000003"
  int n_prompt = 0;        // T
  int n_cont = 0;          // M
  int window = 0;          // W (<= T)
  int topk = 0;            // K of cont_topk
  std::string task;        // e.g. "tinystories", "niah_multikey_3"
  std::string source;      // input file the prompt came from
  std::string sample_id;   // line / chunk index within the source
  int truncated_from = 0;  // prompt length before middle truncation (== T when none)
  // Optional (empty when the input had none, and in traces that predate them): the gold
  // answers a generated reply is scored against (RULER `outputs`, LongBench `answers`), and
  // the scorer's name (empty: chosen later by task).
  std::vector<std::string> answers;
  std::string scorer;
};

// One (prompt, layer)'s tensors: LayerView as the tracer hands them to the writer (fp32; the
// writer stores K/V/Q in WriterOptions::storage, IEEE half by default), LayerRecord as read back
// (converted to fp32): core/layer_tensors.hpp.

// Per-prompt vectors that are not per layer.
struct PromptOutputs {
  std::vector<std::int32_t> tokens;        // [T+M]
  std::vector<float> prompt_logprob;       // [T]; [0] = 0: the first token has no prediction
  std::vector<float> cont_logprob;         // [M]  log p(x_{T+j} | x_{<T+j}), full cache
  std::vector<std::int32_t> cont_topk_ids; // [M, K] top-K token ids at the position predicting x_{T+j}
  std::vector<float> cont_topk_logits;     // [M, K] their logits, descending
  std::vector<float> cont_logsumexp;       // [M] logsumexp of all logits at that position
  // Optional (empty when the trace predates it): the residual stream after the last layer,
  // before the final RMSNorm, at positions T..T+M-1 (the logit-space Δ-NLL estimate).
  std::vector<float> cont_residual;        // [M, hidden]
};

}  // namespace kvsim
