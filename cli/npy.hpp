#pragma once
// NumPy .npy output for checks in Python.
#include <filesystem>
#include <vector>

namespace kvsim::cli {

// Writes a C-order array as a NumPy .npy file (format 1.0, little-endian), for checks in
// Python; throws InputError naming the file when it cannot be written.
void write_npy(const std::filesystem::path& path, const float* data, const std::vector<int>& shape);
void write_npy(const std::filesystem::path& path, const int* data, const std::vector<int>& shape);

}  // namespace kvsim::cli
