#include "traces/trace_reader.hpp"

#include <algorithm>
#include <cmath>
#include <system_error>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/half.hpp"
#include "traces/hdf5_handle.hpp"
#include "traces/hdf5_io.hpp"

namespace kvsim {

using h5::Dims;
using h5::Handle;

struct TraceReader::Impl {
  Handle file;
  // Link access properties of every path opened from the root: see reader_links().
  Handle links;
};

h5::Integrity TraceReader::integrity() const { return static_cast<h5::Integrity>(integrity_); }

namespace {

void check_finite(std::span<const float> data, const std::string& file, const std::string& object) {
  for (std::size_t i = 0; i < data.size(); ++i)
    if (!std::isfinite(data[i]))
      fail<TraceError>(file, ": ", object, " holds a non-finite value (", data[i], ") at flat index ", i);
}

// A whole float32 / int32 dataset: checked (shape, type, layout) before the buffer is allocated.
std::vector<float> read_f32(hid_t parent, const std::string& name, const Dims& dims, h5::Integrity integrity,
                            const std::string& file, const std::string& object) {
  Handle dset = h5::open_dataset(parent, name, file, object);
  h5::check_dataset(dset.get(), H5T_IEEE_F32LE, dims, integrity, file, object);
  std::vector<float> out(h5::element_count(dims));
  h5::read_checked(dset.get(), H5T_IEEE_F32LE, dims, out.data(), file, object);
  return out;
}

std::vector<std::int32_t> read_i32(hid_t parent, const std::string& name, const Dims& dims, h5::Integrity integrity,
                                   const std::string& file, const std::string& object) {
  Handle dset = h5::open_dataset(parent, name, file, object);
  h5::check_dataset(dset.get(), H5T_STD_I32LE, dims, integrity, file, object);
  std::vector<std::int32_t> out(h5::element_count(dims));
  h5::read_checked(dset.get(), H5T_STD_I32LE, dims, out.data(), file, object);
  return out;
}

// One K/V/Q dataset as stored: fp32 values in `values`, or fp16/bf16 bits in `bits`.
struct StoredTensor {
  std::vector<std::uint16_t> bits;
  std::vector<float> values;
};

StoredTensor read_stored(hid_t parent, const std::string& name, KvStorage storage, const Dims& dims,
                         h5::Integrity integrity, const std::string& file, const std::string& object) {
  Handle dset = h5::open_dataset(parent, name, file, object);
  Handle type = h5::make_storage_type(storage);
  h5::check_dataset(dset.get(), type.get(), dims, integrity, file, object,
                    std::string("the trace's storage is ") + storage_name(storage));
  StoredTensor t;
  void* out = nullptr;
  if (storage == KvStorage::kFp32) {
    t.values.resize(h5::element_count(dims));
    out = t.values.data();
  } else {
    t.bits.resize(h5::element_count(dims));
    out = t.bits.data();
  }
  h5::read_checked(dset.get(), type.get(), dims, out, file, object);
  return t;
}

// Converts to fp32 outside the library lock, rejecting Inf/NaN (for 16-bit storage on the bits:
// exponent all ones).
std::vector<float> to_checked_float(StoredTensor t, KvStorage storage, const std::string& file,
                                    const std::string& object) {
  if (storage == KvStorage::kFp32) {
    check_finite(t.values, file, object);
    return std::move(t.values);
  }
  std::vector<float> out(t.bits.size());
  const bool half = storage == KvStorage::kFp16;
  if (half) {
    half_to_float(t.bits, out);
  } else {
    bf16_to_float(t.bits, out);
  }
  const std::uint16_t exponent = nonfinite_exponent(storage);
  for (std::size_t i = 0; i < t.bits.size(); ++i)
    if ((t.bits[i] & exponent) == exponent)
      fail<TraceError>(file, ": ", object, " holds a non-finite value (", out[i], ") at flat index ", i);
  return out;
}

std::string prompt_object(const std::string& id) { return "/prompts/" + id; }

// The link access properties of the reader's paths. An index file's external links open its
// parts evict-on-close too: HDF5 opens a linked file with default properties otherwise (it does
// not pass evict-on-close on), so the parts' metadata would pile up in the cache, and a part also
// opened directly (evict-on-close) would clash with its linked self.
Handle reader_links(const std::string& f) {
  Handle part_fapl = h5::plist_handle(H5Pcreate(H5P_FILE_ACCESS));
  Handle lapl = h5::plist_handle(H5Pcreate(H5P_LINK_ACCESS));
  if (!part_fapl || !lapl || H5Pset_evict_on_close(part_fapl.get(), 1) < 0 ||
      H5Pset_elink_fapl(lapl.get(), part_fapl.get()) < 0)
    h5::fail_hdf5(f, "/", ": cannot set link access properties");
  return lapl;
}

// Part files an index keeps open at once (HDF5's external link file cache); more are reopened
// on use.
constexpr unsigned kPartFilesOpen = 64;

// The optional `answers` (prompt) and `parts` (root) attributes: a JSON array of strings.
std::vector<std::string> parse_string_list(const std::string& text, const std::string& file, const std::string& object,
                                           const char* name) {
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    if (j.is_array() && std::all_of(j.begin(), j.end(), [](const nlohmann::json& a) { return a.is_string(); }))
      return j.get<std::vector<std::string>>();
  } catch (const nlohmann::json::exception&) {
  }
  fail<TraceError>(file, ": ", object, " attribute ", name, " is not a JSON array of strings: ", text.substr(0, 80));
}

}  // namespace

