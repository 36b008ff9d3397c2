#include "tracer/safetensors.hpp"

#include <Eigen/Core>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.hpp"
#include "core/half.hpp"

namespace kvsim {

namespace {
std::size_t dtype_size(const std::string& dtype) {
  if (dtype == "F32") return 4;
  if (dtype == "F16" || dtype == "BF16") return 2;
  return 0;
}
}  // namespace

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path)
    : path_(path), map_(path, "safetensors file") {
  const std::string p = path.string();
  const std::size_t file_size = map_.size();
  if (file_size < 8) fail<ModelError>(p, ": truncated safetensors file (", file_size, " bytes)");
  const std::byte* base = map_.data();

  std::uint64_t header_len = 0;
  std::memcpy(&header_len, base, 8);
  if (header_len > file_size - 8) fail<ModelError>(p, ": truncated safetensors header (claims ", header_len, " bytes)");
  data_offset_ = 8 + header_len;
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(reinterpret_cast<const char*>(base) + 8,
                                   reinterpret_cast<const char*>(base) + 8 + header_len);
  } catch (const nlohmann::json::exception& e) {
    fail<ModelError>(p, ": safetensors header is not valid JSON: ", e.what());
  }
  const std::size_t data_size = file_size - data_offset_;
  for (auto& [name, t] : header.items()) {
    if (name == "__metadata__") continue;
    SafetensorInfo info;
    try {
      info.dtype = t.at("dtype").get<std::string>();
      info.shape = t.at("shape").get<std::vector<std::int64_t>>();
      auto off = t.at("data_offsets").get<std::vector<std::size_t>>();
      if (off.size() != 2) fail<ModelError>(p, ": tensor ", name, ": data_offsets must have 2 entries");
      info.begin = off[0];
      info.end = off[1];
    } catch (const nlohmann::json::exception& e) {
      fail<ModelError>(p, ": tensor ", name, ": malformed header entry: ", e.what());
    }
    if (info.end < info.begin || info.end > data_size)
      fail<ModelError>(p, ": truncated file: tensor ", name, " ends at byte ", info.end, " of a ", data_size,
                       "-byte data section");
    tensors_.emplace(name, std::move(info));
  }
}

const SafetensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) fail<ModelError>(path_.string(), ": tensor ", name, " is missing");
  return it->second;
}

std::size_t SafetensorsFile::check_shape(const std::string& name, const std::vector<std::int64_t>& expected_shape) const {
  const SafetensorInfo& t = info(name);
  if (t.shape != expected_shape)
    fail<ModelError>(path_.string(), ": tensor ", name, " has shape ", shape_str(t.shape), ", expected ",
                     shape_str(expected_shape));
  const std::size_t esize = dtype_size(t.dtype);
  if (esize == 0) fail<ModelError>(path_.string(), ": tensor ", name, " has unsupported dtype ", t.dtype);
  std::size_t n = 1;
  for (auto s : t.shape) n *= static_cast<std::size_t>(s);
  if (n * esize != t.end - t.begin)
    fail<ModelError>(path_.string(), ": tensor ", name, " occupies ", t.end - t.begin, " bytes, its shape needs ",
                     n * esize);
  return n;
}

void SafetensorsFile::read_f32(const std::string& name, const std::vector<std::int64_t>& expected_shape,
                               float* dst) const {
  const std::size_t n = check_shape(name, expected_shape);
  const SafetensorInfo& t = info(name);
  if (n == 0) return;  // an empty tensor: nothing to convert, and dst may be null (memcpy forbids it)
  const std::byte* src = map_.data() + data_offset_ + t.begin;
  if (t.dtype == "F32") std::memcpy(dst, src, n * 4);
  else if (t.dtype == "F16") half_bytes_to_float(src, std::span<float>(dst, n));
  else bf16_bytes_to_float(src, std::span<float>(dst, n));
  for (std::size_t i = 0; i < n; ++i)
    if (!std::isfinite(dst[i])) fail<ModelError>(path_.string(), ": tensor ", name, " has a non-finite value at ", i);
}

}  // namespace kvsim
