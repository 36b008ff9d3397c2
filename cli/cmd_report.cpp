// kvsim report: a thin launcher of the Python report generator (python/kvsim_report,
// docs/report.md). It finds the package beside the executable's source tree and replaces this
// process with `PYTHON -m kvsim_report ARGS...`; the report's own errors and exit codes are the
// module's.
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "core/error.hpp"

namespace kvsim::cli {

namespace {

namespace fs = std::filesystem;

// The folder holding kvsim_report/: $KVSIM_REPORT_PYTHONPATH, else python/ of the source tree
// two levels above the executable (build/<preset>/kvsim), else python/ of the source tree this
// executable was built from.
fs::path report_package_dir() {
  std::vector<fs::path> candidates;
  if (const char* env = std::getenv("KVSIM_REPORT_PYTHONPATH"); env && *env) candidates.emplace_back(env);
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) candidates.push_back(exe.parent_path().parent_path().parent_path() / "python");
  candidates.emplace_back(fs::path(KVSIM_SOURCE_DIR) / "python");
  for (const auto& c : candidates)
    if (fs::is_regular_file(c / "kvsim_report" / "__main__.py", ec)) return c;
  std::string tried;
  for (const auto& c : candidates) tried += (tried.empty() ? "" : ", ") + (c / "kvsim_report").string();
  fail<InputError>("the report generator (Python package kvsim_report) is not found; looked in ", tried,
                   " (set KVSIM_REPORT_PYTHONPATH to the folder holding kvsim_report/)");
}

// $KVSIM_PYTHON, else Debian's /usr/bin/python3 (where the apt packages of scripts/install-deps.sh
// live), else python3 on PATH.
std::string python_interpreter() {
  if (const char* env = std::getenv("KVSIM_PYTHON"); env && *env) return env;
  if (::access("/usr/bin/python3", X_OK) == 0) return "/usr/bin/python3";
  return "python3";
}

}  // namespace

int cmd_report(const std::vector<std::string>& args) {
  const fs::path pkg = report_package_dir();
  const std::string python = python_interpreter();
  std::string path = pkg.string();
  if (const char* old = std::getenv("PYTHONPATH"); old && *old) path += std::string(":") + old;
  ::setenv("PYTHONPATH", path.c_str(), 1);
  std::vector<std::string> argv_s = {python, "-m", "kvsim_report"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  ::execvp(python.c_str(), argv.data());
  fail<InputError>("cannot run the Python interpreter '", python, "' for the report (", std::strerror(errno),
                   "; install python3 with scripts/install-deps.sh, or set KVSIM_PYTHON)");
}

}  // namespace kvsim::cli
