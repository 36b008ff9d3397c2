#pragma once
// Attribute and dataset helpers shared by TraceWriter and TraceReader (internal to traces/).
// Every function is called with library_mutex() held and throws TraceError naming the file
// and the HDF5 object path on failure.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "traces/hdf5_handle.hpp"
#include "traces/trace_types.hpp"

namespace kvsim::h5 {

using Dims = std::vector<hsize_t>;

// Chunks larger than this are split along the first axes (HDF5 caps a chunk at 4 GiB, and a
// reader decompresses a whole chunk at once).
inline constexpr std::size_t kMaxChunkBytes = std::size_t{256} << 20;

// "[4,100,8]"
std::string dims_to_string(const Dims& dims);
std::size_t element_count(const Dims& dims);

// Throws TraceError "file: object<what>" followed by HDF5's own reason when it has one.
[[noreturn]] void fail_hdf5(const std::string& file, const std::string& object, const std::string& what);

// IEEE binary16, little endian. HDF5 1.10 has no predefined float16; h5py maps this to numpy
// float16. Used as both file and memory type so HDF5 copies the bits without conversion.
Handle make_half_type();
// bfloat16: sign bit 15, exponent bits 7..14 (bias 127), mantissa bits 0..6, little endian. Also
// built with H5Tset_fields; h5py reads it as float32 (the smallest numpy float that holds it),
// HDF5 converting exactly.
Handle make_bf16_type();
// The file (and memory) type of K/V/Q for a storage: the two above, or IEEE float32 LE.
Handle make_storage_type(KvStorage storage);
// Variable-length UTF-8 string (h5py reads it as str).
Handle make_utf8_type();

Handle create_group(hid_t parent, const std::string& name, const std::string& file, const std::string& object);
Handle open_group(hid_t parent, const std::string& name, const std::string& file, const std::string& object);
Handle open_dataset(hid_t parent, const std::string& name, const std::string& file, const std::string& object);
bool link_exists(hid_t parent, const std::string& name);

// Scalar attributes; writing replaces an existing attribute of the same name.
void write_attr(hid_t obj, const char* name, const std::string& value, const std::string& file, const std::string& object);
void write_attr(hid_t obj, const char* name, int value, const std::string& file, const std::string& object);
void write_attr(hid_t obj, const char* name, double value, const std::string& file, const std::string& object);
bool has_attr(hid_t obj, const char* name);
std::string read_string_attr(hid_t obj, const char* name, const std::string& file, const std::string& object);
int read_int_attr(hid_t obj, const char* name, const std::string& file, const std::string& object);
double read_double_attr(hid_t obj, const char* name, const std::string& file, const std::string& object);

struct Filters {
  int deflate_level = 4;  // 0 = no compression
  bool shuffle = true;
};

// The chunk shape for a dataset: the whole dataset, split along the first axes only when it
// exceeds kMaxChunkBytes.
Dims chunk_dims(const Dims& dims, std::size_t element_bytes);

// Creates parent/name with the given type and shape and writes data (memory type == type).
// `chunk` empty: chunk_dims(dims). Empty datasets are contiguous: HDF5 cannot chunk a
// zero-length dimension.
void write_dataset(hid_t parent, const std::string& name, hid_t type, const Dims& dims, const void* data,
                   const Filters& filters, const std::string& file, const std::string& object,
                   const Dims& chunk = {});

Dims dataset_dims(hid_t dataset, const std::string& file, const std::string& object);

// Checks that the dataset's type class is `type_class` and its shape equals `expected`,
// then reads it whole into `out` (memory type `mem_type`, `out` sized by the caller).
void read_dataset(hid_t dataset, hid_t mem_type, H5T_class_t type_class, const Dims& expected, void* out,
                  const std::string& file, const std::string& object);
// The same, for K/V/Q: the file type must equal `storage`'s exactly (checked after the shape),
// so HDF5 copies the bits and never converts between precisions.
void read_stored(hid_t dataset, KvStorage storage, const Dims& expected, void* out, const std::string& file,
                 const std::string& object);

}  // namespace kvsim::h5
