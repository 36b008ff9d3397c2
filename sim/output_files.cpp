#include "sim/output_files.hpp"

#include <cmath>

#include "core/error.hpp"

namespace kvsim {

std::string fmt_g9(double x) {
  if (std::isnan(x)) return "";
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.9g", x);
  return buf;
}

std::FILE* open_write(const std::filesystem::path& p) {
  std::FILE* f = std::fopen(p.c_str(), "wb");
  if (!f) fail<InputError>(p.string(), ": cannot open for writing");
  return f;
}

void close_checked(std::FILE*& f, const std::filesystem::path& p) {
  if (!f) return;
  const bool bad = std::ferror(f) != 0;
  const bool close_failed = std::fclose(f) != 0;
  f = nullptr;
  if (bad || close_failed) fail<InputError>(p.string(), ": write failed (disk full?)");
}

void make_fresh_dir(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (!ec) std::filesystem::create_directories(dir, ec);
  if (ec) fail<InputError>(dir.string(), ": cannot create the output directory (", ec.message(), ")");
}

PartialDir::PartialDir(std::filesystem::path dir, bool overwrite) : dir_(std::move(dir)) {
  namespace fs = std::filesystem;
  if (fs::exists(dir_) && !overwrite) fail<InputError>(dir_.string(), ": already exists (pass --overwrite to replace it)");
  partial_ = dir_;
  partial_ += ".partial";
  make_fresh_dir(partial_);
}

PartialDir::~PartialDir() {
  if (committed_) return;
  std::error_code ec;
  std::filesystem::remove_all(partial_, ec);
}

void PartialDir::commit() {
  std::filesystem::remove_all(dir_);
  std::filesystem::rename(partial_, dir_);
  committed_ = true;
}

}  // namespace kvsim
