#pragma once
// One opened set of traces (issue 17): the one place every command (`kvsim run`, `validate`,
// `compile`, `diff`, `transfer`) opens its trace files, checks them, reads each trace's shared
// state once (W_O of every layer, the classifier, the final norm, the file hash when asked for)
// and reads each prompt. Replay (sim/replay.hpp) and EvalSet (tables/eval_set.hpp) hold one;
// per-trace state derived from it (packed W_O, W_O grams) stays with them, keyed by trace index.
// The work of a command is the list of (trace, prompt) items, in trace order then prompt order:
// the seam the scale-out work shards.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "policies/policy.hpp"
#include "policies/prompt_tensors.hpp"
#include "traces/trace_reader.hpp"

namespace kvsim {

// W_O of every layer of a trace's model: [L][D, H*d].
using TraceWO = std::vector<std::vector<float>>;

// One prompt as read from its trace, each dataset once: every layer (parallel over layers) and
// the per-prompt outputs (prompt_logprob also into the tensors when `needs` asks for it). No
// attention derived yet.
struct ReadPrompt {
  PromptTensors tensors;
  PromptOutputs outputs;
};

struct TraceItem {
  std::size_t trace = 0, prompt = 0;  // index into the set's traces, prompt index in that trace
};

class TraceSet {
 public:
  // Checks run while the set is built, per trace in order, so errors come in the order a
  // command has always reported them: `opened` right after the file is opened (before anything
  // else is read from it), `loaded` once its shared state is read. Either may be empty.
  struct Checks {
    std::function<void(std::size_t trace, const TraceReader&)> opened;
    std::function<void(std::size_t trace, const TraceReader&, const TraceWO& w_o)> loaded;
  };
  // Opens every trace (TraceError naming the file), runs the checks, reads the shared state.
  // `hash_files`: also the XXH3 of every trace (hash(): trace_content_hash, which covers an
  // index file's parts).
  TraceSet(std::vector<std::filesystem::path> paths, const Checks& checks = {}, bool hash_files = false);
  ~TraceSet();
  TraceSet(const TraceSet&) = delete;
  TraceSet& operator=(const TraceSet&) = delete;

  std::size_t size() const { return readers_.size(); }
  const std::vector<std::filesystem::path>& paths() const { return paths_; }
  const TraceReader& reader(std::size_t t) const { return *readers_[t]; }
  const std::shared_ptr<const TraceWO>& w_o(std::size_t t) const { return w_o_[t]; }
  // Null when the trace lacks /model/classifier.
  const std::vector<float>* classifier(std::size_t t) const { return classifier_[t].get(); }
  const std::vector<float>& final_norm(std::size_t t) const { return final_norm_[t]; }
  // Hex XXH3 of the trace (trace_content_hash); only with hash_files.
  const std::string& hash(std::size_t t) const;
  bool hashed() const { return !hashes_.empty(); }

  // A cheap fingerprint of what the set holds, without reading the tensors: every trace's path,
  // model, storage, producer and its prompts' metadata. The ranks of an MPI job compare theirs
  // (dist::require_same).
  std::uint64_t fingerprint() const;

  std::size_t total_prompts() const;
  // Every (trace, prompt), trace order then prompt order.
  std::vector<TraceItem> items() const;

  // One prompt's tensors and outputs, each dataset read once; W_O shared with the set.
  ReadPrompt read_prompt(std::size_t trace, std::size_t prompt, const PolicyNeeds& needs, std::uint64_t seed) const;

 private:
  std::vector<std::filesystem::path> paths_;
  std::vector<std::unique_ptr<TraceReader>> readers_;
  std::vector<std::shared_ptr<const TraceWO>> w_o_;
  std::vector<std::shared_ptr<const std::vector<float>>> classifier_;  // [V, D] or null
  std::vector<std::vector<float>> final_norm_;                         // [D]
  std::vector<std::string> hashes_;
};

// How messages name an item: "path/trace.h5 prompt 000004".
std::string item_label(const TraceSet& set, const TraceItem& item);

// The shared state of one trace, read from the file (TraceSet reads it once per trace).
std::shared_ptr<const TraceWO> read_all_w_o(const TraceReader& reader);
// One prompt read from a trace (TraceSet::read_prompt without a set).
ReadPrompt read_prompt(const TraceReader& reader, std::size_t prompt, const PolicyNeeds& needs,
                       std::shared_ptr<const TraceWO> w_o, std::uint64_t seed);

}  // namespace kvsim
