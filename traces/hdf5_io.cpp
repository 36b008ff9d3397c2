#include "traces/hdf5_io.hpp"

#include <algorithm>
#include <cstring>
#include <sstream>

#include "core/error.hpp"

namespace kvsim::h5 {

std::string dims_to_string(const Dims& dims) {
  std::ostringstream s;
  s << '[';
  for (std::size_t a = 0; a < dims.size(); ++a) s << (a ? "," : "") << dims[a];
  s << ']';
  return s.str();
}

std::size_t element_count(const Dims& dims) {
  std::size_t n = 1;
  for (hsize_t d : dims) n *= static_cast<std::size_t>(d);
  return n;
}

void fail_hdf5(const std::string& file, const std::string& object, const std::string& what) {
  std::string detail = error_detail();
  if (detail.empty()) fail<TraceError>(file, ": ", object, what);
  fail<TraceError>(file, ": ", object, what, " (HDF5: ", detail, ")");
}

namespace {

// A 16-bit float type: sign bit 15, `exponent_bits` above `mantissa_bits`, bias `ebias`.
Handle make_float16_type(std::size_t exponent_bits, std::size_t mantissa_bits, std::size_t ebias, const char* what) {
  Handle t = type_handle(H5Tcopy(H5T_IEEE_F32LE));
  if (!t || H5Tset_fields(t.get(), 15, mantissa_bits, exponent_bits, 0, mantissa_bits) < 0 ||
      H5Tset_precision(t.get(), 16) < 0 || H5Tset_ebias(t.get(), ebias) < 0 || H5Tset_size(t.get(), 2) < 0)
    fail_hdf5("(memory)", what, ": cannot be built");
  return t;
}

}  // namespace

// Sign bit 15, exponent bits 10..14, mantissa bits 0..9, bias 15: IEEE 754 binary16.
Handle make_half_type() { return make_float16_type(5, 10, 15, "float16 type"); }

// Sign bit 15, exponent bits 7..14, mantissa bits 0..6, bias 127: bfloat16.
Handle make_bf16_type() { return make_float16_type(8, 7, 127, "bfloat16 type"); }

Handle make_storage_type(KvStorage storage) {
  switch (storage) {
    case KvStorage::kBf16: return make_bf16_type();
    case KvStorage::kFp32: {
      Handle t = type_handle(H5Tcopy(H5T_IEEE_F32LE));
      if (!t) fail_hdf5("(memory)", "float32 type", ": cannot be built");
      return t;
    }
    case KvStorage::kFp16: break;
  }
  return make_half_type();
}

bool has_signature(std::span<const std::byte> image) {
  static constexpr unsigned char kSignature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  for (std::size_t at = 0; at <= image.size() && image.size() - at >= sizeof kSignature; at = at == 0 ? 512 : 2 * at)
    if (std::memcmp(image.data() + at, kSignature, sizeof kSignature) == 0) return true;
  return false;
}

Handle make_fixed_utf8_type(std::size_t bytes) {
  Handle t = type_handle(H5Tcopy(H5T_C_S1));
  if (!t || H5Tset_size(t.get(), std::max<std::size_t>(bytes, 1)) < 0 || H5Tset_cset(t.get(), H5T_CSET_UTF8) < 0 ||
      H5Tset_strpad(t.get(), H5T_STR_NULLPAD) < 0)
    fail_hdf5("(memory)", "string type", ": cannot be built");
  return t;
}

Handle checksummed_fapl(const std::string& file) {
  Handle fapl = plist_handle(H5Pcreate(H5P_FILE_ACCESS));
  // Low bound 1.10 as well as high: with a 1.8 low bound a single-chunk dataset would still be
  // indexed by a version 1 B-tree, which has no checksum.
  if (!fapl || H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V110, H5F_LIBVER_V110) < 0)
    fail_hdf5(file, "/", ": cannot set the file format bounds");
  return fapl;
}

bool clear_stale_write_mark(const std::string& file) {
  Handle fapl = plist_handle(H5Pcreate(H5P_FILE_ACCESS));
  hbool_t clear = 1;
  if (!fapl || H5Pset(fapl.get(), "clear_status_flags", &clear) < 0) return false;
  Handle f = file_handle(H5Fopen(file.c_str(), H5F_ACC_RDWR, fapl.get()));
  return f && f.close() >= 0;
}

