#pragma once
// Runs the kvsim executable built beside the tests (KVSIM_BINARY) and captures its output.
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace kvsim::test {

struct RunResult {
  int status;
  std::string output;  // stdout + stderr
};

inline RunResult run_kvsim(const std::string& args) {
  const std::string cmd = std::string(KVSIM_BINARY) + " " + args + " 2>&1";
  RunResult r{0, {}};
  FILE* p = ::popen(cmd.c_str(), "r");
  std::array<char, 4096> buf;
  while (std::fgets(buf.data(), buf.size(), p)) r.output += buf.data();
  const int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

inline int count_occurrences(const std::string& text, const std::string& needle) {
  int n = 0;
  for (std::size_t p = text.find(needle); p != std::string::npos; p = text.find(needle, p + 1)) ++n;
  return n;
}

}  // namespace kvsim::test
