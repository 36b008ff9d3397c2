#pragma once
// Free-running greedy generation from a compressed prompt cache: the text the real model
// writes when the prompt's KV cache is cut down to a policy's kept set at the end of prefill
// (the ground truth of the papers' generation benchmarks). One prompt, many jobs (policy ×
// budget), each with its own keep flags [L, Hkv, T] over the prompt positions; the
// continuation's own keys/values are never evicted.
//
// Each job decodes greedily: g0 (the full prefill's argmax at position T−1, which compression
// cannot change: `PromptOutputs::cont_topk_ids[0]` of a trace), then each generated token is
// fed at positions T, T+1, … attending to the job's kept prompt positions and to all of its
// own generated positions; the next token is the argmax of the logits, ties to the lowest id.
//
// Batched across jobs: at step t every job is at position T+t, so their hidden states are
// stacked [J, D] and each weight matrix is read once per step for the whole batch (one token of
// one job alone is a GEMV that reads every weight). The products are `linear_rowwise`
// (tracer/cpu_forward.hpp), not the prefill's Eigen GEMM (`linear`): it reads W once without
// packing, which Eigen's GEMM does on every call and which made a 2-job step cost 3-4 1-job
// steps; it is as fast as the GEMM at 96 rows. Attention runs per (job, KV head) in parallel
// (oneTBB) over precomputed index lists of the kept prompt positions plus the job's own tail
// of generated keys/values, gathered contiguous for Eigen's products as in the forward, so a
// budget of 512 of 4096 costs 1/8 of the full attention.
//
// Determinism: every value is computed by one task in a fixed order, and every step is
// row-wise with a fixed per-element arithmetic (embedding, RMSNorm, linear_rowwise, RoPE,
// SwiGLU through a padded buffer (tracer/layer_ops.cpp), the job's own attention), so a job's
// tokens depend on its keep flags alone: not on the thread count, the number of jobs, its
// index among them or the other jobs' tokens (tests/415: alone = inside a batch of 8).
// Finished jobs stay in the batch (their rows are computed and ignored; their attention is
// skipped), so a step's batch is always the whole job list.
//
// Against the reference (a fresh masked prefill then one-token CpuForward::forward calls with
// ForwardOptions::keep), the attention sums only the kept keys instead of masking all T, and
// the products sum in another order than Eigen's GEMV: the same tokens up to argmax near-ties
// (tests/415 checks token identity).
//
// Memory at peak, besides the model and the shared prompt cache (2·L·Hkv·T·d floats, never
// copied): the jobs' tails J·L·2·Hkv·(max_new−1)·d floats, kept index lists (4 bytes per kept
// (layer, KV head, position) of each compressed job; none for a full job), per worker thread
// a gathered context 2·(max kept per head + max_new)·d and scores G·(the same) floats, and
// activations of J rows: [J, 4D + 2·H·d + 2·Hkv·d + 2F + V] floats (the logits included).
// `peak_bytes` adds these up (for one worker). At SmolLM2-135M's shape (T 4096, J 96, max_new
// 16, budget 512): tails 66 MB, lists 18 MB, activations 22 MB, next to its 190 MB prompt cache.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "sim/exact_decode.hpp"
#include "tracer/cpu_forward.hpp"

namespace kvsim {

class GreedyGenerator {
 public:
  // cache: the prompt's post-RoPE keys/values (PromptCache of exact_decode.hpp), read, never
  // copied; it and fwd must outlive the generator. first: g0. stop: the ids that end a job
  // (EOS; for an instruct model its end-of-turn id, e.g. SmolLM2's <|im_end|>, which is its
  // tokenizer's eos_id()); may be empty. Throws InputError for a cache of another shape, or
  // first / a stop id outside the vocabulary.
  GreedyGenerator(const CpuForward& fwd, const PromptCache& cache, int first, std::vector<int> stop);

  // Greedy continuations of every job: result[j] holds at most max_new tokens, starting with
  // g0. A job ends after max_new tokens or when it produces a stop token, which is NOT
  // included (detokenizers see only text; an output shorter than max_new tells it stopped).
  // keeps[j]: flags [L, Hkv, T] (keep[(l·Hkv + g)·T + i] != 0 = kept), or empty = full
  // cache. Throws InputError naming the job for a mask of the wrong size, and for max_new < 0.
  // Const: one generator may serve several calls at once.
  std::vector<std::vector<int>> generate(std::span<const std::vector<std::uint8_t>> keeps, int max_new) const;

  // Floating point operations of one job producing new_tokens tokens (new_tokens − 1 forward
  // steps of one token, each with the classifier) when every (layer, KV head) keeps
  // kept_per_head prompt positions. Approximate: matrix products and attention only.
  double flops_per_job(int new_tokens, int kept_per_head) const;
  // Bytes generate() holds for `jobs` jobs besides the model and the prompt cache, with
  // kept_per_head kept prompt positions in every (layer, KV head) of every job (T: full).
  std::size_t peak_bytes(int jobs, int max_new, int kept_per_head) const;

  int T() const { return cache_.T; }
  int first() const { return first_; }

 private:
  const CpuForward& fwd_;
  const PromptCache& cache_;
  int first_;
  std::vector<int> stop_;
};

}  // namespace kvsim