Handle create_group(hid_t parent, const std::string& name, const std::string& file, const std::string& object) {
  Handle g = group_handle(H5Gcreate2(parent, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  if (!g) fail_hdf5(file, object, ": cannot create group");
  return g;
}

bool link_exists(hid_t parent, const std::string& name, const std::string& file, const std::string& object,
                 hid_t lapl) {
  const htri_t exists = H5Lexists(parent, name.c_str(), lapl);
  if (exists < 0) fail_hdf5(file, object, ": cannot be looked up (corrupt?)");
  return exists > 0;
}

Handle open_group(hid_t parent, const std::string& name, const std::string& file, const std::string& object,
                  hid_t lapl) {
  if (!link_exists(parent, name, file, object, lapl)) fail<TraceError>(file, ": ", object, " is missing");
  Handle g = group_handle(H5Gopen2(parent, name.c_str(), lapl));
  if (!g) fail_hdf5(file, object, ": cannot open group");
  return g;
}

Handle open_dataset(hid_t parent, const std::string& name, const std::string& file, const std::string& object) {
  if (!link_exists(parent, name, file, object)) fail<TraceError>(file, ": ", object, " is missing");
  Handle d = dataset_handle(H5Dopen2(parent, name.c_str(), H5P_DEFAULT));
  if (!d) fail_hdf5(file, object, ": cannot open dataset");
  return d;
}

namespace {

// Creates a scalar attribute (replacing an old one) and writes one value of `mem_type`.
void write_scalar_attr(hid_t obj, const char* name, hid_t file_type, hid_t mem_type, const void* value,
                       const std::string& file, const std::string& object) {
  if (H5Aexists(obj, name) > 0 && H5Adelete(obj, name) < 0)
    fail_hdf5(file, object, std::string(": cannot replace attribute ") + name);
  Handle space = dataspace_handle(H5Screate(H5S_SCALAR));
  Handle attr = attribute_handle(H5Acreate2(obj, name, file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT));
  if (!space || !attr || H5Awrite(attr.get(), mem_type, value) < 0)
    fail_hdf5(file, object, std::string(": cannot write attribute ") + name);
}

Handle open_attr(hid_t obj, const char* name, const std::string& file, const std::string& object) {
  if (!has_attr(obj, name, file, object)) fail<TraceError>(file, ": ", object, " has no attribute ", name);
  Handle attr = attribute_handle(H5Aopen(obj, name, H5P_DEFAULT));
  if (!attr) fail_hdf5(file, object, std::string(": cannot open attribute ") + name);
  Handle space = dataspace_handle(H5Aget_space(attr.get()));
  if (!space || H5Sget_simple_extent_type(space.get()) != H5S_SCALAR)
    fail<TraceError>(file, ": ", object, " attribute ", name, " is not a single value");
  return attr;
}

H5T_class_t attr_class(hid_t attr) {
  Handle t = type_handle(H5Aget_type(attr));
  return t ? H5Tget_class(t.get()) : H5T_NO_CLASS;
}

}  // namespace

void write_attr(hid_t obj, const char* name, const std::string& value, const std::string& file,
                const std::string& object) {
  if (value.size() > kMaxStringAttrBytes)
    fail<TraceError>(file, ": ", object, " attribute ", name, ": ", value.size(), " bytes, more than the ",
                     kMaxStringAttrBytes, " a reader accepts");
  Handle t = make_fixed_utf8_type(value.size());
  const std::string padded = value.empty() ? std::string(1, '\0') : value;  // the type holds at least 1 byte
  write_scalar_attr(obj, name, t.get(), t.get(), padded.data(), file, object);
}

void write_attr(hid_t obj, const char* name, int value, const std::string& file, const std::string& object) {
  write_scalar_attr(obj, name, H5T_STD_I32LE, H5T_NATIVE_INT, &value, file, object);
}

void write_attr(hid_t obj, const char* name, double value, const std::string& file, const std::string& object) {
  write_scalar_attr(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value, file, object);
}

bool has_attr(hid_t obj, const char* name, const std::string& file, const std::string& object) {
  const htri_t exists = H5Aexists(obj, name);
  if (exists < 0) fail_hdf5(file, object, std::string(": cannot look up attribute ") + name + " (corrupt?)");
  return exists > 0;
}

std::string read_string_attr(hid_t obj, const char* name, const std::string& file, const std::string& object,
                             Integrity integrity) {
  Handle attr = open_attr(obj, name, file, object);
  Handle file_type = type_handle(H5Aget_type(attr.get()));
  if (!file_type || H5Tget_class(file_type.get()) != H5T_STRING)
    fail<TraceError>(file, ": ", object, " attribute ", name, " is not a string");
  // Read in the stored character set: HDF5 does not convert between ASCII and UTF-8.
  Handle mem_type = type_handle(H5Tcopy(H5T_C_S1));
  H5Tset_cset(mem_type.get(), H5Tget_cset(file_type.get()));
  const hsize_t stored = H5Aget_storage_size(attr.get());
  if (H5Tis_variable_str(file_type.get()) > 0) {
    if (integrity == Integrity::kChecksummed)
      fail<TraceError>(file, ": ", object, " attribute ", name,
                       " is a variable-length string (format_version 3 stores fixed-length strings; corrupt?)");
    // The value is a global heap reference: length (4 bytes), collection address, index (4).
    // Anything else is a corrupted header; a corrupted reference itself is beyond the API's reach.
    if (stored != 8 + sizeof(haddr_t))
      fail<TraceError>(file, ": ", object, " attribute ", name, " stores ", stored,
                       " bytes, not one variable-length string reference (corrupt?)");
    H5Tset_size(mem_type.get(), H5T_VARIABLE);
    char* text = nullptr;
    if (H5Aread(attr.get(), mem_type.get(), &text) < 0)
      fail_hdf5(file, object, std::string(": cannot read attribute ") + name);
    std::string value = text != nullptr ? text : "";
    H5free_memory(text);
    return value;
  }
  std::size_t size = H5Tget_size(file_type.get());
  if (size == 0 || size > kMaxStringAttrBytes || stored != size)
    fail<TraceError>(file, ": ", object, " attribute ", name, " has an implausible size (", size, " bytes, ", stored,
                     " stored; corrupt?)");
  H5Tset_size(mem_type.get(), size);
  H5Tset_strpad(mem_type.get(), H5T_STR_NULLPAD);
  std::string value(size, '\0');
  if (H5Aread(attr.get(), mem_type.get(), value.data()) < 0)
    fail_hdf5(file, object, std::string(": cannot read attribute ") + name);
  value.resize(std::min(value.size(), value.find('\0')));  // fixed strings are null padded
  return value;
}

int read_int_attr(hid_t obj, const char* name, const std::string& file, const std::string& object) {
  Handle attr = open_attr(obj, name, file, object);
  if (attr_class(attr.get()) != H5T_INTEGER)
    fail<TraceError>(file, ": ", object, " attribute ", name, " is not an integer");
  int value = 0;
  if (H5Aread(attr.get(), H5T_NATIVE_INT, &value) < 0)
    fail_hdf5(file, object, std::string(": cannot read attribute ") + name);
  return value;
}

double read_double_attr(hid_t obj, const char* name, const std::string& file, const std::string& object) {
  Handle attr = open_attr(obj, name, file, object);
  H5T_class_t c = attr_class(attr.get());
  if (c != H5T_FLOAT && c != H5T_INTEGER)
    fail<TraceError>(file, ": ", object, " attribute ", name, " is not a number");
  double value = 0;
  if (H5Aread(attr.get(), H5T_NATIVE_DOUBLE, &value) < 0)
    fail_hdf5(file, object, std::string(": cannot read attribute ") + name);
  return value;
}

Dims chunk_dims(const Dims& dims, std::size_t element_bytes) {
  Dims chunk = dims;
  for (std::size_t a = 0; a < chunk.size(); ++a) {
    std::size_t bytes = element_count(chunk) * element_bytes;
    if (bytes <= kMaxChunkBytes) break;
    std::size_t slice_bytes = bytes / static_cast<std::size_t>(chunk[a]);  // one index of axis a
    chunk[a] = std::max<hsize_t>(1, kMaxChunkBytes / slice_bytes);
  }
  return chunk;
}

void write_dataset(hid_t parent, const std::string& name, hid_t type, const Dims& dims, const void* data,
                   const Filters& filters, const std::string& file, const std::string& object,
                   const Dims& chunk_request) {
  Handle space = dataspace_handle(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr));
  Handle dcpl = plist_handle(H5Pcreate(H5P_DATASET_CREATE));
  if (!space || !dcpl) fail_hdf5(file, object, ": cannot create dataspace");
  std::size_t n = element_count(dims);
  if (n > 0) {
    Dims chunk = chunk_request.empty() ? chunk_dims(dims, H5Tget_size(type)) : chunk_request;
    bool ok = H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data()) >= 0;
    if (ok && filters.deflate_level > 0) {
      // Shuffle groups the bytes of each element, so deflate sees the slowly varying high
      // bytes of fp16/fp32 together: markedly smaller files for activations.
      if (filters.shuffle) ok = H5Pset_shuffle(dcpl.get()) >= 0;
      ok = ok && H5Pset_deflate(dcpl.get(), static_cast<unsigned>(filters.deflate_level)) >= 0;
    }
    // Last in the pipeline: the checksum covers the bytes as stored, so a corrupted chunk is
    // caught before the decompressor sees it.
    if (ok && filters.fletcher32) ok = H5Pset_fletcher32(dcpl.get()) >= 0;
    if (!ok) fail_hdf5(file, object, ": cannot set chunking/filters");
  }
  Handle dset = dataset_handle(H5Dcreate2(parent, name.c_str(), type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT));
  if (!dset) fail_hdf5(file, object, ": cannot create dataset");
  if (n > 0 && H5Dwrite(dset.get(), type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    fail_hdf5(file, object, ": cannot write dataset");
}

Dims dataset_dims(hid_t dataset, const std::string& file, const std::string& object) {
  Handle space = dataspace_handle(H5Dget_space(dataset));
  int rank = space ? H5Sget_simple_extent_ndims(space.get()) : -1;
  if (rank < 0) fail_hdf5(file, object, ": cannot read shape");
  Dims dims(static_cast<std::size_t>(rank));
  if (rank > 0) H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  return dims;
}

namespace {

// "fp16", "bf16", "fp32", "int32", or a description of another type, for messages.
std::string describe_type(hid_t type) {
  for (KvStorage s : {KvStorage::kFp16, KvStorage::kBf16, KvStorage::kFp32}) {
    Handle t = make_storage_type(s);
    if (H5Tequal(type, t.get()) > 0) return storage_name(s);
  }
  if (H5Tequal(type, H5T_STD_I32LE) > 0) return "int32";
  const H5T_class_t c = H5Tget_class(type);
  const char* what = c == H5T_FLOAT ? "a float" : c == H5T_INTEGER ? "an integer" : "a non-numeric type";
  return std::string(what) + " of " + std::to_string(H5Tget_size(type)) + " bytes";
}

bool has_fletcher32(hid_t dcpl) {
  const int n = H5Pget_nfilters(dcpl);
  for (int i = 0; i < n; ++i) {
    unsigned flags = 0;
    std::size_t n_values = 0;
    if (H5Pget_filter2(dcpl, static_cast<unsigned>(i), &flags, &n_values, nullptr, 0, nullptr, nullptr) ==
        H5Z_FILTER_FLETCHER32)
      return true;
  }
  return false;
}

}  // namespace

void check_dataset(hid_t dataset, hid_t type, const Dims& expected, Integrity integrity, const std::string& file,
                   const std::string& object, const std::string& type_note) {
  Dims dims = dataset_dims(dataset, file, object);
  if (dims != expected)
    fail<TraceError>(file, ": ", object, " has shape ", dims_to_string(dims), ", expected ", dims_to_string(expected));
  Handle file_type = type_handle(H5Dget_type(dataset));
  if (!file_type) fail_hdf5(file, object, ": cannot read element type");
  if (H5Tequal(file_type.get(), type) <= 0)
    fail<TraceError>(file, ": ", object, " is stored as ", describe_type(file_type.get()),
                     type_note.empty() ? ", expected " + describe_type(type) : ", but " + type_note);
  Handle dcpl = plist_handle(H5Dget_create_plist(dataset));
  if (!dcpl) fail_hdf5(file, object, ": cannot read storage properties");
  const H5D_layout_t layout = H5Pget_layout(dcpl.get());
  const bool empty = element_count(dims) == 0;
  if (layout == H5D_CHUNKED) {
    Dims chunk(dims.size());
    if (H5Pget_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data()) != static_cast<int>(dims.size()))
      fail<TraceError>(file, ": ", object, " has chunks of another rank than its shape (corrupt?)");
    for (std::size_t a = 0; a < dims.size(); ++a)
      if (chunk[a] == 0 || chunk[a] > dims[a])
        fail<TraceError>(file, ": ", object, " has chunks ", dims_to_string(chunk), " outside its shape ",
                         dims_to_string(dims), " (corrupt?)");
    if (element_count(chunk) * H5Tget_size(type) > kMaxChunkBytes)
      fail<TraceError>(file, ": ", object, " has chunks ", dims_to_string(chunk), " over ", kMaxChunkBytes,
                       " bytes (corrupt?)");
    if (integrity == Integrity::kChecksummed && !has_fletcher32(dcpl.get()))
      fail<TraceError>(file, ": ", object, " has no Fletcher-32 checksum (format_version 3 requires one; corrupt?)");
  } else if (layout != H5D_CONTIGUOUS || (integrity == Integrity::kChecksummed && !empty)) {
    fail<TraceError>(file, ": ", object, " is not stored as a trace writes it (layout ", static_cast<int>(layout),
                     integrity == Integrity::kChecksummed ? ", expected chunked with Fletcher-32; corrupt?)"
                                                          : "; corrupt?)");
  }
}

void read_checked(hid_t dataset, hid_t type, const Dims& expected, void* out, const std::string& file,
                  const std::string& object) {
  if (element_count(expected) == 0) return;
  if (H5Dread(dataset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
    fail_hdf5(file, object, ": cannot read dataset (corrupt?)");
}

}  // namespace kvsim::h5