TraceReader::TraceReader(std::filesystem::path path)
    : path_(std::move(path)), file_label_(path_.string()), impl_(std::make_unique<Impl>()) {
  const std::string& f = file_label_;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path_, ec)) fail<TraceError>(f, ": no such trace file");

  h5::LibraryLock lock(h5::library_mutex());
  h5::silence_errors();
  htri_t is_hdf5 = H5Fis_hdf5(f.c_str());
  if (is_hdf5 < 0) {
    std::string detail = h5::error_detail();
    fail<TraceError>(f, ": cannot be read", detail.empty() ? "" : " (HDF5: " + detail + ")");
  }
  if (is_hdf5 == 0) fail<TraceError>(f, ": not an HDF5 file");
  // Evict an object's metadata from HDF5's cache when it is closed: the simulator touches
  // every prompt's groups once, and without this the cache keeps them all (memory would grow
  // with the number of prompts, ~70 KB each).
  h5::Handle fapl = h5::plist_handle(H5Pcreate(H5P_FILE_ACCESS));
  // An index file keeps up to kPartFilesOpen parts open while it is open: without this cache
  // every prompt and layer read through a link would open and close its part file again.
  if (!fapl || H5Pset_evict_on_close(fapl.get(), 1) < 0 ||
      H5Pset_elink_file_cache_size(fapl.get(), kPartFilesOpen) < 0)
    h5::fail_hdf5(f, "/", ": cannot set file access properties");
  impl_->file = h5::file_handle(H5Fopen(f.c_str(), H5F_ACC_RDONLY, fapl.get()));
  if (!impl_->file) {
    std::string detail = h5::error_detail();
    fail<TraceError>(f, ": cannot be opened (truncated or corrupt?)", detail.empty() ? "" : " (HDF5: " + detail + ")");
  }
  read_metadata();
}

TraceReader::TraceReader(std::span<const std::byte> image, std::string label)
    : path_(label), file_label_(std::move(label)), impl_(std::make_unique<Impl>()) {
  const std::string& f = file_label_;
  h5::LibraryLock lock(h5::library_mutex());
  h5::silence_errors();
  if (!h5::has_signature(image)) fail<TraceError>(f, ": not an HDF5 file");
  // The core driver without a backing store serves every read from its own copy of the image.
  h5::Handle fapl = h5::plist_handle(H5Pcreate(H5P_FILE_ACCESS));
  if (!fapl || H5Pset_evict_on_close(fapl.get(), 1) < 0 || H5Pset_fapl_core(fapl.get(), 64 * 1024, 0) < 0 ||
      H5Pset_file_image(fapl.get(), const_cast<std::byte*>(image.data()), image.size()) < 0)
    h5::fail_hdf5(f, "/", ": cannot set file access properties");
  impl_->file = h5::file_handle(H5Fopen(f.c_str(), H5F_ACC_RDONLY, fapl.get()));
  if (!impl_->file) {
    std::string detail = h5::error_detail();
    fail<TraceError>(f, ": cannot be opened (truncated or corrupt?)", detail.empty() ? "" : " (HDF5: " + detail + ")");
  }
  read_metadata();
}

// Caller holds library_mutex().
void TraceReader::read_metadata() {
  const std::string& f = file_label_;
  hid_t root = impl_->file.get();
  impl_->links = reader_links(f);
  const hid_t links = impl_->links.get();

  // The version before any string: it says whether strings may be variable-length (1, 2).
  const bool has_version = h5::has_attr(root, "format_version", f, "/");
  if (has_version) version_ = h5::read_int_attr(root, "format_version", f, "/");
  if (!has_version || version_ < 1 || version_ > kTraceFormatVersion) {
    if (!h5::has_attr(root, "format", f, "/") ||
        h5::read_string_attr(root, "format", f, "/", h5::Integrity::kLegacy) != kTraceFormatName)
      fail<TraceError>(f, ": not a kvsim trace (root attribute format is not \"", kTraceFormatName, "\")");
    if (!has_version) fail<TraceError>(f, ": root attribute format_version is missing");
    fail<TraceError>(f, ": format_version ", version_, " is not supported (this kvsim reads 1 to ", kTraceFormatVersion,
                     ")");
  }
  const h5::Integrity strings =
      version_ >= kFirstChecksumVersion ? h5::Integrity::kChecksummed : h5::Integrity::kLegacy;
  integrity_ = static_cast<int>(strings);
  if (!h5::has_attr(root, "format", f, "/") || h5::read_string_attr(root, "format", f, "/", strings) != kTraceFormatName)
    fail<TraceError>(f, ": not a kvsim trace (root attribute format is not \"", kTraceFormatName, "\")");
  if (version_ >= kFirstStorageVersion) {
    const std::string storage = h5::read_string_attr(root, "storage", f, "/", strings);
    if (!parse_storage(storage, storage_))
      fail<TraceError>(f, ": root attribute storage is \"", storage, "\", expected fp16, fp32 or bf16");
  }
  producer_.version = h5::read_string_attr(root, "producer_version", f, "/", strings);
  producer_.git_sha = h5::read_string_attr(root, "producer_git_sha", f, "/", strings);
  producer_.backend = h5::read_string_attr(root, "backend", f, "/", strings);
  producer_.created_utc = h5::read_string_attr(root, "created_utc", f, "/", strings);
  if (h5::has_attr(root, "parts", f, "/")) {
    parts_ = parse_string_list(h5::read_string_attr(root, "parts", f, "/", strings), f, "/", "parts");
    if (parts_.empty()) fail<TraceError>(f, ": root attribute parts is an empty list");
  }

  {
    const std::string object = "/model";
    Handle g = h5::open_group(root, "model", f, object, links);
    hid_t m = g.get();
    model_.arch = h5::read_string_attr(m, "arch", f, object, strings);
    model_.n_layers = h5::read_int_attr(m, "n_layers", f, object);
    model_.n_heads = h5::read_int_attr(m, "n_heads", f, object);
    model_.n_kv_heads = h5::read_int_attr(m, "n_kv_heads", f, object);
    model_.head_dim = h5::read_int_attr(m, "head_dim", f, object);
    model_.hidden = h5::read_int_attr(m, "hidden", f, object);
    model_.vocab = h5::read_int_attr(m, "vocab", f, object);
    model_.rope_theta = h5::read_double_attr(m, "rope_theta", f, object);
    model_.rope_style = h5::read_string_attr(m, "rope_style", f, object, strings);
    model_.norm_eps = h5::read_double_attr(m, "norm_eps", f, object);
    model_.source = h5::read_string_attr(m, "source", f, object, strings);
    if (model_.n_layers <= 0 || model_.n_heads <= 0 || model_.n_kv_heads <= 0 || model_.head_dim <= 0 ||
        model_.hidden <= 0 || model_.n_heads % model_.n_kv_heads != 0)
      fail<TraceError>(f, ": /model has an invalid shape (n_layers ", model_.n_layers, ", n_heads ", model_.n_heads,
                       ", n_kv_heads ", model_.n_kv_heads, ", head_dim ", model_.head_dim, ", hidden ", model_.hidden,
                       ")");
    // Fail fast on the model datasets' shapes rather than in the middle of a simulation.
    Dims w_o_dims{static_cast<hsize_t>(model_.n_layers), static_cast<hsize_t>(model_.hidden),
                  static_cast<hsize_t>(model_.n_heads) * static_cast<hsize_t>(model_.head_dim)};
    for (auto [name, dims] : {std::pair{"w_o", w_o_dims}, std::pair{"final_norm", Dims{w_o_dims[1]}}}) {
      std::string ds_object = object + "/" + name;
      Handle dset = h5::open_dataset(m, name, f, ds_object);
      h5::check_dataset(dset.get(), H5T_IEEE_F32LE, dims, strings, f, ds_object);
    }
  }

  Handle prompts = h5::open_group(root, "prompts", f, "/prompts");
  std::vector<std::string> ids;
  auto collect = [](hid_t, const char* name, const H5L_info_t*, void* out) -> herr_t {
    static_cast<std::vector<std::string>*>(out)->emplace_back(name);
    return 0;
  };
  if (H5Literate(prompts.get(), H5_INDEX_NAME, H5_ITER_INC, nullptr, collect, &ids) < 0)
    h5::fail_hdf5(f, "/prompts", ": cannot list prompts");
  std::sort(ids.begin(), ids.end());
  for (const std::string& id : ids) {
    const std::string object = prompt_object(id);
    Handle g = h5::open_group(prompts.get(), id, f, object, links);
    hid_t p = g.get();
    // A prompt being written (or cut off by a crash) has complete=0: invisible to readers.
    if (!h5::has_attr(p, "complete", f, object) || h5::read_int_attr(p, "complete", f, object) != 1) continue;
    PromptMeta meta;
    meta.id = id;
    meta.n_prompt = h5::read_int_attr(p, "n_prompt", f, object);
    meta.n_cont = h5::read_int_attr(p, "n_cont", f, object);
    meta.window = h5::read_int_attr(p, "window", f, object);
    meta.topk = h5::read_int_attr(p, "topk", f, object);
    meta.task = h5::read_string_attr(p, "task", f, object, strings);
    meta.source = h5::read_string_attr(p, "source", f, object, strings);
    meta.sample_id = h5::read_string_attr(p, "sample_id", f, object, strings);
    meta.truncated_from = h5::read_int_attr(p, "truncated_from", f, object);
    if (h5::has_attr(p, "answers", f, object))
      meta.answers = parse_string_list(h5::read_string_attr(p, "answers", f, object, strings), f, object, "answers");
    if (h5::has_attr(p, "scorer", f, object)) meta.scorer = h5::read_string_attr(p, "scorer", f, object, strings);
    if (meta.n_prompt <= 0 || meta.n_cont < 0 || meta.window < 0 || meta.window > meta.n_prompt || meta.topk < 0)
      fail<TraceError>(f, ": ", object, " has invalid sizes (n_prompt ", meta.n_prompt, ", n_cont ", meta.n_cont,
                       ", window ", meta.window, ", topk ", meta.topk, ")");
    prompts_.push_back(std::move(meta));
  }
}

std::vector<std::filesystem::path> TraceReader::part_paths() const {
  std::vector<std::filesystem::path> out;
  for (const std::string& p : parts_) out.push_back(path_.parent_path() / p);  // an absolute p stays as it is
  return out;
}

TraceReader::~TraceReader() {
  h5::LibraryLock lock(h5::library_mutex());
  impl_->file.close();
}

const PromptMeta& TraceReader::prompt(std::size_t prompt_index) const {
  if (prompt_index >= prompts_.size())
    fail<TraceError>(file_label_, ": prompt index ", prompt_index, " out of range (", prompts_.size(),
                     " complete prompts)");
  return prompts_[prompt_index];
}

void TraceReader::check_layer(int layer) const {
  if (layer < 0 || layer >= model_.n_layers)
    fail<TraceError>(file_label_, ": layer ", layer, " out of range (n_layers ", model_.n_layers, ")");
}

PromptOutputs TraceReader::read_outputs(std::size_t prompt_index) const {
  const PromptMeta& meta = prompt(prompt_index);
  const std::string& f = file_label_;
  const std::string object = prompt_object(meta.id);
  auto T = static_cast<hsize_t>(meta.n_prompt), M = static_cast<hsize_t>(meta.n_cont);
  auto K = static_cast<hsize_t>(meta.topk);
  PromptOutputs out;
  {
    h5::LibraryLock lock(h5::library_mutex());
    h5::silence_errors();
    Handle g = h5::open_group(impl_->file.get(), object, f, object, impl_->links.get());
    out.tokens = read_i32(g.get(), "tokens", {T + M}, integrity(), f, object + "/tokens");                          // [T+M]
    out.prompt_logprob = read_f32(g.get(), "prompt_logprob", {T}, integrity(), f, object + "/prompt_logprob");        // [T]
    out.cont_logprob = read_f32(g.get(), "cont_logprob", {M}, integrity(), f, object + "/cont_logprob");              // [M]
    out.cont_topk_ids = read_i32(g.get(), "cont_topk_ids", {M, K}, integrity(), f, object + "/cont_topk_ids");        // [M, K]
    out.cont_topk_logits = read_f32(g.get(), "cont_topk_logits", {M, K}, integrity(), f, object + "/cont_topk_logits");  // [M, K]
    out.cont_logsumexp = read_f32(g.get(), "cont_logsumexp", {M}, integrity(), f, object + "/cont_logsumexp");        // [M]
    if (h5::link_exists(g.get(), "cont_residual", f, object + "/cont_residual"))                                                        // [M, hidden]
      out.cont_residual = read_f32(g.get(), "cont_residual", {M, static_cast<hsize_t>(model_.hidden)}, integrity(), f,
                                   object + "/cont_residual");
  }
  check_finite(out.cont_residual, f, object + "/cont_residual");
  check_finite(out.prompt_logprob, f, object + "/prompt_logprob");
  check_finite(out.cont_logprob, f, object + "/cont_logprob");
  check_finite(out.cont_topk_logits, f, object + "/cont_topk_logits");
  check_finite(out.cont_logsumexp, f, object + "/cont_logsumexp");
  return out;
}

LayerRecord TraceReader::read_layer(std::size_t prompt_index, int layer) const {
  const PromptMeta& meta = prompt(prompt_index);
  check_layer(layer);
  const std::string& f = file_label_;
  const std::string object = prompt_object(meta.id) + "/layers/" + std::to_string(layer);
  auto G = static_cast<hsize_t>(model_.n_kv_heads), H = static_cast<hsize_t>(model_.n_heads);
  auto d = static_cast<hsize_t>(model_.head_dim), T = static_cast<hsize_t>(meta.n_prompt);
  auto M = static_cast<hsize_t>(meta.n_cont), W = static_cast<hsize_t>(meta.window);
  StoredTensor keys, values, q_window, q_cont;
  LayerRecord rec;
  {
    h5::LibraryLock lock(h5::library_mutex());
    h5::silence_errors();
    // One level at a time, so every group on the path is closed (and its metadata evicted).
    Handle gp = h5::open_group(impl_->file.get(), prompt_object(meta.id), f, prompt_object(meta.id), impl_->links.get());
    Handle gl = h5::open_group(gp.get(), "layers", f, prompt_object(meta.id) + "/layers");
    Handle g = h5::open_group(gl.get(), std::to_string(layer), f, object);
    const KvStorage s = storage_;
    keys = read_stored(g.get(), "keys", s, {G, T + M, d}, integrity(), f, object + "/keys");              // [n_kv_heads, T+M, d]
    values = read_stored(g.get(), "values", s, {G, T + M, d}, integrity(), f, object + "/values");        // [n_kv_heads, T+M, d]
    q_window = read_stored(g.get(), "q_window", s, {H, W, d}, integrity(), f, object + "/q_window");      // [n_heads, W, d]
    q_cont = read_stored(g.get(), "q_cont", s, {H, M, d}, integrity(), f, object + "/q_cont");            // [n_heads, M, d]
    rec.attn_colsum = read_f32(g.get(), "attn_colsum", {H, T}, integrity(), f, object + "/attn_colsum");  // [n_heads, T]
    if (h5::link_exists(g.get(), "value_wo_l1", f, object))  // optional (traces before it, producers without it)
      rec.value_wo_l1 = read_f32(g.get(), "value_wo_l1", {H, T}, integrity(), f, object + "/value_wo_l1");  // [n_heads, T]
  }
  rec.keys = to_checked_float(std::move(keys), storage_, f, object + "/keys");
  rec.values = to_checked_float(std::move(values), storage_, f, object + "/values");
  rec.q_window = to_checked_float(std::move(q_window), storage_, f, object + "/q_window");
  rec.q_cont = to_checked_float(std::move(q_cont), storage_, f, object + "/q_cont");
  check_finite(rec.attn_colsum, f, object + "/attn_colsum");
  check_finite(rec.value_wo_l1, f, object + "/value_wo_l1");
  check_value_norms_non_negative(rec.value_wo_l1, f, object + "/value_wo_l1");
  return rec;
}

