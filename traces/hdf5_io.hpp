#pragma once
// Attribute and dataset helpers shared by TraceWriter and TraceReader (internal to traces/).
// Every function is called with library_mutex() held and throws TraceError naming the file
// and the HDF5 object path on failure.
#include <cstddef>
#include <cstdint>
#include <span>
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

// True when the HDF5 signature is where the library looks for a superblock: byte 0, 512, 1024,
// 2048, … of the file (here a whole file image). H5Fis_hdf5 does this check for files by name.
bool has_signature(std::span<const std::byte> image);

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
// Fixed-length UTF-8 string of `bytes` bytes (at least 1), null padded: what every string
// attribute is written as from format_version 3 on. Its value is stored in the object header,
// which HDF5 checksums; a variable-length string's value lives in the global heap, whose
// pointer a corrupted file can aim anywhere (libhdf5 1.10 follows it without a bounds check).
Handle make_fixed_utf8_type(std::size_t bytes);

// The longest string attribute written or read (an `answers` list, a source path): a bound on
// what a corrupted size can make the reader allocate.
inline constexpr std::size_t kMaxStringAttrBytes = std::size_t{16} << 20;

// How strict a reader is about a file's form: format_version 3 files must carry checksums
// (fixed-length strings, Fletcher-32 on every non-empty dataset); older ones have none.
enum class Integrity { kLegacy, kChecksummed };

// File access properties for writing: file format bounds 1.10 (object header version 2 with
// checksums, checksummed chunk indexes), so HDF5 verifies metadata whenever it reads it.
Handle checksummed_fapl(const std::string& file);

// A writer that died without closing its file (SIGKILL, a lost node) leaves the superblock
// (version 3, file format 1.10) marked "open for write", and HDF5 then refuses every open of it
// ("file is already open for write (may use <h5clear file> to clear file consistency flags)").
// Clears that mark as `h5clear -s` does (the fapl property "clear_status_flags"); true when it
// did. Safe for a file no live process writes: HDF5 locks a file it opens (on by default since
// 1.10.7) and an open for write fails while another process holds it.
bool clear_stale_write_mark(const std::string& file);

// `lapl`: the link access properties of a path that may cross an external link (an index
// file's, traces/trace_index.hpp); open_dataset takes none (H5Dopen2 wants dataset access
// properties): open the group across the link first.
Handle create_group(hid_t parent, const std::string& name, const std::string& file, const std::string& object);
Handle open_group(hid_t parent, const std::string& name, const std::string& file, const std::string& object,
                  hid_t lapl = H5P_DEFAULT);
Handle open_dataset(hid_t parent, const std::string& name, const std::string& file, const std::string& object);
// H5Lexists; a failed lookup (a corrupted group) is a TraceError, not "absent".
bool link_exists(hid_t parent, const std::string& name, const std::string& file, const std::string& object,
                 hid_t lapl = H5P_DEFAULT);

// Scalar attributes; writing replaces an existing attribute of the same name.
void write_attr(hid_t obj, const char* name, const std::string& value, const std::string& file, const std::string& object);
void write_attr(hid_t obj, const char* name, int value, const std::string& file, const std::string& object);
void write_attr(hid_t obj, const char* name, double value, const std::string& file, const std::string& object);
// H5Aexists; a failed lookup (a corrupted header) is a TraceError, not "absent".
bool has_attr(hid_t obj, const char* name, const std::string& file, const std::string& object);
// A scalar string attribute. kChecksummed accepts fixed-length strings only; kLegacy also reads
// the variable-length strings of format_version 1 and 2, after checking that the attribute
// stores exactly one heap reference (the heap pointer itself cannot be checked through HDF5's API).
std::string read_string_attr(hid_t obj, const char* name, const std::string& file, const std::string& object,
                             Integrity integrity = Integrity::kChecksummed);
int read_int_attr(hid_t obj, const char* name, const std::string& file, const std::string& object);
double read_double_attr(hid_t obj, const char* name, const std::string& file, const std::string& object);

struct Filters {
  int deflate_level = 4;  // 0 = no compression
  bool shuffle = true;
  bool fletcher32 = true;  // a checksum of each chunk as stored (after compression)
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

// Checks, before anything is allocated or read: the shape equals `expected`, the file type
// equals `type` exactly (so HDF5 copies bits and never converts, e.g. between precisions), the
// layout is contiguous or chunked with chunks inside the dataset and at most kMaxChunkBytes, and
// (kChecksummed) that a non-empty dataset is chunked with the Fletcher-32 filter.
// `type_note` replaces "expected <type>" in the message for a type mismatch (e.g. "the trace's
// storage is bf16").
void check_dataset(hid_t dataset, hid_t type, const Dims& expected, Integrity integrity, const std::string& file,
                   const std::string& object, const std::string& type_note = "");
// Reads a dataset check_dataset accepted whole into `out` (element_count(expected) elements of
// `type`, sized by the caller). A checksum failure is a TraceError naming the object.
void read_checked(hid_t dataset, hid_t type, const Dims& expected, void* out, const std::string& file,
                  const std::string& object);

}  // namespace kvsim::h5
