#include "traces/trace_writer.hpp"

#include <chrono>
#include <cmath>
#include <ctime>
#include <system_error>

#include <nlohmann/json.hpp>

#include <tbb/parallel_for.h>

#include "core/error.hpp"
#include "core/half.hpp"
#include "core/value_norm.hpp"
#include "traces/hdf5_handle.hpp"
#include "traces/hdf5_io.hpp"

namespace kvsim {

using h5::Dims;
using h5::Handle;

struct TraceWriter::Impl {
  Handle file;
  Handle prompts;        // /prompts
  Handle prompt;         // /prompts/<id> while a prompt is open
  Handle prompt_layers;  // /prompts/<id>/layers
  Handle stored_type;  // K/V/Q, WriterOptions::storage
  h5::Filters filters;

  void close_all() {
    prompt_layers.close();
    prompt.close();
    prompts.close();
    stored_type.close();
  }
};

namespace {

std::string utc_now() {
  std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm utc{};
  gmtime_r(&now, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

void check_size(std::size_t given, const Dims& dims, const std::string& file, const std::string& object) {
  if (given != h5::element_count(dims))
    fail<TraceError>(file, ": ", object, ": given ", given, " values, expected ", h5::dims_to_string(dims), " = ",
                     h5::element_count(dims));
}

void check_finite(std::span<const float> data, const std::string& file, const std::string& object) {
  for (std::size_t i = 0; i < data.size(); ++i)
    if (!std::isfinite(data[i])) fail<TraceError>(file, ": ", object, ": value ", data[i], " at flat index ", i);
}

// The bits to store for fp32 `data` (the data itself for fp32, else converted into `buffer`),
// refusing a value that is not finite in the storage (|x| > 65504 in fp16, NaN, Inf).
const void* encode_stored(KvStorage storage, std::span<const float> data, std::vector<std::uint16_t>& buffer,
                          const std::string& file, const std::string& object) {
  if (storage == KvStorage::kFp32) {
    check_finite(data, file, object);
    return data.data();
  }
  buffer.resize(data.size());
  const bool half = storage == KvStorage::kFp16;
  if (half) {
    float_to_half(data, buffer);
  } else {
    float_to_bf16(data, buffer);
  }
  const std::uint16_t exponent = nonfinite_exponent(storage);
  for (std::size_t i = 0; i < buffer.size(); ++i)
    if ((buffer[i] & exponent) == exponent)
      fail<TraceError>(file, ": ", object, ": value ", data[i], " at flat index ", i, " is not finite in ",
                       storage_name(storage), half ? " (|x| > 65504 or NaN)" : "");
  return buffer.data();
}

void write_model_attrs(hid_t group, const ModelInfo& m, const std::string& file) {
  const std::string object = "/model";
  h5::write_attr(group, "arch", m.arch, file, object);
  h5::write_attr(group, "n_layers", m.n_layers, file, object);
  h5::write_attr(group, "n_heads", m.n_heads, file, object);
  h5::write_attr(group, "n_kv_heads", m.n_kv_heads, file, object);
  h5::write_attr(group, "head_dim", m.head_dim, file, object);
  h5::write_attr(group, "hidden", m.hidden, file, object);
  h5::write_attr(group, "vocab", m.vocab, file, object);
  h5::write_attr(group, "rope_theta", m.rope_theta, file, object);
  h5::write_attr(group, "rope_style", m.rope_style, file, object);
  h5::write_attr(group, "norm_eps", m.norm_eps, file, object);
  h5::write_attr(group, "source", m.source, file, object);
}

// The first differing field, or "" when the stored model equals `m`.
std::string model_difference(hid_t group, const ModelInfo& m, const std::string& file) {
  const std::string object = "/model";
  auto differs_s = [&](const char* name, const std::string& want) -> std::string {
    std::string got = h5::read_string_attr(group, name, file, object);
    return got == want ? "" : detail::concat(name, " is \"", got, "\" in the file, \"", want, "\" now");
  };
  auto differs_i = [&](const char* name, int want) -> std::string {
    int got = h5::read_int_attr(group, name, file, object);
    return got == want ? "" : detail::concat(name, " is ", got, " in the file, ", want, " now");
  };
  auto differs_d = [&](const char* name, double want) -> std::string {
    double got = h5::read_double_attr(group, name, file, object);
    return got == want ? "" : detail::concat(name, " is ", got, " in the file, ", want, " now");
  };
  for (std::string d : {differs_s("arch", m.arch), differs_i("n_layers", m.n_layers), differs_i("n_heads", m.n_heads),
                        differs_i("n_kv_heads", m.n_kv_heads), differs_i("head_dim", m.head_dim),
                        differs_i("hidden", m.hidden), differs_i("vocab", m.vocab),
                        differs_d("rope_theta", m.rope_theta), differs_s("rope_style", m.rope_style),
                        differs_d("norm_eps", m.norm_eps), differs_s("source", m.source)})
    if (!d.empty()) return d;
  return "";
}

}  // namespace

TraceWriter::TraceWriter(std::filesystem::path path, const ModelInfo& model, const TraceProducer& producer,
                         std::span<const float> w_o, std::span<const float> final_norm, WriterOptions options)
    : path_(std::move(path)), model_(model), options_(options), impl_(std::make_unique<Impl>()) {
  partial_path_ = path_;
  partial_path_ += ".partial";
  file_label_ = partial_path_.string();
  if (model.n_layers <= 0 || model.n_heads <= 0 || model.n_kv_heads <= 0 || model.head_dim <= 0 ||
      model.hidden <= 0 || model.n_heads % model.n_kv_heads != 0)
    fail<TraceError>(file_label_, ": invalid model shape (n_layers ", model.n_layers, ", n_heads ", model.n_heads,
                     ", n_kv_heads ", model.n_kv_heads, ", head_dim ", model.head_dim, ", hidden ", model.hidden, ")");
  if (options.compression_level < 0 || options.compression_level > 9)
    fail<TraceError>(file_label_, ": compression level ", options.compression_level, " is not in 0..9");
  impl_->filters = {options.compression_level, options.shuffle};
  if (options.value_norms) {
    check_size(w_o.size(), Dims{static_cast<hsize_t>(model.n_layers), static_cast<hsize_t>(model.hidden),
                                static_cast<hsize_t>(model.n_heads) * static_cast<hsize_t>(model.head_dim)},
               file_label_, "/model/w_o");
    w_o_.assign(w_o.begin(), w_o.end());
  }

  h5::LibraryLock lock(h5::library_mutex());
  h5::silence_errors();
  impl_->stored_type = h5::make_storage_type(options.storage);
  std::error_code ec;
  bool partial_exists = std::filesystem::exists(partial_path_, ec);
  if (partial_exists && options.overwrite) {
    std::filesystem::remove(partial_path_, ec);
    if (ec) fail<TraceError>(file_label_, ": cannot remove old partial file: ", ec.message());
    partial_exists = false;
  }
  if (partial_exists) {
    resume();
  } else {
    create_fresh(producer, w_o, final_norm);
  }
}

void TraceWriter::create_fresh(const TraceProducer& producer, std::span<const float> w_o,
                               std::span<const float> final_norm) {
  const std::string& f = file_label_;
  auto L = static_cast<hsize_t>(model_.n_layers), hidden = static_cast<hsize_t>(model_.hidden);
  auto q_dim = static_cast<hsize_t>(model_.n_heads) * static_cast<hsize_t>(model_.head_dim);
  Dims w_o_dims{L, hidden, q_dim};
  check_size(w_o.size(), w_o_dims, f, "/model/w_o");
  check_size(final_norm.size(), Dims{hidden}, f, "/model/final_norm");
  check_finite(w_o, f, "/model/w_o");
  check_finite(final_norm, f, "/model/final_norm");

  Handle fapl = h5::checksummed_fapl(f);
  impl_->file = h5::file_handle(H5Fcreate(f.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()));
  if (!impl_->file) h5::fail_hdf5(f, "/", ": cannot create file");
  hid_t root = impl_->file.get();
  h5::write_attr(root, "format", std::string(kTraceFormatName), f, "/");
  // Version 3 whatever the storage: checksummed metadata and data, `storage` always present.
  h5::write_attr(root, "format_version", kTraceFormatVersion, f, "/");
  h5::write_attr(root, "storage", std::string(storage_name(options_.storage)), f, "/");
  h5::write_attr(root, "producer_version", producer.version, f, "/");
  h5::write_attr(root, "producer_git_sha", producer.git_sha, f, "/");
  h5::write_attr(root, "backend", producer.backend, f, "/");
  h5::write_attr(root, "created_utc", producer.created_utc.empty() ? utc_now() : producer.created_utc, f, "/");

  Handle model_group = h5::create_group(root, "model", f, "/model");
  write_model_attrs(model_group.get(), model_, f);
  // One chunk per layer: a metric needing W_o of layer l decompresses only that layer.
  Dims w_o_chunk = h5::chunk_dims({1, hidden, q_dim}, sizeof(float));
  h5::write_dataset(model_group.get(), "w_o", H5T_NATIVE_FLOAT, w_o_dims, w_o.data(), impl_->filters, f, "/model/w_o",
                    w_o_chunk);
  h5::write_dataset(model_group.get(), "final_norm", H5T_NATIVE_FLOAT, Dims{hidden}, final_norm.data(), impl_->filters,
                    f, "/model/final_norm");
  impl_->prompts = h5::create_group(root, "prompts", f, "/prompts");
  if (H5Fflush(root, H5F_SCOPE_GLOBAL) < 0) h5::fail_hdf5(f, "/", ": cannot flush");
}

void TraceWriter::resume() {
  const std::string& f = file_label_;
  const std::string advice = "; delete it (or use overwrite) to start over";
  auto cannot_open = [&] {
    std::string detail = h5::error_detail();
    fail<TraceError>(f, ": an unfinished trace exists but cannot be opened",
                     detail.empty() ? "" : " (HDF5: " + detail + ")", advice);
  };
  // The version first, read-only: a .partial of an older kvsim (format_version 1 or 2, no
  // checksums) is refused rather than continued in a form that mixes checksummed and plain objects.
  int version = 0;
  {
    Handle old = h5::file_handle(H5Fopen(f.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
    // The .partial of a writer that was killed: its complete prompts are as good as any.
    if (!old && h5::clear_stale_write_mark(f)) old = h5::file_handle(H5Fopen(f.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
    if (!old) cannot_open();
    try {
      version = h5::has_attr(old.get(), "format_version", f, "/") ? h5::read_int_attr(old.get(), "format_version", f, "/") : 0;
    } catch (const TraceError& e) {
      throw TraceError(std::string(e.what()) + advice);
    }
  }
  if (version >= 1 && version < kFirstChecksumVersion)
    fail<TraceError>(f, ": was started by an older kvsim (format_version ", version,
                     ", without checksums) and cannot be resumed by this one (which writes format_version ",
                     kTraceFormatVersion, ")", advice);
  Handle fapl = h5::checksummed_fapl(f);
  impl_->file = h5::file_handle(H5Fopen(f.c_str(), H5F_ACC_RDWR, fapl.get()));
  if (!impl_->file) cannot_open();
  hid_t root = impl_->file.get();
  try {
    if (version != kTraceFormatVersion || h5::read_string_attr(root, "format", f, "/") != kTraceFormatName)
      fail<TraceError>(f, ": is not a kvsim-trace of format_version ", kTraceFormatVersion);
    if (h5::read_string_attr(root, "storage", f, "/") != storage_name(options_.storage))
      fail<TraceError>(f, ": was written with storage ", h5::read_string_attr(root, "storage", f, "/"), ", not ",
                       storage_name(options_.storage));
    Handle model_group = h5::open_group(root, "model", f, "/model");
    std::string difference = model_difference(model_group.get(), model_, f);
    if (!difference.empty()) fail<TraceError>(f, ": was written for another model (", difference, ")");
    impl_->prompts = h5::open_group(root, "prompts", f, "/prompts");
  } catch (const TraceError& e) {
    impl_->close_all();
    impl_->file.close();
    throw TraceError(std::string(e.what()) + advice);
  }

  // Collect names first: deleting links while iterating would invalidate the iteration.
  std::vector<std::string> names;
  auto collect = [](hid_t, const char* name, const H5L_info_t*, void* out) -> herr_t {
    static_cast<std::vector<std::string>*>(out)->emplace_back(name);
    return 0;
  };
  if (H5Literate(impl_->prompts.get(), H5_INDEX_NAME, H5_ITER_INC, nullptr, collect, &names) < 0)
    h5::fail_hdf5(f, "/prompts", ": cannot list prompts");
  for (const std::string& id : names) {
    bool complete = false;
    {
      Handle g = h5::group_handle(H5Gopen2(impl_->prompts.get(), id.c_str(), H5P_DEFAULT));
      complete = g && h5::has_attr(g.get(), "complete", f, "/prompts/" + id) &&
                 h5::read_int_attr(g.get(), "complete", f, "/prompts/" + id) == 1;
    }
    if (complete) {
      complete_.insert(id);
    } else if (H5Ldelete(impl_->prompts.get(), id.c_str(), H5P_DEFAULT) < 0) {
      // The space of a deleted group is not reclaimed (h5repack would); it is at most one prompt.
      h5::fail_hdf5(f, "/prompts/" + id, ": cannot delete incomplete prompt");
    }
  }
  resumed_ = true;
}

TraceWriter::~TraceWriter() {
  if (!impl_) return;
  h5::LibraryLock lock(h5::library_mutex());
  impl_->close_all();
  impl_->file.close();  // the .partial stays for a later resume
}

bool TraceWriter::has_prompt(const std::string& id) const { return complete_.contains(id); }

void TraceWriter::require_open(const char* what) const {
  if (finished_) fail<TraceError>(path_.string(), ": ", what, " after finish()");
}

void TraceWriter::begin_prompt(const PromptMeta& meta, std::span<const std::int32_t> tokens) {
  require_open("begin_prompt");
  const std::string& f = file_label_;
  const std::string object = "/prompts/" + meta.id;
  if (in_prompt_) fail<TraceError>(f, ": begin_prompt(", meta.id, ") while prompt ", current_.id, " is open");
  if (meta.id.empty() || meta.id.find_first_of("/.") != std::string::npos)
    fail<TraceError>(f, ": prompt id \"", meta.id, "\" is not a valid group name");
  if (complete_.contains(meta.id)) fail<TraceError>(f, ": ", object, " is already complete");
  if (meta.n_prompt <= 0 || meta.n_cont < 0 || meta.window < 0 || meta.window > meta.n_prompt || meta.topk < 0)
    fail<TraceError>(f, ": ", object, ": invalid sizes T ", meta.n_prompt, ", M ", meta.n_cont, ", W ", meta.window,
                     ", K ", meta.topk);
  Dims token_dims{static_cast<hsize_t>(meta.n_prompt + meta.n_cont)};
  check_size(tokens.size(), token_dims, f, object + "/tokens");

  h5::LibraryLock lock(h5::library_mutex());
  h5::silence_errors();
  hid_t prompts = impl_->prompts.get();
  // An open-but-unfinished group can only exist from an earlier failed begin in this run.
  if (h5::link_exists(prompts, meta.id, f, object) && H5Ldelete(prompts, meta.id.c_str(), H5P_DEFAULT) < 0)
    h5::fail_hdf5(f, object, ": cannot delete stale group");
  impl_->prompt = h5::create_group(prompts, meta.id, f, object);
  hid_t g = impl_->prompt.get();
  h5::write_attr(g, "complete", 0, f, object);  // first: a crash from here on leaves complete=0
  h5::write_attr(g, "n_prompt", meta.n_prompt, f, object);
  h5::write_attr(g, "n_cont", meta.n_cont, f, object);
  h5::write_attr(g, "window", meta.window, f, object);
  h5::write_attr(g, "topk", meta.topk, f, object);
  h5::write_attr(g, "task", meta.task, f, object);
  h5::write_attr(g, "source", meta.source, f, object);
  h5::write_attr(g, "sample_id", meta.sample_id, f, object);
  h5::write_attr(g, "truncated_from", meta.truncated_from, f, object);
  // Optional attributes: written only when there is something to say (docs/trace-format.md).
  if (!meta.answers.empty()) h5::write_attr(g, "answers", nlohmann::json(meta.answers).dump(), f, object);
  if (!meta.scorer.empty()) h5::write_attr(g, "scorer", meta.scorer, f, object);
  h5::write_dataset(g, "tokens", H5T_NATIVE_INT32, token_dims, tokens.data(), impl_->filters, f, object + "/tokens");
  impl_->prompt_layers = h5::create_group(g, "layers", f, object + "/layers");

  current_ = meta;
  current_tokens_.assign(tokens.begin(), tokens.end());
  layers_done_.assign(static_cast<std::size_t>(model_.n_layers), false);
  in_prompt_ = true;
}

void TraceWriter::write_layer(int layer, const LayerView& view) {
  require_open("write_layer");
  const std::string& f = file_label_;
  if (!in_prompt_) fail<TraceError>(f, ": write_layer(", layer, ") outside begin_prompt/end_prompt");
  const std::string object = "/prompts/" + current_.id + "/layers/" + std::to_string(layer);
  if (layer < 0 || layer >= model_.n_layers)
    fail<TraceError>(f, ": ", object, ": layer out of range (n_layers ", model_.n_layers, ")");
  if (layers_done_[static_cast<std::size_t>(layer)]) fail<TraceError>(f, ": ", object, " written twice");

  auto G = static_cast<hsize_t>(model_.n_kv_heads), H = static_cast<hsize_t>(model_.n_heads);
  auto d = static_cast<hsize_t>(model_.head_dim), T = static_cast<hsize_t>(current_.n_prompt);
  auto M = static_cast<hsize_t>(current_.n_cont), W = static_cast<hsize_t>(current_.window);
  struct Part {
    const char* name;
    std::span<const float> data;
    Dims dims;
    bool stored;  // in WriterOptions::storage (else float32)
  };
  const Part parts[] = {
      {"keys", view.keys, {G, T + M, d}, true},          // [n_kv_heads, T+M, d]
      {"values", view.values, {G, T + M, d}, true},      // [n_kv_heads, T+M, d]
      {"q_window", view.q_window, {H, W, d}, true},      // [n_heads, W, d]
      {"q_cont", view.q_cont, {H, M, d}, true},          // [n_heads, M, d]
      {"attn_colsum", view.attn_colsum, {H, T}, false},  // [n_heads, T]
  };
  // Validate everything before touching the file: a bad view writes nothing.
  for (const Part& p : parts) check_size(p.data.size(), p.dims, f, object + "/" + p.name);
  check_finite(view.attn_colsum, f, object + "/attn_colsum");
  std::span<const float> value_norms = view.value_wo_l1;  // [n_heads, T]
  std::vector<float> computed;
  if (!value_norms.empty()) {
    check_size(value_norms.size(), Dims{H, T}, f, object + "/value_wo_l1");
    check_finite(value_norms, f, object + "/value_wo_l1");
    check_value_norms_non_negative(value_norms, f, object + "/value_wo_l1");
  } else if (options_.value_norms) {
    computed = value_norms_as_stored(layer, view.values);
    value_norms = computed;
  }

  h5::LibraryLock lock(h5::library_mutex());
  h5::silence_errors();
  hid_t layers = impl_->prompt_layers.get();
  const std::string layer_name = std::to_string(layer);
  // Left over when an earlier write_layer of this layer failed half way.
  if (h5::link_exists(layers, layer_name, f, object) && H5Ldelete(layers, layer_name.c_str(), H5P_DEFAULT) < 0)
    h5::fail_hdf5(f, object, ": cannot delete stale group");
  Handle layer_group = h5::create_group(layers, layer_name, f, object);
  for (const Part& p : parts) {
    std::string part_object = object + "/" + p.name;
    if (!p.stored) {
      h5::write_dataset(layer_group.get(), p.name, H5T_NATIVE_FLOAT, p.dims, p.data.data(), impl_->filters, f,
                        part_object);
      continue;
    }
    const void* bits = encode_stored(options_.storage, p.data, bits_buffer_, f, part_object);
    h5::write_dataset(layer_group.get(), p.name, impl_->stored_type.get(), p.dims, bits, impl_->filters, f,
                      part_object);
  }
  if (!value_norms.empty())
    h5::write_dataset(layer_group.get(), "value_wo_l1", H5T_NATIVE_FLOAT, Dims{H, T}, value_norms.data(),
                      impl_->filters, f, object + "/value_wo_l1");
  layers_done_[static_cast<std::size_t>(layer)] = true;
}

std::vector<float> TraceWriter::value_norms_as_stored(int layer, std::span<const float> values) const {
  // The values a reader gets back (rounded to the storage), so that criticalkv computing the
  // norms itself from a trace without them gives the same bytes as reading them.
  std::vector<float> stored(values.begin(), values.end());
  if (options_.storage != KvStorage::kFp32) {
    std::vector<std::uint16_t> bits(values.size());
    if (options_.storage == KvStorage::kFp16) {
      float_to_half(values, bits);
      half_to_float(bits, stored);
    } else {
      float_to_bf16(values, bits);
      bf16_to_float(bits, stored);
    }
  }
  const int H = model_.n_heads, G = H / model_.n_kv_heads, T = current_.n_prompt;
  const std::size_t layer_size = static_cast<std::size_t>(model_.hidden) * H * model_.head_dim;
  const std::span<const float> w_o(w_o_.data() + static_cast<std::size_t>(layer) * layer_size, layer_size);
  const ValueNormShape shape{H, model_.n_kv_heads, model_.head_dim, model_.hidden, T, T + current_.n_cont};
  std::vector<float> out(static_cast<std::size_t>(H) * T);  // [n_heads, T]
  tbb::parallel_for(0, model_.n_kv_heads, [&](int g) {
    value_wo_l1(shape, stored, w_o, g * G, G, std::span(out).subspan(static_cast<std::size_t>(g) * G * T, static_cast<std::size_t>(G) * T));
  });
  return out;
}

void TraceWriter::end_prompt(const PromptOutputs& out) {
  require_open("end_prompt");
  const std::string& f = file_label_;
  if (!in_prompt_) fail<TraceError>(f, ": end_prompt outside begin_prompt/end_prompt");
  const std::string object = "/prompts/" + current_.id;
  for (std::size_t l = 0; l < layers_done_.size(); ++l)
    if (!layers_done_[l]) fail<TraceError>(f, ": ", object, ": end_prompt before layer ", l, " was written");
  if (!out.tokens.empty() && out.tokens != current_tokens_)
    fail<TraceError>(f, ": ", object, "/tokens: outputs.tokens differ from the tokens given to begin_prompt");

  auto T = static_cast<hsize_t>(current_.n_prompt), M = static_cast<hsize_t>(current_.n_cont);
  auto K = static_cast<hsize_t>(current_.topk);
  struct Part {
    const char* name;
    std::span<const float> data;
    Dims dims;
  };
  const Part parts[] = {
      {"prompt_logprob", out.prompt_logprob, {T}},       // [T]
      {"cont_logprob", out.cont_logprob, {M}},           // [M]
      {"cont_topk_logits", out.cont_topk_logits, {M, K}},  // [M, K]
      {"cont_logsumexp", out.cont_logsumexp, {M}},       // [M]
  };
  for (const Part& p : parts) {
    check_size(p.data.size(), p.dims, f, object + "/" + p.name);
    check_finite(p.data, f, object + "/" + p.name);
  }
  check_size(out.cont_topk_ids.size(), Dims{M, K}, f, object + "/cont_topk_ids");
  const Dims residual_dims{M, static_cast<hsize_t>(model_.hidden)};
  if (!out.cont_residual.empty()) {
    check_size(out.cont_residual.size(), residual_dims, f, object + "/cont_residual");
    check_finite(out.cont_residual, f, object + "/cont_residual");
  }

  h5::LibraryLock lock(h5::library_mutex());
  h5::silence_errors();
  hid_t g = impl_->prompt.get();
  for (const Part& p : parts)
    h5::write_dataset(g, p.name, H5T_NATIVE_FLOAT, p.dims, p.data.data(), impl_->filters, f, object + "/" + p.name);
  h5::write_dataset(g, "cont_topk_ids", H5T_NATIVE_INT32, Dims{M, K}, out.cont_topk_ids.data(), impl_->filters, f,
                    object + "/cont_topk_ids");
  if (!out.cont_residual.empty())  // [M, hidden]
    h5::write_dataset(g, "cont_residual", H5T_NATIVE_FLOAT, residual_dims, out.cont_residual.data(), impl_->filters, f,
                      object + "/cont_residual");
  h5::write_attr(g, "complete", 1, f, object);  // last: the prompt counts only once all is there
  impl_->prompt_layers.close();
  impl_->prompt.close();
  if (H5Fflush(impl_->file.get(), H5F_SCOPE_GLOBAL) < 0) h5::fail_hdf5(f, object, ": cannot flush");
  complete_.insert(current_.id);
  in_prompt_ = false;
}

void TraceWriter::write_classifier(std::span<const float> classifier) {
  require_open("write_classifier");
  const std::string& f = file_label_;
  const Dims dims{static_cast<hsize_t>(model_.vocab), static_cast<hsize_t>(model_.hidden)};
  check_size(classifier.size(), dims, f, "/model/classifier");
  check_finite(classifier, f, "/model/classifier");
  h5::LibraryLock lock(h5::library_mutex());
  h5::silence_errors();
  Handle model_group = h5::open_group(impl_->file.get(), "model", f, "/model");
  if (h5::link_exists(model_group.get(), "classifier", f, "/model/classifier")) return;
  h5::write_dataset(model_group.get(), "classifier", H5T_NATIVE_FLOAT, dims, classifier.data(), impl_->filters, f,
                    "/model/classifier");
  if (H5Fflush(impl_->file.get(), H5F_SCOPE_GLOBAL) < 0) h5::fail_hdf5(f, "/model/classifier", ": cannot flush");
}

void TraceWriter::finish() {
  require_open("finish");
  const std::string& f = file_label_;
  if (in_prompt_) fail<TraceError>(f, ": finish() while prompt ", current_.id, " is open");
  {
    h5::LibraryLock lock(h5::library_mutex());
    h5::silence_errors();
    impl_->close_all();
    if (impl_->file.close() < 0) h5::fail_hdf5(f, "/", ": cannot close file");
  }
  std::error_code ec;
  std::filesystem::rename(partial_path_, path_, ec);
  if (ec) fail<TraceError>(f, ": cannot rename to ", path_.string(), ": ", ec.message());
  finished_ = true;
}

}  // namespace kvsim
