#include "cli/npy.hpp"

#include <cstdint>
#include <fstream>
#include <string>

#include "core/error.hpp"

namespace kvsim::cli {

namespace {

// NumPy's .npy: magic, version 1.0, a uint16 header length, a Python dict literal padded
// with spaces and ended by '\n' so the data starts at a multiple of 64 bytes.
void write_npy_bytes(const std::filesystem::path& path, const char* descr, const void* data, std::size_t elem_size,
                     const std::vector<int>& shape) {
  std::string dims;
  std::size_t n = 1;
  for (int d : shape) {
    dims += std::to_string(d) + ",";
    n *= static_cast<std::size_t>(d);
  }
  if (shape.size() > 1) dims.pop_back();  // (3,) for one dimension, (2, 3) otherwise
  std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  const std::size_t preamble = 10;
  header.append((64 - (preamble + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  if (!out) fail<InputError>(path.string(), ": cannot write");
  const auto len = static_cast<std::uint16_t>(header.size());
  out.write("\x93NUMPY\x01\x00", 8);
  out.write(reinterpret_cast<const char*>(&len), 2);
  out << header;
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(n * elem_size));
  if (!out) fail<InputError>(path.string(), ": write failed");
}

}  // namespace

void write_npy(const std::filesystem::path& path, const float* data, const std::vector<int>& shape) {
  write_npy_bytes(path, "<f4", data, sizeof(float), shape);
}

void write_npy(const std::filesystem::path& path, const int* data, const std::vector<int>& shape) {
  static_assert(sizeof(int) == 4);
  write_npy_bytes(path, "<i4", data, sizeof(int), shape);
}

}  // namespace kvsim::cli
