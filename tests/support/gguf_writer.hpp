#pragma once
// Writes small GGUF files for tests (the layout documented in tracer/gguf.hpp): metadata of
// any type, tensors given as raw bytes of any ggml type id, so tests can build valid,
// truncated and unsupported files without a converter.
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace kvsim::test {

class GgufWriter {
 public:
  // GGUF metadata value type ids.
  enum : std::uint32_t { kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7, kString = 8, kArray = 9, kU64 = 10 };

  void add_u32(const std::string& key, std::uint32_t v) { kv(key, kU32).pod(v); }
  void add_f32(const std::string& key, float v) { kv(key, kF32).pod(v); }
  void add_bool(const std::string& key, bool v) { kv(key, kBool).pod(static_cast<std::uint8_t>(v)); }
  void add_string(const std::string& key, const std::string& v) { kv(key, kString).str(v); }
  void add_strings(const std::string& key, const std::vector<std::string>& v) {
    kv(key, kArray).pod(kString).pod(static_cast<std::uint64_t>(v.size()));
    for (const auto& s : v) str(s);
  }
  void add_i32s(const std::string& key, const std::vector<std::int32_t>& v) {
    kv(key, kArray).pod(kI32).pod(static_cast<std::uint64_t>(v.size()));
    for (auto x : v) pod(x);
  }
  // ne in GGUF order (ne[0] fastest); data is the tensor's bytes in that type's layout.
  void add_tensor(const std::string& name, std::vector<std::uint64_t> ne, std::uint32_t type,
                  std::vector<std::uint8_t> data) {
    tensors_.push_back({name, std::move(ne), type, std::move(data)});
  }
  void add_f32_tensor(const std::string& name, std::vector<std::uint64_t> ne, const float* values) {
    std::uint64_t n = 1;
    for (auto d : ne) n *= d;
    std::vector<std::uint8_t> bytes(n * 4);
    std::memcpy(bytes.data(), values, bytes.size());
    add_tensor(name, std::move(ne), 0, std::move(bytes));
  }

  std::uint32_t version = 3;
  std::uint32_t alignment = 32;  // written data alignment (general.alignment is up to the test)

  // The whole file; tests may cut or patch the bytes before writing them.
  std::vector<std::uint8_t> bytes() const {
    GgufWriter out;
    out.buf_ = {'G', 'G', 'U', 'F'};
    out.pod(version).pod(static_cast<std::uint64_t>(tensors_.size())).pod(n_kv_);
    out.buf_.insert(out.buf_.end(), buf_.begin(), buf_.end());
    std::uint64_t offset = 0;
    std::vector<std::uint64_t> offsets;
    for (const auto& t : tensors_) {
      out.str(t.name).pod(static_cast<std::uint32_t>(t.ne.size()));
      for (auto d : t.ne) out.pod(d);
      out.pod(t.type).pod(offset);
      offsets.push_back(offset);
      offset = (offset + t.data.size() + alignment - 1) / alignment * alignment;
    }
    out.pad();
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      out.buf_.insert(out.buf_.end(), tensors_[i].data.begin(), tensors_[i].data.end());
      if (i + 1 < tensors_.size()) out.pad();
    }
    return out.buf_;
  }
  void write(const std::filesystem::path& path, std::size_t keep = SIZE_MAX) const {
    const auto b = bytes();
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(b.data()),
                                                static_cast<std::streamsize>(std::min(keep, b.size())));
  }

 private:
  struct Tensor {
    std::string name;
    std::vector<std::uint64_t> ne;
    std::uint32_t type;
    std::vector<std::uint8_t> data;
  };
  template <typename T>
  GgufWriter& pod(T v) {
    const auto* p = reinterpret_cast<const std::uint8_t*>(&v);
    buf_.insert(buf_.end(), p, p + sizeof(T));
    return *this;
  }
  GgufWriter& str(const std::string& s) {
    pod(static_cast<std::uint64_t>(s.size()));
    buf_.insert(buf_.end(), s.begin(), s.end());
    return *this;
  }
  GgufWriter& kv(const std::string& key, std::uint32_t type) {
    ++n_kv_;
    return str(key).pod(type);
  }
  void pad() {
    while (buf_.size() % alignment) buf_.push_back(0);
  }

  std::vector<std::uint8_t> buf_;  // metadata section (or, in bytes(), the whole file)
  std::uint64_t n_kv_ = 0;
  std::vector<Tensor> tensors_;
};

}  // namespace kvsim::test
