// kvsim report (python/kvsim_report, docs/report.md) end to end: the Python tests of
// python/tests run against this build's kvsim. A Python test that cannot run here (no
// matplotlib/pandas/scipy, no chromium) exits 77 and the test is reported as skipped.
#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <cstdio>
#include <string>

#include "support/shared.hpp"
#include "support/skip.hpp"

namespace {

struct Run {
  int rc = -1;
  std::string output;
};

// Runs a shell command from the source tree with stderr joined to stdout.
Run sh(const std::string& command) {
  const std::string full = "cd '" KVSIM_SOURCE_DIR "' && " + command + " 2>&1";
  Run r;
  FILE* p = ::popen(full.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) r.output.append(buf, n);
  const int status = ::pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

bool python_has_report_deps() {
  return std::system("/usr/bin/python3 -c 'import matplotlib, pandas, scipy, h5py' >/dev/null 2>&1") == 0;
}

}  // namespace

TEST_CASE("report: the figures of a synthetic run with two tables and their diff and transfer equal the CSVs and bad input is refused",
          "[report][cli]") {
  if (!python_has_report_deps()) KVSIM_SKIP("/usr/bin/python3 lacks matplotlib, pandas or scipy (scripts/install-deps.sh)");
  const Run r = sh("KVSIM_BINARY='" KVSIM_BINARY "' /usr/bin/python3 python/tests/test_report.py");
  INFO(r.output);
  if (r.rc == 77) KVSIM_SKIP(r.output);
  REQUIRE(r.rc == 0);
}

TEST_CASE("report: the stories260K demo report opens in headless Chromium with every image and section and no console error "
          "and its figures equal the CSVs",
          "[report][shared]") {
  if (!std::filesystem::exists(kvsim::test::shared_path("models/stories260K/stories260K.bin")))
    KVSIM_SKIP("needs ../shared (stories260K)");
  if (!python_has_report_deps()) KVSIM_SKIP("/usr/bin/python3 lacks matplotlib, pandas or scipy (scripts/install-deps.sh)");
  kvsim::test::TempDir tmp;
  // The demo itself (scripts/demo.sh: trace, run, validate, compile, diff, report), on 8 prompts.
  const Run demo = sh("KVSIM_BINARY='" KVSIM_BINARY "' KVSIM_DEMO_OUT='" + tmp.path().string() +
                      "' KVSIM_DEMO_PROMPTS=8 bash scripts/demo.sh");
  INFO(demo.output);
  REQUIRE(demo.rc == 0);
  const auto report = tmp / "demo-report.html";
  REQUIRE(std::filesystem::exists(report));
  CHECK(demo.output.find("demo report: ") != std::string::npos);
  // Every figure against its CSV or table (python/tests/report_checks.py), each kind present.
  const Run checks = sh("cd '" + tmp.path().string() + "' && /usr/bin/python3 -c \"import sys; sys.path.insert(0, '" KVSIM_SOURCE_DIR
                        "/python/tests'); import report_checks as c; n = c.check_report('demo-report.html', {}); "
                        "print(n); assert set(n) == {'budget_curves', 'kept_heatmap', 'table_heads', 'table_gate', "
                        "'fidelity', 'forest'}, n\"");
  INFO(checks.output);
  REQUIRE(checks.rc == 0);
  // The browser: the first screen is kept beside the test binary for a look.
  const std::string shot = (std::filesystem::path(KVSIM_BINARY).parent_path() / "report-test-first-screen.png").string();
  const Run browser = sh("/usr/bin/python3 python/tests/browser_check.py '" + report.string() + "' --screenshot '" + shot + "'");
  INFO(browser.output);
  if (browser.rc == 77) KVSIM_SKIP(browser.output);
  REQUIRE(browser.rc == 0);
  CHECK(std::filesystem::file_size(shot) > 10000);
}
