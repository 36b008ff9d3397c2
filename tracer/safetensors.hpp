#pragma once
// Reader for the safetensors format: 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets: [begin, end)}}, then the raw tensor bytes. The file is
// memory-mapped; tensors convert to fp32 on request (F32, F16, BF16).
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tracer/mapped_file.hpp"

namespace kvsim {

struct SafetensorInfo {
  std::string dtype;                  // "F32" | "F16" | "BF16" | ...
  std::vector<std::int64_t> shape;
  std::size_t begin = 0, end = 0;     // byte range inside the data section
};

class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::filesystem::path& path);

  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  const SafetensorInfo& info(const std::string& name) const;
  // Throws ModelError unless tensor `name` exists, has this shape and a dtype read_f32
  // converts, and its bytes match the shape; returns its element count.
  std::size_t check_shape(const std::string& name, const std::vector<std::int64_t>& expected_shape) const;
  // Converts tensor `name` to fp32 into dst (row-major), checking its shape.
  void read_f32(const std::string& name, const std::vector<std::int64_t>& expected_shape, float* dst) const;
  const std::filesystem::path& path() const { return path_; }
  const std::map<std::string, SafetensorInfo>& tensors() const { return tensors_; }

 private:
  std::filesystem::path path_;
  MappedFile map_;
  std::size_t data_offset_ = 0;
  std::map<std::string, SafetensorInfo> tensors_;
};

}  // namespace kvsim
