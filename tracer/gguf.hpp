#pragma once
// Reader for GGUF files (llama.cpp's model format, versions 2 and 3, little-endian):
//   "GGUF" magic, uint32 version, uint64 tensor_count, uint64 kv_count,
//   kv_count × {string key, uint32 value type, value},
//   tensor_count × {string name, uint32 n_dims, uint64 ne[n_dims], uint32 ggml type, uint64 offset},
//   padding to general.alignment (default 32), then the tensor data (each tensor's offset is
//   relative to the data section and aligned). Strings are uint64 length + bytes; arrays are
//   uint32 element type + uint64 count + elements. ne[0] is the fastest-varying dimension,
//   so a 2-D tensor with ne = [cols, rows] is row-major [rows, cols].
// The file is memory-mapped; tensors are dequantized to fp32 on request.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "tracer/mapped_file.hpp"

namespace kvsim {

// ggml tensor types this reader dequantizes; other ids are refused when the file is opened.
enum class GgmlType : std::uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ8_0 = 8,
  kQ4_K = 12,
  kQ6_K = 14,
  kBF16 = 30,
};

// Name of a ggml type id ("Q4_K"), also for the ones this reader does not support.
std::string ggml_type_name(std::uint32_t type);
bool ggml_type_supported(std::uint32_t type);
// Elements per block and bytes per block of a supported type.
std::size_t ggml_block_elements(GgmlType type);
std::size_t ggml_block_bytes(GgmlType type);

// Converts n elements (a multiple of the type's block size) of `type` at src to fp32,
// following llama.cpp's block layouts (ggml-common.h). Single-threaded; callers split work.
void dequantize(GgmlType type, const std::byte* src, float* dst, std::size_t n);

// A metadata value: integers of any width widen to int64 or uint64, floats to double.
struct GgufValue;
using GgufArray = std::vector<GgufValue>;
struct GgufValue {
  std::uint32_t type = 0;  // GGUF value type id (0 uint8 ... 12 float64)
  std::variant<std::uint64_t, std::int64_t, double, bool, std::string, GgufArray> data;
};

struct GgufTensorInfo {
  std::string name;
  GgmlType type = GgmlType::kF32;
  std::vector<std::int64_t> ne;  // GGUF order: ne[0] fastest
  std::size_t offset = 0;        // from the start of the file (data section + tensor offset)
  std::size_t bytes = 0;
  std::int64_t elements() const;
  std::vector<std::int64_t> shape() const;  // row-major order: ne reversed
};

class GgufFile {
 public:
  // Maps and parses the header, metadata and tensor index. Throws ModelError naming the
  // file on a bad magic or version, a cut header, a tensor beyond the end of the file or a
  // tensor type this reader does not support (naming the tensor and the type).
  explicit GgufFile(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return path_; }
  std::uint32_t version() const { return version_; }
  std::size_t alignment() const { return alignment_; }

  bool has(const std::string& key) const { return metadata_.count(key) != 0; }
  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  // Typed access; each throws ModelError naming the file and key when the key is missing or
  // of another type. Integer getters accept any integer type that holds the value.
  std::int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;  // a float or an integer
  bool get_bool(const std::string& key) const;
  std::string get_string(const std::string& key) const;
  std::vector<std::string> get_strings(const std::string& key) const;
  std::vector<std::int64_t> get_ints(const std::string& key) const;
  // The same with a fallback for an absent key (a present key of the wrong type still throws).
  std::int64_t get_int(const std::string& key, std::int64_t fallback) const;
  double get_float(const std::string& key, double fallback) const;
  bool get_bool(const std::string& key, bool fallback) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;

  bool has_tensor(const std::string& name) const { return tensors_.count(name) != 0; }
  const GgufTensorInfo& tensor(const std::string& name) const;  // throws ModelError when absent
  const std::map<std::string, GgufTensorInfo>& tensors() const { return tensors_; }
  // Throws ModelError naming the tensor when its row-major shape differs from `shape`.
  void check_shape(const std::string& name, const std::vector<std::int64_t>& shape) const;
  // Dequantizes tensor `name` into dst (row-major, elements() floats), checking its shape,
  // in parallel over blocks (oneTBB). Throws ModelError on a non-finite value.
  void read_f32(const std::string& name, const std::vector<std::int64_t>& shape, float* dst) const;

 private:
  const GgufValue& value(const std::string& key) const;
  // The elements of an array value converted by `get` (false: not of the wanted type).
  template <typename T, typename Get>
  std::vector<T> array_of(const std::string& key, const char* what, Get get) const;

  std::filesystem::path path_;
  MappedFile map_;
  std::uint32_t version_ = 0;
  std::size_t alignment_ = 32;
  std::map<std::string, GgufValue> metadata_;
  std::map<std::string, GgufTensorInfo> tensors_;
};

}  // namespace kvsim
