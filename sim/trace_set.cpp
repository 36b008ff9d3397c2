#include "sim/trace_set.hpp"

#include <tbb/parallel_for.h>

#include "core/bytes.hpp"
#include "core/error.hpp"
#include "core/hash.hpp"
#include "traces/trace_index.hpp"

namespace kvsim {

TraceSet::TraceSet(std::vector<std::filesystem::path> paths, const Checks& checks, bool hash_files)
    : paths_(std::move(paths)) {
  for (std::size_t t = 0; t < paths_.size(); ++t) {
    readers_.push_back(std::make_unique<TraceReader>(paths_[t]));
    const TraceReader& r = *readers_.back();
    if (checks.opened) checks.opened(t, r);
    w_o_.push_back(read_all_w_o(r));
    classifier_.push_back(r.has_classifier() ? std::make_shared<const std::vector<float>>(r.read_classifier()) : nullptr);
    final_norm_.push_back(r.read_final_norm());
    if (hash_files) hashes_.push_back(trace_content_hash(r));
    if (checks.loaded) checks.loaded(t, r, *w_o_.back());
  }
}

TraceSet::~TraceSet() = default;

const std::string& TraceSet::hash(std::size_t t) const {
  KVSIM_CHECK(t < hashes_.size(), "TraceSet::hash: the set was opened without hash_files");
  return hashes_[t];
}

std::uint64_t TraceSet::fingerprint() const {
  ByteWriter w;
  for (std::size_t t = 0; t < readers_.size(); ++t) {
    const TraceReader& r = *readers_[t];
    const ModelInfo& m = r.model();
    w.put(paths_[t].string());
    w.put(m.n_layers), w.put(m.n_heads), w.put(m.n_kv_heads), w.put(m.head_dim), w.put(m.hidden), w.put(m.vocab);
    w.put(m.source);
    w.put(static_cast<int>(r.storage())), w.put(r.format_version());
    w.put(r.producer().created_utc);
    for (const PromptMeta& p : r.prompts()) {
      w.put(p.id), w.put(p.task), w.put(p.source), w.put(p.sample_id), w.put(p.scorer), w.put(p.answers);
      w.put(p.n_prompt), w.put(p.n_cont), w.put(p.window), w.put(p.topk), w.put(p.truncated_from);
    }
  }
  const std::string bytes = w.take();
  return hash_bytes(bytes);
}

std::size_t TraceSet::total_prompts() const {
  std::size_t n = 0;
  for (const auto& r : readers_) n += r->prompts().size();
  return n;
}

std::vector<TraceItem> TraceSet::items() const {
  std::vector<TraceItem> out;
  out.reserve(total_prompts());
  for (std::size_t t = 0; t < readers_.size(); ++t)
    for (std::size_t i = 0; i < readers_[t]->prompts().size(); ++i) out.push_back({t, i});
  return out;
}

ReadPrompt TraceSet::read_prompt(std::size_t trace, std::size_t prompt, const PolicyNeeds& needs,
                                 std::uint64_t seed) const {
  return kvsim::read_prompt(*readers_[trace], prompt, needs, w_o_[trace], seed);
}

std::string item_label(const TraceSet& set, const TraceItem& item) {
  return set.paths()[item.trace].string() + " prompt " + set.reader(item.trace).prompts()[item.prompt].id;
}

std::shared_ptr<const TraceWO> read_all_w_o(const TraceReader& reader) {
  auto w_o = std::make_shared<TraceWO>();
  for (int l = 0; l < reader.model().n_layers; ++l) w_o->push_back(reader.read_w_o(l));
  return w_o;
}

ReadPrompt read_prompt(const TraceReader& reader, std::size_t prompt, const PolicyNeeds& needs,
                       std::shared_ptr<const TraceWO> w_o, std::uint64_t seed) {
  const PromptMeta& meta = reader.prompts()[prompt];
  const ModelInfo& model = reader.model();
  ReadPrompt out;
  PromptTensors& pt = out.tensors;
  pt.id = meta.id, pt.task = meta.task;
  static_cast<ModelShape&>(pt) = model;
  pt.T = meta.n_prompt, pt.M = meta.n_cont, pt.W = meta.window;
  pt.seed = seed;
  pt.w_o = std::move(w_o);
  pt.layers.resize(model.n_layers);
  tbb::parallel_for(0, model.n_layers, [&](int l) {
    static_cast<LayerRecord&>(pt.layers[l]) = reader.read_layer(prompt, l);
  });
  out.outputs = reader.read_outputs(prompt);
  if (needs.prompt_logprob) pt.prompt_logprob = out.outputs.prompt_logprob;
  return out;
}

}  // namespace kvsim
