#include "tracer/trace_output.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <system_error>

#include "core/bytes.hpp"
#include "core/dist.hpp"
#include "core/hash.hpp"
#include "core/error.hpp"
#include "traces/trace_index.hpp"
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

namespace {

// The writer of `out` (or of a part), with the model's W_O, final norm and classifier.
std::unique_ptr<TraceWriter> open_trace_writer(const ForwardBackend& backend, const std::filesystem::path& out,
                                               const TraceFileOptions& options) {
  const Model& model = backend.model();
  TraceProducer producer = options.producer;
  producer.backend = backend.name();
  auto writer = std::make_unique<TraceWriter>(out, trace_model_info(model), producer, trace_w_o(model),
                                              trace_final_norm(model), options.writer);
  if (options.logit_data) {
    const MatrixRM& classifier = model.output_matrix();
    writer->write_classifier(std::span<const float>(classifier.data(), static_cast<std::size_t>(classifier.size())));
  }
  return writer;
}

struct PromptTimes {
  double record = 0;  // from begin to end
  double writer = 0;  // of which inside the writer
};

// Prompt `index` through `backend` (one prefill) into `writer`.
PromptTimes record_into(TraceWriter& writer, const ForwardBackend& backend, const PromptSpec& p, std::size_t index,
                        const TraceFileOptions& options) {
  const auto t0 = Clock::now();
  PromptTimes t;
  t.writer = trace_prompt(
      writer, p, index, options.record,
      [&](PromptSink& sink) { record_prompt(backend, p.tokens, p.n_prompt, options.record, sink); }, options.logit_data);
  t.record = seconds_since(t0);
  return t;
}

std::filesystem::path with_suffix(const std::filesystem::path& p, const char* suffix) {
  std::filesystem::path out = p;
  out += suffix;
  return out;
}

// A run on another number of ranks left its parts in `dir`: refused (the prompts are spread
// over its parts by its own hand-out; --overwrite starts over).
void check_parts_on_disk(const std::filesystem::path& dir, int ranks) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    int r = 0, n = 0;
    if (std::sscanf(name.c_str(), "part-%d-of-%d.h5", &r, &n) == 2 && n != ranks)
      fail<InputError>(dir.string(), ": holds ", name, ", a part of a trace run on ", n, n == 1 ? " rank" : " ranks",
                       "; this run has ", ranks, " (rerun it with mpirun -np ", n, ", or pass --overwrite to start over)");
  }
}

