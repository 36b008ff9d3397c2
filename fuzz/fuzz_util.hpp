#pragma once
// Helpers shared by the libFuzzer targets: a scratch file for the parsers that read paths.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

namespace kvsim::fuzz {

// One file per process (libFuzzer runs inputs one at a time), rewritten for every input.
inline std::filesystem::path scratch_file(const std::string& name) {
  const char* dir = std::getenv("KVSIM_FUZZ_TMP");
  std::filesystem::path base = dir ? dir : "/tmp";
  return base / ("kvsim_fuzz_" + std::to_string(::getpid()) + "_" + name);
}

inline std::filesystem::path write_scratch(const std::string& name, const std::uint8_t* data, std::size_t size) {
  const auto path = scratch_file(name);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

}  // namespace kvsim::fuzz
