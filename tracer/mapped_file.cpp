#include "tracer/mapped_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.hpp"

namespace kvsim {

MappedFile::MappedFile(const std::filesystem::path& path, const std::string& kind) {
  const std::string p = path.string();
  const int fd = ::open(p.c_str(), O_RDONLY);
  if (fd < 0) fail<ModelError>(p, ": cannot open ", kind);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    fail<ModelError>(p, ": cannot stat");
  }
  size_ = static_cast<std::size_t>(st.st_size);
  if (size_ == 0) {
    ::close(fd);
    return;
  }
  void* m = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) fail<ModelError>(p, ": mmap failed");
  data_ = static_cast<const std::byte*>(m);
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
}

}  // namespace kvsim