// `mpirun -np N kvsim trace`: every rank records the prompts it is handed into a part of its
// own, OUT.parts/part-R-of-N.h5 (a complete trace, resumable through its .partial like any);
// rank 0 then writes OUT as the index of the parts (traces/trace_index.hpp).
TraceFileResult trace_prompts_in_parts(const ForwardBackend& backend, std::span<const PromptSpec> prompts,
                                       const std::filesystem::path& out, const TraceFileOptions& options) {
  const int ranks = dist::size();
  {
    // Every rank loaded and tokenized the inputs itself: the same prompts, or the parts would
    // not make one trace.
    ByteWriter w;
    for (const PromptSpec& p : prompts) {
      w.put(p.tokens);
      w.put(p.n_prompt), w.put(p.task), w.put(p.source), w.put(p.sample_id), w.put(p.answers);
    }
    const std::string bytes = w.take();
    dist::require_same("list of prompts (inputs, tokenizer, options)", hash_bytes(bytes));
  }
  const std::filesystem::path dir = trace_parts_dir(out), out_partial = with_suffix(out, ".partial");
  std::vector<std::filesystem::path> parts;
  for (int r = 0; r < ranks; ++r) parts.push_back(dir / trace_part_name(r, ranks));
  const std::filesystem::path& part = parts[static_cast<std::size_t>(dist::rank())];
  std::error_code ec;
  if (options.writer.overwrite) {
    if (dist::is_root()) {
      std::filesystem::remove_all(dir);
      std::filesystem::remove(out_partial);
      std::filesystem::remove(out);  // an index of the parts just removed would point nowhere
    }
  } else {
    check_parts_on_disk(dir, ranks);
    // OUT.partial is the index an interrupted run was writing (rewritten), or a single process's
    // unfinished trace, whose prompts these ranks would not see.
    if (std::filesystem::exists(out_partial, ec) && trace_file_kind(out_partial) == TraceFileKind::kTrace)
      fail<InputError>(out_partial.string(), ": an unfinished trace of a run without mpirun; finish it that way, or "
                       "pass --overwrite to start over on ", ranks, " ranks");
  }
  dist::barrier();  // nothing removed from here on
  std::filesystem::create_directories(dir);
  // A part finished by a run that failed before its index was written: reopened, its prompts kept.
  const std::filesystem::path part_partial = with_suffix(part, ".partial");
  if (std::filesystem::exists(part, ec) && !std::filesystem::exists(part_partial, ec))
    std::filesystem::rename(part, part_partial);
  // Rank 0 writes its part from run_job's worker thread, and only there between this line and
  // finish(): creating that thread and joining it order the accesses, so the writer needs no lock.
  const std::unique_ptr<TraceWriter> writer = open_trace_writer(backend, part, options);

  // The prompts complete in some part (an interrupted run's) are kept; the others are handed out.
  std::string mine(prompts.size(), '0');
  for (std::size_t i = 0; i < prompts.size(); ++i)
    if (writer->has_prompt(trace_prompt_id(i))) mine[i] = '1';
  std::string complete(prompts.size(), '0');
  for (const std::string& m : dist::gather(mine))
    for (std::size_t i = 0; i < m.size() && i < complete.size(); ++i)
      if (m[i] == '1') complete[i] = '1';
  complete = dist::broadcast(complete);
  std::vector<std::size_t> todo;
  for (std::size_t i = 0; i < prompts.size(); ++i)
    if (complete[i] != '1') todo.push_back(i);

  TraceFileResult result;
  result.resumed = prompts.size() - todo.size();
  const auto t0 = Clock::now();
  dist::Job job;
  job.items = todo.size();
  job.compute = [&](std::size_t k) {
    const PromptTimes t = record_into(*writer, backend, prompts[todo[k]], todo[k], options);
    ByteWriter w;
    w.put(t.record);
    w.put(t.writer);
    return w.take();
  };
  job.deliver = [&](std::size_t k, std::string&& bytes) {
    ByteReader r(bytes);
    result.record_seconds += r.get<double>();
    result.writer_seconds += r.get<double>();
    ++result.traced;
    result.tokens += prompts[todo[k]].tokens.size();
    if (options.progress) options.progress(TraceProgress{result.resumed + k + 1, result.tokens, seconds_since(t0)});
  };
  job.label = [&](std::size_t k) { return out.string() + " prompt " + trace_prompt_id(todo[k]); };
  // A prefill costs about its tokens (more at long context; the order only needs to be right).
  job.cost = [&](std::size_t k) { return static_cast<double>(prompts[todo[k]].tokens.size()); };
  dist::run_job(job);

  writer->finish();
  dist::barrier();  // every part complete
  if (dist::is_root()) write_trace_index(out, parts);
  return result;
}

}  // namespace

std::filesystem::path trace_parts_dir(const std::filesystem::path& out) { return with_suffix(out, ".parts"); }

std::string trace_part_name(int rank, int ranks) {
  // Zero-padded to at least 3 digits, so that a listing sorts the parts in rank order.
  const int width = std::max(3, static_cast<int>(std::to_string(ranks).size()));
  char buf[64];
  std::snprintf(buf, sizeof buf, "part-%0*d-of-%0*d.h5", width, rank, width, ranks);
  return buf;
}

TraceFileResult trace_prompts(const ForwardBackend& backend, std::span<const PromptSpec> prompts,
                              const std::filesystem::path& out, const TraceFileOptions& options) {
  if (dist::size() > 1) return trace_prompts_in_parts(backend, prompts, out, options);
  const std::filesystem::path dir = trace_parts_dir(out);
  if (!options.writer.overwrite) check_parts_on_disk(dir, 1);
  const std::unique_ptr<TraceWriter> writer = open_trace_writer(backend, out, options);
  TraceFileResult result;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    const PromptSpec& p = prompts[i];
    if (writer->has_prompt(trace_prompt_id(i))) {
      ++result.resumed;
      continue;
    }
    const PromptTimes t = record_into(*writer, backend, p, i, options);
    result.record_seconds += t.record;
    result.writer_seconds += t.writer;
    ++result.traced;
    result.tokens += p.tokens.size();
    if (options.progress) options.progress(TraceProgress{i + 1, result.tokens, result.record_seconds});
  }
  writer->finish();
  // The parts of an earlier MPI run replaced (--overwrite): removed once OUT no longer needs them.
  std::error_code ec;
  if (options.writer.overwrite) std::filesystem::remove_all(dir, ec);
  return result;
}

}  // namespace kvsim
