#include "traces/hdf5_io.hpp"

#include <algorithm>
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

Handle make_utf8_type() {
  Handle t = type_handle(H5Tcopy(H5T_C_S1));
  if (!t || H5Tset_size(t.get(), H5T_VARIABLE) < 0 || H5Tset_cset(t.get(), H5T_CSET_UTF8) < 0)
    fail_hdf5("(memory)", "string type", ": cannot be built");
  return t;
}

Handle create_group(hid_t parent, const std::string& name, const std::string& file, const std::string& object) {
  Handle g = group_handle(H5Gcreate2(parent, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  if (!g) fail_hdf5(file, object, ": cannot create group");
  return g;
}

bool link_exists(hid_t parent, const std::string& name) { return H5Lexists(parent, name.c_str(), H5P_DEFAULT) > 0; }

Handle open_group(hid_t parent, const std::string& name, const std::string& file, const std::string& object) {
  if (!link_exists(parent, name)) fail<TraceError>(file, ": ", object, " is missing");
  Handle g = group_handle(H5Gopen2(parent, name.c_str(), H5P_DEFAULT));
  if (!g) fail_hdf5(file, object, ": cannot open group");
  return g;
}

Handle open_dataset(hid_t parent, const std::string& name, const std::string& file, const std::string& object) {
  if (!link_exists(parent, name)) fail<TraceError>(file, ": ", object, " is missing");
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
  if (H5Aexists(obj, name) <= 0) fail<TraceError>(file, ": ", object, " has no attribute ", name);
  Handle attr = attribute_handle(H5Aopen(obj, name, H5P_DEFAULT));
  if (!attr) fail_hdf5(file, object, std::string(": cannot open attribute ") + name);
  Handle space = dataspace_handle(H5Aget_space(attr.get()));
  if (!space || H5Sget_simple_extent_npoints(space.get()) != 1)
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
  Handle t = make_utf8_type();
  const char* c = value.c_str();
  write_scalar_attr(obj, name, t.get(), t.get(), &c, file, object);
}

void write_attr(hid_t obj, const char* name, int value, const std::string& file, const std::string& object) {
  write_scalar_attr(obj, name, H5T_STD_I32LE, H5T_NATIVE_INT, &value, file, object);
}

void write_attr(hid_t obj, const char* name, double value, const std::string& file, const std::string& object) {
  write_scalar_attr(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value, file, object);
}

bool has_attr(hid_t obj, const char* name) { return H5Aexists(obj, name) > 0; }

std::string read_string_attr(hid_t obj, const char* name, const std::string& file, const std::string& object) {
  Handle attr = open_attr(obj, name, file, object);
  Handle file_type = type_handle(H5Aget_type(attr.get()));
  if (!file_type || H5Tget_class(file_type.get()) != H5T_STRING)
    fail<TraceError>(file, ": ", object, " attribute ", name, " is not a string");
  // Read in the stored character set: HDF5 does not convert between ASCII and UTF-8.
  Handle mem_type = type_handle(H5Tcopy(H5T_C_S1));
  H5Tset_cset(mem_type.get(), H5Tget_cset(file_type.get()));
  if (H5Tis_variable_str(file_type.get()) > 0) {
    H5Tset_size(mem_type.get(), H5T_VARIABLE);
    char* text = nullptr;
    if (H5Aread(attr.get(), mem_type.get(), &text) < 0)
      fail_hdf5(file, object, std::string(": cannot read attribute ") + name);
    std::string value = text != nullptr ? text : "";
    H5free_memory(text);
    return value;
  }
  std::size_t size = H5Tget_size(file_type.get());
  H5Tset_size(mem_type.get(), size);
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

// The dataset's file type, after checking its class and its shape.
Handle checked_file_type(hid_t dataset, H5T_class_t type_class, const Dims& expected, const std::string& file,
                         const std::string& object) {
  Handle file_type = type_handle(H5Dget_type(dataset));
  if (!file_type || H5Tget_class(file_type.get()) != type_class)
    fail<TraceError>(file, ": ", object, " has the wrong element type (expected ",
                     type_class == H5T_FLOAT ? "float" : "integer", ")");
  Dims dims = dataset_dims(dataset, file, object);
  if (dims != expected)
    fail<TraceError>(file, ": ", object, " has shape ", dims_to_string(dims), ", expected ", dims_to_string(expected));
  return file_type;
}

void read_whole(hid_t dataset, hid_t mem_type, const Dims& dims, void* out, const std::string& file,
                const std::string& object) {
  if (element_count(dims) == 0) return;
  if (H5Dread(dataset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
    fail_hdf5(file, object, ": cannot read dataset");
}

}  // namespace

void read_dataset(hid_t dataset, hid_t mem_type, H5T_class_t type_class, const Dims& expected, void* out,
                  const std::string& file, const std::string& object) {
  checked_file_type(dataset, type_class, expected, file, object);
  read_whole(dataset, mem_type, expected, out, file, object);
}

namespace {

// "fp16", "bf16", "fp32", or a description of another type, for messages.
std::string describe_float_type(hid_t type) {
  for (KvStorage s : {KvStorage::kFp16, KvStorage::kBf16, KvStorage::kFp32}) {
    Handle t = make_storage_type(s);
    if (H5Tequal(type, t.get()) > 0) return storage_name(s);
  }
  return H5Tget_class(type) == H5T_FLOAT ? "a float of " + std::to_string(H5Tget_size(type)) + " bytes"
                                         : "not a float";
}

}  // namespace

void read_stored(hid_t dataset, KvStorage storage, const Dims& expected, void* out, const std::string& file,
                 const std::string& object) {
  Handle want = make_storage_type(storage);
  Handle file_type = checked_file_type(dataset, H5T_FLOAT, expected, file, object);
  if (H5Tequal(file_type.get(), want.get()) <= 0)
    fail<TraceError>(file, ": ", object, " is stored as ", describe_float_type(file_type.get()),
                     ", but the trace's storage is ", storage_name(storage));
  read_whole(dataset, want.get(), expected, out, file, object);
}

}  // namespace kvsim::h5
