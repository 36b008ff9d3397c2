#pragma once
// Reads a kvsim trace (format v1 to v3, docs/trace-format.md) one (prompt, layer) at a time, so
// memory does not grow with the number of prompts. Every read checks shapes against the
// metadata and rejects NaN/Inf. Methods may be called from several threads: HDF5 calls are
// serialized on the library lock (traces/hdf5_handle.hpp), conversions run outside it.
#include <cstddef>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "traces/trace_types.hpp"

namespace kvsim {
namespace h5 {
enum class Integrity;
}

class TraceReader {
 public:
  // Opens read-only. Throws TraceError for a missing, non-HDF5 or truncated file, another
  // format, an unsupported format_version, or bad /model metadata.
  explicit TraceReader(std::filesystem::path path);
  // The same on a trace file's bytes held in memory (HDF5's core driver on a file image, no
  // file touched; the fuzz target feeds inputs this way). `label` stands for the path in errors
  // and path(); it must not name an existing file (the core driver refuses to open an image
  // under the name of one).
  TraceReader(std::span<const std::byte> image, std::string label);
  TraceReader(const TraceReader&) = delete;
  TraceReader& operator=(const TraceReader&) = delete;
  ~TraceReader();

  const std::filesystem::path& path() const { return path_; }
  const ModelInfo& model() const { return model_; }
  const TraceProducer& producer() const { return producer_; }
  int format_version() const { return version_; }
  // True from format_version 3: HDF5 verifies checksums of the metadata and of every dataset's
  // data, so a corrupted file is a TraceError; versions 1 and 2 carry none (docs/trace-format.md).
  bool has_checksums() const { return version_ >= kFirstChecksumVersion; }
  // Element type of keys, values, q_window, q_cont: fp16 in version 1, the root attribute
  // `storage` from version 2. read_layer converts every storage to fp32.
  KvStorage storage() const { return storage_; }
  // An index file (`mpirun -np N kvsim trace`, traces/trace_index.hpp): its parts as the root
  // attribute `parts` names them (relative to the index's directory), in rank order; empty for a
  // single trace. part_paths(): the same resolved against the index's directory.
  const std::vector<std::string>& parts() const { return parts_; }
  std::vector<std::filesystem::path> part_paths() const;
  // Complete prompts only, sorted by id; prompt_index below indexes this vector.
  const std::vector<PromptMeta>& prompts() const { return prompts_; }

  // cont_residual is read when the prompt has it (optional dataset), else left empty.
  PromptOutputs read_outputs(std::size_t prompt_index) const;
  // K/V/Q converted from the trace's storage (fp16, bf16, fp32) to fp32.
  LayerRecord read_layer(std::size_t prompt_index, int layer) const;
  // [hidden, n_heads*head_dim] of one layer.
  std::vector<float> read_w_o(int layer) const;
  // [hidden]
  std::vector<float> read_final_norm() const;
  // Optional /model/classifier [vocab, hidden]; read_classifier throws TraceError when absent.
  bool has_classifier() const;
  std::vector<float> read_classifier() const;
  // `name` is relative to /prompts/<id>, e.g. "cont_logprob" or "layers/0/keys".
  bool has_dataset(std::size_t prompt_index, std::string_view name) const;

 private:
  struct Impl;
  // The metadata checks and the prompt index, once the file is open (both constructors).
  void read_metadata();
  const PromptMeta& prompt(std::size_t prompt_index) const;
  void check_layer(int layer) const;
  h5::Integrity integrity() const;

  std::filesystem::path path_;
  std::string file_label_;
  ModelInfo model_;
  TraceProducer producer_;
  int version_ = 0;
  KvStorage storage_ = KvStorage::kFp16;
  int integrity_ = 0;  // an h5::Integrity (traces/hdf5_io.hpp), kept out of this header
  std::vector<PromptMeta> prompts_;
  std::vector<std::string> parts_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvsim
