#pragma once
// Helpers shared by the libFuzzer targets: a scratch file for the parsers that read paths.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <system_error>
#include <unistd.h>

namespace kvsim::fuzz {

// One file per process (libFuzzer runs inputs one at a time), rewritten for every input, in
// $KVSIM_FUZZ_TMP, else /dev/shm where it exists, else /tmp. On a disk file system a file
// truncated and rewritten is flushed at close (ext4's auto_da_alloc): two thirds of the time of
// a small input went to that writeback; tmpfs has none.
inline std::filesystem::path scratch_file(const std::string& name) {
  const char* dir = std::getenv("KVSIM_FUZZ_TMP");
  std::error_code ec;
  std::filesystem::path base = dir ? dir : std::filesystem::is_directory("/dev/shm", ec) ? "/dev/shm" : "/tmp";
  return base / ("kvsim_fuzz_" + std::to_string(::getpid()) + "_" + name);
}

inline void write_file(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline std::filesystem::path write_scratch(const std::string& name, const std::uint8_t* data, std::size_t size) {
  const auto path = scratch_file(name);
  write_file(path, std::string_view(reinterpret_cast<const char*>(data), size));
  return path;
}

}  // namespace kvsim::fuzz
