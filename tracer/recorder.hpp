#pragma once
// Records one prompt: a single batched prefill over prompt + teacher-forced continuation
// (T + M tokens), then what docs/trace-format.md lists, handed to a sink (the trace writer, or a test).
// The backend (CPU or CUDA) does the work; this is the one entry point and its checks.
#include <span>

#include "traces/trace_types.hpp"
#include "tracer/cpu_forward.hpp"
#include "tracer/forward_backend.hpp"

namespace kvsim {

// tokens = prompt (first n_prompt) + continuation. Calls sink.layer for l = 0..L-1 in order,
// then sink.outputs once. Returns the window actually used (min(window, T)).
int record_prompt(const ForwardBackend& backend, std::span<const int> tokens, int n_prompt,
                  const RecordOptions& options, PromptSink& sink);

}  // namespace kvsim
