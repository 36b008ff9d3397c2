#pragma once
// Access to ../shared (real models and data) from tests. Tests that need it skip with a
// "SKIPPED:" line (ctest reports them as skipped) when it is absent, so the suite also runs
// on a machine that has only the repository.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <unistd.h>

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

// Returns from the current test with a SKIPPED line when a shared file is absent.
#define KVSIM_REQUIRE_SHARED(path)                                                     \
  do {                                                                                 \
    if (!std::filesystem::exists(path)) {                                              \
      WARN("SKIPPED: " << (path).string() << " is absent (../shared not beside repo)"); \
      return;                                                                          \
    }                                                                                  \
  } while (0)
