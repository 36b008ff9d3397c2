#pragma once
// A whole file memory-mapped read-only, unmapped on destruction: checkpoints are read in
// place, without a copy (safetensors, GGUF).
#include <cstddef>
#include <filesystem>
#include <string>

namespace kvsim {

class MappedFile {
 public:
  // Throws ModelError naming the file ("cannot open <kind>", "cannot stat", "mmap failed").
  // An empty file maps to data() == nullptr, size() == 0.
  MappedFile(const std::filesystem::path& path, const std::string& kind);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::byte* data() const { return data_; }
  std::size_t size() const { return size_; }

 private:
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace kvsim
