#pragma once
// What a trace stores about the model it was recorded with, taken from a loaded Model, and the
// sink that hands recorded prompts to a TraceWriter. One copy for `kvsim trace`, the benches
// and the test fixtures.
#include <vector>

#include "traces/trace_writer.hpp"
#include "tracer/forward_backend.hpp"
#include "tracer/model.hpp"

namespace kvsim {

// /model attributes: shape, RoPE, norm epsilon and m.source.
ModelInfo trace_model_info(const Model& m);
// /model/w_o: every layer's output projection, [L, hidden, n_heads·head_dim] row-major.
std::vector<float> trace_w_o(const Model& m);
// /model/final_norm: [hidden].
std::vector<float> trace_final_norm(const Model& m);

// Writes each recorded layer and the prompt's outputs as they arrive.
class TraceWriterSink : public PromptSink {
 public:
  explicit TraceWriterSink(TraceWriter& writer) : writer_(writer) {}
  void layer(int l, const LayerView& view) override { writer_.write_layer(l, view); }
  void outputs(const PromptOutputs& outputs) override { writer_.end_prompt(outputs); }

 private:
  TraceWriter& writer_;
};

}  // namespace kvsim
