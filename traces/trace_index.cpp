#include "traces/trace_index.hpp"

#include <map>
#include <memory>
#include <system_error>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/hash.hpp"
#include "traces/hdf5_handle.hpp"
#include "traces/hdf5_io.hpp"
#include "traces/trace_reader.hpp"

namespace kvsim {

using h5::Handle;

namespace {

// `part` as the index names it: relative to the index's directory (absolute when the two share
// no root).
std::string relative_to_index(const std::filesystem::path& part, const std::filesystem::path& out) {
  const auto dir = std::filesystem::absolute(out).lexically_normal().parent_path();
  const auto p = std::filesystem::absolute(part).lexically_normal();
  const auto rel = p.lexically_relative(dir);
  return rel.empty() ? p.string() : rel.string();
}

// The first field in which part `r` differs from part 0, or "".
std::string part_difference(const TraceReader& first, const TraceReader& r) {
  const ModelInfo &a = first.model(), &b = r.model();
  auto d = [](const char* field, const auto& x, const auto& y) -> std::string {
    return x == y ? "" : detail::concat(field, " is ", y, " there, ", x, " in part 0");
  };
  for (std::string s : {d("format_version", first.format_version(), r.format_version()),
                        d("storage", std::string(storage_name(first.storage())), std::string(storage_name(r.storage()))),
                        d("/model arch", a.arch, b.arch), d("/model n_layers", a.n_layers, b.n_layers),
                        d("/model n_heads", a.n_heads, b.n_heads), d("/model n_kv_heads", a.n_kv_heads, b.n_kv_heads),
                        d("/model head_dim", a.head_dim, b.head_dim), d("/model hidden", a.hidden, b.hidden),
                        d("/model vocab", a.vocab, b.vocab), d("/model rope_theta", a.rope_theta, b.rope_theta),
                        d("/model rope_style", a.rope_style, b.rope_style), d("/model norm_eps", a.norm_eps, b.norm_eps),
                        d("/model source", a.source, b.source)})
    if (!s.empty()) return s;
  return "";
}

// Every root attribute of `from` onto `to`, whatever it is (format, format_version, storage,
// producer, …: a field added to the writer reaches the index without a change here), as stored:
// the file type is the memory type, so HDF5 copies the bytes.
void copy_root_attributes(hid_t from, hid_t to, const std::string& from_file, const std::string& to_file) {
  std::vector<std::string> names;
  auto collect = [](hid_t, const char* name, const H5A_info_t*, void* out) -> herr_t {
    static_cast<std::vector<std::string>*>(out)->emplace_back(name);
    return 0;
  };
  if (H5Aiterate2(from, H5_INDEX_NAME, H5_ITER_INC, nullptr, collect, &names) < 0)
    h5::fail_hdf5(from_file, "/", ": cannot list root attributes");
  for (const std::string& name : names) {
    Handle attr = h5::attribute_handle(H5Aopen(from, name.c_str(), H5P_DEFAULT));
    Handle type = h5::type_handle(attr ? H5Aget_type(attr.get()) : -1);
    Handle space = h5::dataspace_handle(attr ? H5Aget_space(attr.get()) : -1);
    if (!attr || !type || !space) h5::fail_hdf5(from_file, "/", ": cannot open attribute " + name);
    // A variable-length value is a heap reference, not the value: format_version 3 has none.
    if (H5Tis_variable_str(type.get()) > 0 || H5Tdetect_class(type.get(), H5T_VLEN) > 0)
      fail<TraceError>(from_file, ": / attribute ", name, " is variable-length (format_version 3 has none; corrupt?)");
    const hssize_t n = H5Sget_simple_extent_npoints(space.get());
    const std::size_t size = H5Tget_size(type.get());
    if (n < 0 || size == 0 || static_cast<std::size_t>(n) * size > h5::kMaxStringAttrBytes)
      fail<TraceError>(from_file, ": / attribute ", name, " has an implausible size (corrupt?)");
    std::vector<char> value(static_cast<std::size_t>(n) * size);
    if (H5Aread(attr.get(), type.get(), value.data()) < 0)
      h5::fail_hdf5(from_file, "/", ": cannot read attribute " + name);
    Handle copy = h5::attribute_handle(H5Acreate2(to, name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT));
    if (!copy || H5Awrite(copy.get(), type.get(), value.data()) < 0)
      h5::fail_hdf5(to_file, "/", ": cannot write attribute " + name);
  }
}

void link_external(hid_t parent, const std::string& name, const std::string& target_file,
                   const std::string& target_object, const std::string& file, const std::string& object) {
  if (H5Lcreate_external(target_file.c_str(), target_object.c_str(), parent, name.c_str(), H5P_DEFAULT, H5P_DEFAULT) < 0)
    h5::fail_hdf5(file, object, ": cannot create external link to " + target_file + ":" + target_object);
}

}  // namespace

void write_trace_index(const std::filesystem::path& out, const std::vector<std::filesystem::path>& parts) {
  std::filesystem::path partial = out;
  partial += ".partial";
  const std::string f = partial.string();
  if (parts.empty()) fail<TraceError>(f, ": an index needs at least one part");

  // Which part holds each prompt, read through the reader every command uses (so a part it
  // would refuse is refused here, before an index points at it).
  std::vector<std::string> names;
  std::map<std::string, std::size_t> holder;  // prompt id -> part; ordered: links in id order
  {
    std::vector<std::unique_ptr<TraceReader>> readers;
    for (std::size_t i = 0; i < parts.size(); ++i) {
      readers.push_back(std::make_unique<TraceReader>(parts[i]));
      const TraceReader& r = *readers.back();
      if (!r.parts().empty()) fail<TraceError>(parts[i].string(), ": is itself an index file, not a part");
      if (const std::string d = part_difference(*readers.front(), r); !d.empty())
        fail<TraceError>(parts[i].string(), ": does not belong with ", parts[0].string(), " (", d, ")");
      for (const PromptMeta& p : r.prompts()) {
        const auto [it, fresh] = holder.emplace(p.id, i);
        if (!fresh)
          fail<TraceError>(parts[i].string(), ": /prompts/", p.id, " is also in ", parts[it->second].string(),
                           " (one prompt, two parts)");
      }
      names.push_back(relative_to_index(parts[i], out));
    }
  }

  {
    h5::LibraryLock lock(h5::library_mutex());
    h5::silence_errors();
    std::error_code ec;
    std::filesystem::remove(partial, ec);  // a stale index of an earlier attempt
    Handle fapl = h5::checksummed_fapl(f);
    Handle file = h5::file_handle(H5Fcreate(f.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()));
    if (!file) h5::fail_hdf5(f, "/", ": cannot create file");
    hid_t root = file.get();
    {
      const std::string first = parts[0].string();
      Handle source = h5::file_handle(H5Fopen(first.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
      if (!source) h5::fail_hdf5(first, "/", ": cannot be opened");
      copy_root_attributes(source.get(), root, first, f);
    }
    h5::write_attr(root, "parts", nlohmann::json(names).dump(), f, "/");
    // Part 0's /model: W_O and the classifier are gigabytes at 8B, linked rather than copied.
    link_external(root, "model", names[0], "/model", f, "/model");
    Handle prompts = h5::create_group(root, "prompts", f, "/prompts");
    for (const auto& [id, part] : holder)
      link_external(prompts.get(), id, names[part], "/prompts/" + id, f, "/prompts/" + id);
    prompts.close();
    if (file.close() < 0) h5::fail_hdf5(f, "/", ": cannot close file");
  }
  std::error_code ec;
  std::filesystem::rename(partial, out, ec);
  if (ec) fail<TraceError>(f, ": cannot rename to ", out.string(), ": ", ec.message());
}

TraceFileKind trace_file_kind(const std::filesystem::path& path) {
  const std::string f = path.string();
  h5::LibraryLock lock(h5::library_mutex());
  h5::silence_errors();
  Handle file = h5::file_handle(H5Fopen(f.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  if (!file) return TraceFileKind::kUnreadable;
  return H5Aexists(file.get(), "parts") > 0 ? TraceFileKind::kIndex : TraceFileKind::kTrace;
}

std::string trace_content_hash(const TraceReader& reader) {
  const std::string own = hex64(hash_file(reader.path()));
  if (reader.parts().empty()) return own;
  std::string hashes = own;
  for (const auto& p : reader.part_paths()) hashes += hex64(hash_file(p));
  return hex64(hash_bytes(hashes));
}

}  // namespace kvsim
