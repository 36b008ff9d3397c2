#pragma once
// Pieces every results writer shares (`kvsim run`, `kvsim validate`): numbers as %.9g, checked
// file writes, and a results directory that is complete or absent (written as DIR.partial,
// renamed when complete).
#include <cstdio>
#include <filesystem>
#include <string>

namespace kvsim {

// %.9g; NaN (a value the inputs cannot support) is an empty field.
std::string fmt_g9(double x);
std::FILE* open_write(const std::filesystem::path& p);
// Closes f (if open) and throws InputError when any write to it failed.
void close_checked(std::FILE*& f, const std::filesystem::path& p);

// Removes `dir` if present and creates it afresh; InputError naming it and the reason ("Permission
// denied", "Not a directory") when the filesystem refuses.
void make_fresh_dir(const std::filesystem::path& dir);

class PartialDir {
 public:
  // Refuses an existing `dir` unless overwrite; creates dir.partial afresh.
  PartialDir(std::filesystem::path dir, bool overwrite);
  ~PartialDir();  // removes dir.partial unless commit() was reached
  PartialDir(const PartialDir&) = delete;
  PartialDir& operator=(const PartialDir&) = delete;
  const std::filesystem::path& partial() const { return partial_; }
  std::filesystem::path operator/(const std::string& name) const { return partial_ / name; }
  // Replaces dir with dir.partial.
  void commit();

 private:
  std::filesystem::path dir_, partial_;
  bool committed_ = false;
};

}  // namespace kvsim
