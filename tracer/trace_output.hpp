#pragma once
// Tracing a list of prompts into a trace file: what a trace stores about the model it was
// recorded with (taken from a loaded Model), the one path from a PromptSpec to a prompt of the
// trace (its id, its PromptMeta with the window and top-K of RecordOptions, its tokens as int32)
// and the function that traces every prompt. One copy for `kvsim trace`, the benches, the test
// fixtures and the synthetic traces (sim/synthetic.cpp).
#include <cstddef>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "traces/trace_writer.hpp"
#include "tracer/forward_backend.hpp"
#include "tracer/inputs.hpp"
#include "tracer/model.hpp"

namespace kvsim {

// /model attributes: shape, RoPE, norm epsilon and m.source.
ModelInfo trace_model_info(const Model& m);
// /model/w_o: every layer's output projection, [L, hidden, n_heads·head_dim] row-major.
std::vector<float> trace_w_o(const Model& m);
// /model/final_norm: [hidden].
std::vector<float> trace_final_norm(const Model& m);

// Writes each recorded layer and the prompt's outputs as they arrive (without
// PromptOutputs::cont_residual when `residual` is false), and times the writer's work.
class TraceWriterSink : public PromptSink {
 public:
  explicit TraceWriterSink(TraceWriter& writer, bool residual = true) : writer_(writer), residual_(residual) {}
  void layer(int l, const LayerView& view) override;
  void outputs(const PromptOutputs& outputs) override;
  double seconds() const { return seconds_; }  // inside the writer so far

 private:
  TraceWriter& writer_;
  bool residual_;
  double seconds_ = 0;
};

// The id of a trace's index-th prompt: its group name under /prompts, "000003".
std::string trace_prompt_id(std::size_t index);

// One prompt into `writer`, as prompt trace_prompt_id(index): begins it with the prompt's
// metadata, window (options.window clamped to T, as the recording clamps it) and top-K, then
// `record` hands its layers and outputs to the sink it is given, a TraceWriterSink on `writer`.
// Returns the seconds spent inside the writer.
double trace_prompt(TraceWriter& writer, const PromptSpec& prompt, std::size_t index, const RecordOptions& options,
                  const std::function<void(PromptSink&)>& record, bool residual = true);

// Where trace_prompts is after each prompt it records.
struct TraceProgress {
  std::size_t done = 0;     // prompts handled, the resumed ones included (index + 1)
  std::size_t tokens = 0;   // tokens recorded by this call so far
  double seconds = 0;       // since the first prompt began
};

struct TraceFileOptions {
  RecordOptions record;     // window W and top-K K of every prompt: set here, nowhere else
  WriterOptions writer;     // storage, deflate level, overwrite, value norms
  TraceProducer producer;   // version, git sha, creation time; the backend's name is filled in
  // /model/classifier and every prompt's cont_residual (the logit-space estimate's data); false
  // writes neither, as kvsim did before they existed (tests of such traces).
  bool logit_data = true;
  std::function<void(const TraceProgress&)> progress;  // after each prompt recorded
};

struct TraceFileResult {
  std::size_t traced = 0;   // prompts recorded by this call
  std::size_t resumed = 0;  // prompts an interrupted run had completed in OUT.partial, skipped
  std::size_t tokens = 0;   // tokens recorded by this call
  double record_seconds = 0;  // wall time from each prompt's begin to its end, summed
  double writer_seconds = 0;  // of which inside the writer (layers and outputs)
};

// Records every prompt through `backend` (one prefill each: record_prompt) into the trace file
// `out`, prompt i as trace_prompt_id(i), with the model's W_O, final norm and classifier. The
// write is atomic (OUT.partial, renamed when complete); the complete prompts of an interrupted
// run's OUT.partial are kept and skipped.
//
// In an MPI job of N > 1 ranks (core/dist.hpp; every rank calls it with the same prompts) the
// prompts are handed out to the ranks, each records its own into the part
// trace_parts_dir(out) / trace_part_name(rank, N), and rank 0 writes `out` as the index of the
// parts (traces/trace_index.hpp). Resuming keeps the complete prompts of every part's .partial;
// parts of a run on another number of ranks are an InputError (also in a world of one), unless
// options.writer.overwrite, which removes them (with N > 1: before starting, with OUT). The
// progress callback runs on rank 0, prompts counted in index order as rank 0 receives them,
// seconds of wall time. The result counts every rank's prompts on rank 0; the other ranks get
// `resumed` only.
TraceFileResult trace_prompts(const ForwardBackend& backend, std::span<const PromptSpec> prompts,
                              const std::filesystem::path& out, const TraceFileOptions& options);

// OUT.parts: the directory of the parts of an MPI trace.
std::filesystem::path trace_parts_dir(const std::filesystem::path& out);
// "part-001-of-003.h5"
std::string trace_part_name(int rank, int ranks);

}  // namespace kvsim
