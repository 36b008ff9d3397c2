#pragma once
// Access to ../shared (real models and data) from tests. Tests that need it skip
// (tests/support/skip.hpp: ctest reports them as skipped) when it is absent, so the suite also
// runs on a machine that has only the repository.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <unistd.h>

#include "skip.hpp"

namespace kvsim::test {

// A whole file's bytes (result files compared byte for byte).
inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

inline std::filesystem::path shared_dir() { return std::filesystem::path(KVSIM_SOURCE_DIR) / ".." / "shared"; }
inline std::filesystem::path shared_path(const std::string& rel) { return shared_dir() / rel; }

// The model cache of scripts/get-model.sh: ${KVSIM_MODELS:-$HOME/.cache/kvsim/models}/rel.
inline std::filesystem::path model_cache_path(const std::string& rel) {
  if (const char* env = std::getenv("KVSIM_MODELS"); env && *env) return std::filesystem::path(env) / rel;
  const char* home = std::getenv("HOME");
  return std::filesystem::path(home ? home : "/nonexistent") / ".cache" / "kvsim" / "models" / rel;
}
// SmolLM2-135M-Instruct's GGUF, present after `scripts/get-model.sh smollm2-135m`.
inline std::filesystem::path smollm2_gguf() {
  return model_cache_path("smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf");
}

// A whole file's bytes ("" when it cannot be read).
inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return std::move(s).str();
}

// A fresh temporary directory per call, removed by the caller's TempDir destructor.
class TempDir {
 public:
  TempDir() {
    static_assert(sizeof(void*) == 8);
    path_ = std::filesystem::temp_directory_path() /
            ("kvsim-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  static int& counter() {
    static int c = 0;
    return c;
  }
  std::filesystem::path path_;
};

}  // namespace kvsim::test

// Returns from the current test, skipped, when path is absent.
#define KVSIM_REQUIRE_PATH(path, why)                                                         \
  do {                                                                                        \
    if (!std::filesystem::exists(path)) KVSIM_SKIP((path).string() << " is absent (" why ")"); \
  } while (0)
// A file of ../shared, or a model of the cache of scripts/get-model.sh.
#define KVSIM_REQUIRE_SHARED(path) KVSIM_REQUIRE_PATH(path, "../shared not beside repo")
#define KVSIM_REQUIRE_MODEL(path) KVSIM_REQUIRE_PATH(path, "scripts/get-model.sh fetches it")
