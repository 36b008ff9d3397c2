#pragma once
// Streams a kvsim trace (format v3, checksummed: docs/trace-format.md) to disk one (prompt, layer) at a time.
//
// Atomic: everything goes to `path + ".partial"`; finish() renames it to `path`, so a file at
// `path` is always a complete trace. Resumable: a writer constructed on an existing .partial
// of the same model keeps its complete prompts (has_prompt() tells the tracer which to skip)
// and deletes the half-written ones. Not thread-safe per object: one tracer drives one writer.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "core/half.hpp"
#include "traces/trace_types.hpp"

namespace kvsim {

struct WriterOptions {
  int compression_level = 4;  // deflate 0..9; 0 stores uncompressed
  bool shuffle = true;        // byte shuffle before deflate (only with compression)
  bool overwrite = false;     // start fresh even when a .partial exists (its data is lost)
  // Element type of keys, values, q_window, q_cont, named by the root attribute `storage`
  // (every storage writes format_version 3).
  KvStorage storage = KvStorage::kFp16;
  // Record each layer's `value_wo_l1` [n_heads, T] (core/value_norm.hpp: criticalkv's ‖W_O^h v_i‖₁,
  // computed from the values as stored) unless the producer supplies it in LayerView. Costs
  // 2·T·H·d·D flops per layer at write time, saved in every replay of a criticalkv policy.
  bool value_norms = true;
};

class TraceWriter {
 public:
  // w_o [L, hidden, n_heads*head_dim], final_norm [hidden]. created_utc is filled with the
  // current time when empty. Throws TraceError when a .partial exists that cannot be resumed.
  TraceWriter(std::filesystem::path path, const ModelInfo& model, const TraceProducer& producer,
              std::span<const float> w_o, std::span<const float> final_norm, WriterOptions options = {});
  TraceWriter(const TraceWriter&) = delete;
  TraceWriter& operator=(const TraceWriter&) = delete;
  // Without finish(): closes the file and leaves the .partial for a later resume.
  ~TraceWriter();

  // Optional /model/classifier [vocab, hidden] (the output matrix, for the logit-space Δ-NLL
  // estimate). Written once; a resumed file that already has it is left alone.
  void write_classifier(std::span<const float> classifier);

  // True when prompt `id` is complete in the file (written now or before a resume).
  bool has_prompt(const std::string& id) const;
  // True when this writer reopened an existing .partial.
  bool resumed() const { return resumed_; }
  const std::filesystem::path& partial_path() const { return partial_path_; }

  // tokens [T+M]. Starts group /prompts/<meta.id> (complete=0 until end_prompt).
  void begin_prompt(const PromptMeta& meta, std::span<const std::int32_t> tokens);
  // Each layer 0..L-1 once, in any order, between begin_prompt and end_prompt.
  void write_layer(int layer, const LayerView& view);
  // Writes the per-prompt vectors (outputs.tokens may be empty; if not it must equal the
  // tokens given to begin_prompt; outputs.cont_residual is written when not empty), marks the prompt complete and flushes the file.
  void end_prompt(const PromptOutputs& outputs);

  // Closes the file and renames .partial -> path (replacing an existing file at path).
  void finish();

 private:
  struct Impl;
  void create_fresh(const TraceProducer& producer, std::span<const float> w_o, std::span<const float> final_norm);
  void resume();
  void require_open(const char* what) const;
  std::vector<float> value_norms_as_stored(int layer, std::span<const float> values) const;

  std::filesystem::path path_;
  std::filesystem::path partial_path_;
  std::string file_label_;  // partial path as text, for messages
  ModelInfo model_;
  WriterOptions options_;
  bool resumed_ = false;
  bool finished_ = false;
  std::set<std::string> complete_;
  std::unique_ptr<Impl> impl_;  // HDF5 handles: keeps <hdf5.h> out of this header
  std::vector<float> w_o_;      // [L, hidden, n_heads*head_dim] for value_wo_l1; empty without value_norms

  // State of the prompt between begin_prompt and end_prompt.
  PromptMeta current_;
  bool in_prompt_ = false;
  std::vector<std::int32_t> current_tokens_;
  std::vector<bool> layers_done_;
  std::vector<std::uint16_t> bits_buffer_;  // fp16 / bf16 bits, reused across layers
};

}  // namespace kvsim
