#pragma once
// Exact continuation re-decode (docs/metrics.md, fidelity mode): the M continuation tokens are
// decoded for real, teacher-forced, in one batched forward over x_T..x_{T+M−2}, against the
// compressed prompt cache — the prompt's keys/values restricted to a kept set per (layer, KV
// head) — with the continuation's own keys/values recomputed (under compression its hidden
// states change) and never evicted. No prefill rerun: the prompt K/V come from the trace
// (fp16-rounded) or from memory (fp32). The forward is the tracer's own (CpuForward with
// ForwardOptions::keep), one model library.
//
// Scored tokens: x_{T+1} .. x_{T+M−1} (M−1 of them). x_T is predicted by the last prompt
// position, which prefill computes with the full cache: compression cannot change it.
// Δ-NLL is against the same computation with every prompt token kept, so a full kept set
// gives exactly 0.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "policies/selection.hpp"
#include "traces/trace_reader.hpp"
#include "tracer/cpu_forward.hpp"

namespace kvsim {

// The prompt's keys/values an exact decode attends to. Per layer [Hkv, stride, d] (stride >= T:
// the trace's layout [Hkv, T+M, d] is used as is); the first T rows of each KV head are read.
struct PromptCache {
  int T = 0;
  int stride = 0;
  std::vector<std::vector<float>> keys, values;  // [L][Hkv, stride, d]
};

// The first T positions of a forward's cache as a PromptCache (fp32; stride = the cache's
// capacity): exact decoding or generation from memory, without a trace.
PromptCache prompt_cache(const ModelConfig& config, const KvCache& kv, int T);

// Throws InputError (message starting with `who`) when the cache does not fit the model's
// shape [L][Hkv, stride, d] or has T < 1 or stride < T.
void check_prompt_cache(const ModelConfig& config, const PromptCache& cache, const char* who);

struct ExactResult {
  double nll = 0;        // mean over the scored tokens of −log p(x_{T+j}), nats per token
  double delta_nll = 0;  // nll − reference nll (every prompt token kept)
  double kl = 0;         // mean over scored positions of KL(full ‖ compressed), nats
  std::vector<double> nll_pos;  // [M−1] per scored token j = 1..M−1
  std::vector<double> kl_pos;   // [M−1]
};

class ExactDecoder {
 public:
  // cont: the M continuation tokens x_T..x_{T+M−1} (M >= 2). Runs the reference decode.
  ExactDecoder(const CpuForward& fwd, PromptCache cache, std::vector<int> cont);
  // keep: [L, Hkv, T] flags (nonzero = kept). Const and thread-safe: callers run many in
  // parallel; the result does not depend on the thread count. A mask that keeps everything
  // returns the reference itself (the computation would give the same bytes).
  ExactResult decode(std::span<const std::uint8_t> keep) const;
  const ExactResult& reference() const { return reference_; }
  int T() const { return cache_.T; }
  // The prompt cache, for a GreedyGenerator (sim/generate.hpp) to share.
  const PromptCache& cache() const { return cache_; }
  int M() const { return static_cast<int>(cont_.size()); }
  // Floating point operations of one decode (forward over M−1 tokens + classifier), approximate.
  double flops_per_decode() const;
  // Memory held: the prompt K/V and the reference log-probs (for callers that cap a cache).
  std::size_t bytes() const;

 private:
  ExactResult run(std::span<const std::uint8_t> keep, std::vector<double>* logprob_out) const;

  const CpuForward& fwd_;
  PromptCache cache_;
  std::vector<int> cont_;
  std::vector<double> ref_logprob_;  // [M−1, V] reference log-softmax
  ExactResult reference_;
};

// Keep flags [L, Hkv, T] of budget b of a selection.
std::vector<std::uint8_t> keep_mask(const Selection& selection, int b);

// Throws InputError when `model` is not the model the trace was recorded with (shape, RoPE,
// or the output projection W_O of layer 0 differs bit for bit).
void check_model_matches(const Model& model, const TraceReader& reader);
// Its two halves, for callers that hold the trace's W_O already (TraceSet): the shape and RoPE,
// and the weights against layer 0's W_O as read from the trace ([hidden, n_heads*head_dim]).
void check_model_shape(const Model& model, const TraceReader& reader);
void check_model_weights(const Model& model, const TraceReader& reader, const std::vector<float>& trace_w_o_layer0);

// The decoder of one prompt of a trace: its prompt K/V (fp16 → fp32) and continuation tokens.
// Needs n_cont >= 2.
ExactDecoder exact_decoder(const CpuForward& fwd, const TraceReader& reader, std::size_t prompt);
// The same from the prompt as already read (TraceSet::read_prompt): keys and values [L][Hkv,
// T+M, d] and its outputs, so the prompt is not read again.
ExactDecoder exact_decoder(const CpuForward& fwd, const TraceReader& reader, std::size_t prompt,
                           std::vector<std::vector<float>> keys, std::vector<std::vector<float>> values,
                           const PromptOutputs& outputs);

// Exact Δ-NLL (nats per scored token) of budget b of a selection: the reward a compiler can
// use per (prompt, policy, budget) — decoder from exact_decoder() for the prompt.
double exact_delta_nll(const ExactDecoder& decoder, const Selection& selection, int b);

// Exact results of every (policy, budget): [P, B], in parallel over the P·B jobs (oneTBB).
std::vector<ExactResult> exact_sweep(const ExactDecoder& decoder, const std::vector<Selection>& selections);

}  // namespace kvsim
