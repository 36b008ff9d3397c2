#pragma once
// Typed errors with context (STYLE.md habit 5). Libraries throw; only cli/ prints and exits.
#include <cstdint>
#if __cplusplus >= 202002L
#include <span>
#endif
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace kvsim {

// Base of every kvsim error; what() is the one line the CLI prints.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// A trace file is missing, truncated, of another format version, or has a bad dataset.
class TraceError : public Error {
 public:
  using Error::Error;
};

// A model checkpoint, config or tokenizer cannot be loaded.
class ModelError : public Error {
 public:
  using Error::Error;
};

// A user input (text, JSONL, parameter, budget) is invalid.
class InputError : public Error {
 public:
  using Error::Error;
};

// No usable accelerator, not enough device memory, or a device call failed.
class DeviceError : public Error {
 public:
  using Error::Error;
};

namespace detail {
template <typename... Args>
std::string concat(Args&&... args) {
  std::ostringstream s;
  (s << ... << std::forward<Args>(args));
  return s.str();
}
}  // namespace detail

// Builds an error message from pieces: fail<TraceError>(path, ": ", field, " missing").
template <typename E, typename... Args>
[[noreturn]] void fail(Args&&... args) {
  throw E(detail::concat(std::forward<Args>(args)...));
}

#if __cplusplus >= 202002L  // not in the CUDA sources, which nvcc compiles as C++17
// A tensor shape as messages write it: "[4,100,8]".
inline std::string shape_str(std::span<const std::int64_t> shape) {
  std::ostringstream out;
  out << '[';
  for (std::size_t i = 0; i < shape.size(); ++i) out << (i ? "," : "") << shape[i];
  out << ']';
  return out.str();
}
#endif

}  // namespace kvsim

// Invariant check that stays on in release builds; throws kvsim::Error with the location.
#define KVSIM_CHECK(cond, ...)                                                            \
  do {                                                                                    \
    if (!(cond))                                                                          \
      ::kvsim::fail<::kvsim::Error>(__FILE__, ":", __LINE__, ": check failed: " #cond " ", \
                                    ##__VA_ARGS__);                                       \
  } while (0)