std::vector<float> TraceReader::read_w_o(int layer) const {
  check_layer(layer);
  const std::string& f = file_label_;
  const std::string object = "/model/w_o";
  auto L = static_cast<hsize_t>(model_.n_layers), hidden = static_cast<hsize_t>(model_.hidden);
  auto q_dim = static_cast<hsize_t>(model_.n_heads) * static_cast<hsize_t>(model_.head_dim);
  std::vector<float> out(static_cast<std::size_t>(hidden * q_dim));  // [hidden, n_heads*head_dim]
  {
    h5::LibraryLock lock(h5::library_mutex());
    h5::silence_errors();
    // The group first: the link access properties are for a path that crosses an index's link.
    Handle g = h5::open_group(impl_->file.get(), "model", f, "/model", impl_->links.get());
    Handle dset = h5::open_dataset(g.get(), "w_o", f, object);
    h5::check_dataset(dset.get(), H5T_IEEE_F32LE, {L, hidden, q_dim}, integrity(), f, object);
    // Select [layer, :, :]: exactly one chunk.
    Handle file_space = h5::dataspace_handle(H5Dget_space(dset.get()));
    const hsize_t start[3] = {static_cast<hsize_t>(layer), 0, 0};
    const hsize_t count[3] = {1, hidden, q_dim};
    Handle mem_space = h5::dataspace_handle(H5Screate_simple(3, count, nullptr));
    if (!file_space || !mem_space ||
        H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, count, nullptr) < 0 ||
        H5Dread(dset.get(), H5T_IEEE_F32LE, mem_space.get(), file_space.get(), H5P_DEFAULT, out.data()) < 0)
      h5::fail_hdf5(f, object, ": cannot read layer " + std::to_string(layer) + " (corrupt?)");
  }
  check_finite(out, f, object);
  return out;
}

std::vector<float> TraceReader::read_final_norm() const {
  const std::string& f = file_label_;
  std::vector<float> out;
  {
    h5::LibraryLock lock(h5::library_mutex());
    h5::silence_errors();
    Handle g = h5::open_group(impl_->file.get(), "model", f, "/model", impl_->links.get());
    out = read_f32(g.get(), "final_norm", {static_cast<hsize_t>(model_.hidden)}, integrity(), f, "/model/final_norm");  // [hidden]
  }
  check_finite(out, f, "/model/final_norm");
  return out;
}

bool TraceReader::has_classifier() const {
  h5::LibraryLock lock(h5::library_mutex());
  h5::silence_errors();
  Handle g = h5::open_group(impl_->file.get(), "model", file_label_, "/model", impl_->links.get());
  return h5::link_exists(g.get(), "classifier", file_label_, "/model/classifier");
}

std::vector<float> TraceReader::read_classifier() const {
  const std::string& f = file_label_;
  std::vector<float> out;
  {
    h5::LibraryLock lock(h5::library_mutex());
    h5::silence_errors();
    Handle g = h5::open_group(impl_->file.get(), "model", f, "/model", impl_->links.get());
    if (!h5::link_exists(g.get(), "classifier", f, "/model/classifier"))
      fail<TraceError>(f, ": /model/classifier is missing (traced by an older kvsim; re-trace to get it)");
    out = read_f32(g.get(), "classifier", {static_cast<hsize_t>(model_.vocab), static_cast<hsize_t>(model_.hidden)}, integrity(), f,
                   "/model/classifier");  // [vocab, hidden]
  }
  check_finite(out, f, "/model/classifier");
  return out;
}

bool TraceReader::has_dataset(std::size_t prompt_index, std::string_view name) const {
  const PromptMeta& meta = prompt(prompt_index);
  std::string object = prompt_object(meta.id);
  h5::LibraryLock lock(h5::library_mutex());
  h5::silence_errors();
  // H5Lexists needs every intermediate link to exist: check the path one component at a time.
  hid_t root = impl_->file.get();
  std::size_t pos = 0;
  while (pos <= name.size()) {
    std::size_t next = name.find('/', pos);
    if (next == std::string_view::npos) next = name.size();
    if (next == pos) return false;
    object += "/";
    object += name.substr(pos, next - pos);
    if (!h5::link_exists(root, object, file_label_, object, impl_->links.get())) return false;
    pos = next + 1;
  }
  H5O_info_t info;
  if (H5Oget_info_by_name(root, object.c_str(), &info, impl_->links.get()) < 0) return false;
  return info.type == H5O_TYPE_DATASET;
}

}  // namespace kvsim
