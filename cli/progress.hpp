#pragma once
// Progress on stderr for long work, and the UTC time stamps of manifests.
#include <chrono>
#include <cstddef>
#include <string>

namespace kvsim::cli {

// One progress line on stderr: rewritten in place on a terminal, a line per ~10% otherwise.
class Progress {
 public:
  Progress(std::string label, std::size_t total);
  void update(std::size_t done, const std::string& detail);
  void finish(const std::string& detail);

 private:
  std::string label_;
  std::size_t total_;
  bool tty_;
  int last_decile_ = -1;
  std::chrono::steady_clock::time_point start_;
};

std::string utc_now_iso8601();

// " on N MPI ranks" in an MPI job of N > 1 ranks, else "": for the last progress line.
std::string ranks_note();

}  // namespace kvsim::cli
