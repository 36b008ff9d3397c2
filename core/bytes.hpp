#pragma once
// A flat byte encoding of results that travel between the ranks of an MPI job (core/dist.hpp):
// numbers as their raw bits (a double comes back as the same double, NaN payloads included),
// strings and vectors with their length first. Both ends are the same kvsim binary on the same
// architecture, so no byte-order or version fields.
//
// Both classes have io(fields...): a type's encoding is written once, as a function template
// over the archive that calls a.io(x.a, x.b, …), and serves both directions (a ByteWriter puts
// the fields, a ByteReader gets them, in the same order).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "core/error.hpp"

namespace kvsim {

class ByteWriter {
 public:
  template <typename T>
    requires std::is_trivially_copyable_v<T>
  void put(const T& x) {
    const auto* p = reinterpret_cast<const char*>(&x);
    out_.append(p, sizeof(T));
  }
  void put(const std::string& s) {
    put<std::uint64_t>(s.size());
    out_.append(s);
  }
  template <typename T>
    requires std::is_trivially_copyable_v<T>
  void put(const std::vector<T>& v) {
    put<std::uint64_t>(v.size());
    out_.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
  }
  void put(const std::vector<std::string>& v) {
    put<std::uint64_t>(v.size());
    for (const auto& s : v) put(s);
  }
  template <typename... Ts>
  void io(const Ts&... xs) {
    (put(xs), ...);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

class ByteReader {
 public:
  explicit ByteReader(std::string_view in) : in_(in) {}
  template <typename T>
    requires std::is_trivially_copyable_v<T>
  T get() {
    T x;
    std::memcpy(&x, take(sizeof(T)), sizeof(T));
    return x;
  }
  template <typename T>
  void get(T& x) {
    x = get<T>();
  }
  void get(std::string& s) {
    const auto n = get<std::uint64_t>();
    s.assign(take(n), n);
  }
  template <typename T>
    requires std::is_trivially_copyable_v<T>
  void get(std::vector<T>& v) {
    const auto n = get<std::uint64_t>();
    if (n > in_.size() / std::max<std::size_t>(sizeof(T), 1)) fail<Error>("byte message: vector of ", n, " elements overruns it");
    v.resize(n);
    if (n) std::memcpy(v.data(), take(n * sizeof(T)), n * sizeof(T));
  }
  void get(std::vector<std::string>& v) {
    const auto n = get<std::uint64_t>();
    if (n > in_.size()) fail<Error>("byte message: list of ", n, " strings overruns it");
    v.resize(n);
    for (auto& s : v) get(s);
  }
  template <typename... Ts>
  void io(Ts&... xs) {
    (get(xs), ...);
  }
  bool done() const { return in_.empty(); }

 private:
  const char* take(std::size_t n) {
    if (n > in_.size()) fail<Error>("byte message: ", n, " bytes wanted, ", in_.size(), " left");
    const char* p = in_.data();
    in_.remove_prefix(n);
    return p;
  }
  std::string_view in_;
};

}  // namespace kvsim
