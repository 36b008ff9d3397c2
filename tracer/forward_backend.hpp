#pragma once
// What the tracer needs from a forward pass, whatever runs it: the CPU reference
// (tracer/cpu_forward.hpp) or the CUDA backend (tracer/cuda_backend.hpp). Two operations:
// record one prompt (a single batched prefill, handing the tensors of docs/trace-format.md to a sink) and
// decode step by step (greedy generation, exact re-decode).
#include <algorithm>
#include <memory>
#include <span>
#include <vector>

#include "traces/trace_types.hpp"
#include "tracer/model.hpp"

namespace kvsim {

struct RecordOptions {
  int window = 32;  // W: query rows T-W..T-1 recorded (clamped to T)
  int topk = 64;    // K logits kept per continuation position
  // The window recorded for a prompt of n_prompt tokens.
  int window_for(int n_prompt) const { return std::min(window, n_prompt); }
};

// Receives one prompt's recording: layer(l) for l = 0..L-1 in order, then outputs() once.
// The views are valid only during the call.
class PromptSink {
 public:
  virtual ~PromptSink() = default;
  virtual void layer(int l, const LayerView& view) = 0;
  virtual void outputs(const PromptOutputs& outputs) = 0;
};

// A validated recording request: T prompt tokens + M continuation tokens, window W <= T,
// top-K with K <= vocab.
struct RecordShape {
  int T = 0, M = 0, W = 0, K = 0;
  int n_tokens() const { return T + M; }
};

// Throws InputError for an empty prompt, a prompt longer than the tokens, a non-positive
// window or a top-K outside [1, vocab].
RecordShape record_shape(const ModelConfig& config, int n_tokens, int n_prompt, const RecordOptions& options);

// One sequence being decoded: a KV cache with room for a fixed number of positions.
class DecodeSequence {
 public:
  virtual ~DecodeSequence() = default;
  // Runs tokens at the next positions (one batched pass); returns the last position's
  // logits [V].
  virtual std::vector<float> append(std::span<const int> tokens) = 0;
};

// Backends are used by one thread at a time (a backend may own device workspace).
class ForwardBackend {
 public:
  virtual ~ForwardBackend() = default;
  virtual const Model& model() const = 0;
  // "cpu" | "cuda": recorded as the trace producer's backend.
  virtual const char* name() const = 0;
  // One prefill over tokens [shape.n_tokens()] (prompt then continuation), recorded into sink.
  virtual void record(std::span<const int> tokens, const RecordShape& shape, PromptSink& sink) const = 0;
  // A new sequence with room for `capacity` positions.
  virtual std::unique_ptr<DecodeSequence> start(int capacity) const = 0;
};

// Greedy decoding: feeds prompt, then appends argmax tokens (lowest id on ties) until max_new
// tokens or stop_id.
std::vector<int> greedy_generate(const ForwardBackend& backend, std::span<const int> prompt, int max_new, int stop_id);

}  // namespace kvsim
