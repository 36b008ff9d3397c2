#include "cli/progress.hpp"

#include <unistd.h>

#include <cstdio>
#include <ctime>

#include "core/dist.hpp"

namespace kvsim::cli {

Progress::Progress(std::string label, std::size_t total)
    : label_(std::move(label)), total_(total), tty_(::isatty(2) != 0), start_(std::chrono::steady_clock::now()) {}

void Progress::update(std::size_t done, const std::string& detail) {
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double eta = done > 0 ? secs * static_cast<double>(total_ - done) / static_cast<double>(done) : 0.0;
  char line[512];
  std::snprintf(line, sizeof line, "[%s] %zu/%zu %s, %.1fs elapsed, ETA %.0fs", label_.c_str(), done, total_,
                detail.c_str(), secs, eta);
  if (tty_) {
    std::fprintf(stderr, "\r%-100s", line);
    std::fflush(stderr);
  } else {
    const int decile = total_ ? static_cast<int>(10 * done / total_) : 10;
    if (decile != last_decile_) std::fprintf(stderr, "%s\n", line);
    last_decile_ = decile;
  }
}

void Progress::finish(const std::string& detail) {
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::fprintf(stderr, "%s[%s] done: %s in %.1fs\n", tty_ ? "\r" : "", label_.c_str(), detail.c_str(), secs);
}

std::string utc_now_iso8601() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string ranks_note() {
  if (dist::size() <= 1) return "";
  const dist::JobTraffic t = dist::last_job_traffic();
  char buf[256];
  std::snprintf(buf, sizeof buf,
                " on %d MPI ranks (%zu results from ranks 1..%d: %.1f KiB each on average, largest %.1f KiB; "
                "rank 0 collecting and writing: %.2f s)",
                dist::size(), t.items_from_others, dist::size() - 1,
                t.items_from_others ? t.result_bytes / 1024.0 / static_cast<double>(t.items_from_others) : 0.0,
                t.largest_result / 1024.0, t.deliver_seconds);
  return buf;
}

}  // namespace kvsim::cli
