#include "tracer/recorder.hpp"

namespace kvsim {

int record_prompt(const ForwardBackend& backend, std::span<const int> tokens, int n_prompt,
                  const RecordOptions& options, PromptSink& sink) {
  const RecordShape shape = record_shape(backend.model().config, static_cast<int>(tokens.size()), n_prompt, options);
  backend.record(tokens, shape, sink);
  return shape.W;
}

}  // namespace kvsim
