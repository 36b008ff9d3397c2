#pragma once
// Records one prompt: a single batched prefill over prompt + teacher-forced continuation
// (T + M tokens), then what DESIGN.md §3 lists, handed to a sink (the trace writer, or a test).
#include <span>

#include "traces/trace_types.hpp"
#include "tracer/cpu_forward.hpp"

namespace kvsim {

struct RecordOptions {
  int window = 32;  // W: query rows T-W..T-1 recorded (clamped to T)
  int topk = 64;    // K logits kept per continuation position
};

class PromptSink {
 public:
  virtual ~PromptSink() = default;
  virtual void layer(int l, const LayerView& view) = 0;
  virtual void outputs(const PromptOutputs& outputs) = 0;
};

// tokens = prompt (first n_prompt) + continuation. Calls sink.layer for l = 0..L-1 in order,
// then sink.outputs once. Returns the window actually used (min(window, T)).
int record_prompt(const CpuForward& fwd, std::span<const int> tokens, int n_prompt, const RecordOptions& options,
                  PromptSink& sink);

}  // namespace kvsim
