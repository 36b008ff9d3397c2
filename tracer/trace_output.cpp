#include "tracer/trace_output.hpp"

#include <chrono>
#include <cstdint>
#include <cstdio>

#include "tracer/recorder.hpp"

namespace kvsim {

ModelInfo trace_model_info(const Model& m) {
  const ModelConfig& c = m.config;
  ModelInfo info;
  info.arch = c.arch;
  info.n_layers = c.n_layers;
  info.n_heads = c.n_heads;
  info.n_kv_heads = c.n_kv_heads;
  info.head_dim = c.head_dim;
  info.hidden = c.hidden;
  info.vocab = c.vocab;
  info.rope_theta = c.rope_theta;
  info.rope_style = rope_style_name(c.rope_style);
  info.norm_eps = c.norm_eps;
  info.source = m.source;
  return info;
}

std::vector<float> trace_w_o(const Model& m) {
  std::vector<float> w_o;
  for (const auto& l : m.layers) w_o.insert(w_o.end(), l.wo.data(), l.wo.data() + l.wo.size());
  return w_o;
}

std::vector<float> trace_final_norm(const Model& m) {
  return {m.final_norm.data(), m.final_norm.data() + m.final_norm.size()};
}

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

}  // namespace

void TraceWriterSink::layer(int l, const LayerView& view) {
  const auto t0 = Clock::now();
  writer_.write_layer(l, view);
  seconds_ += seconds_since(t0);
}

void TraceWriterSink::outputs(const PromptOutputs& outputs) {
  const auto t0 = Clock::now();
  if (residual_) {
    writer_.end_prompt(outputs);
  } else {
    PromptOutputs without = outputs;
    without.cont_residual.clear();
    writer_.end_prompt(without);
  }
  seconds_ += seconds_since(t0);
}

std::string trace_prompt_id(std::size_t index) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%06zu", index);
  return buf;
}

double trace_prompt(TraceWriter& writer, const PromptSpec& prompt, std::size_t index, const RecordOptions& options,
                    const std::function<void(PromptSink&)>& record, bool residual) {
  const PromptMeta meta{.id = trace_prompt_id(index),
                        .n_prompt = prompt.n_prompt,
                        .n_cont = static_cast<int>(prompt.tokens.size()) - prompt.n_prompt,
                        .window = options.window_for(prompt.n_prompt),
                        .topk = options.topk,
                        .task = prompt.task,
                        .source = prompt.source,
                        .sample_id = prompt.sample_id,
                        .truncated_from = prompt.truncated_from,
                        .answers = prompt.answers,
                        .scorer = prompt.scorer};
  writer.begin_prompt(meta, std::vector<std::int32_t>(prompt.tokens.begin(), prompt.tokens.end()));
  TraceWriterSink sink(writer, residual);
  record(sink);
  return sink.seconds();
}

TraceFileResult trace_prompts(const ForwardBackend& backend, std::span<const PromptSpec> prompts,
                              const std::filesystem::path& out, const TraceFileOptions& options) {
  const Model& model = backend.model();
  TraceProducer producer = options.producer;
  producer.backend = backend.name();
  TraceWriter writer(out, trace_model_info(model), producer, trace_w_o(model), trace_final_norm(model), options.writer);
  if (options.logit_data) {
    const MatrixRM& classifier = model.output_matrix();
    writer.write_classifier(std::span<const float>(classifier.data(), static_cast<std::size_t>(classifier.size())));
  }
  TraceFileResult result;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    const PromptSpec& p = prompts[i];
    if (writer.has_prompt(trace_prompt_id(i))) {
      ++result.resumed;
      continue;
    }
    const auto t0 = Clock::now();
    result.writer_seconds += trace_prompt(
        writer, p, i, options.record,
        [&](PromptSink& sink) { record_prompt(backend, p.tokens, p.n_prompt, options.record, sink); }, options.logit_data);
    result.record_seconds += seconds_since(t0);
    ++result.traced;
    result.tokens += p.tokens.size();
    if (options.progress) options.progress(TraceProgress{i + 1, result.tokens, result.record_seconds});
  }
  writer.finish();
  return result;
}

}  // namespace kvsim
