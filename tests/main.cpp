// Catch2's runner with `--warn NoAssertions` always on, run from ctest or by hand: a test case
// (or leaf SECTION) that asserts nothing fails; a skipped test asserts SUCCEED
// (tests/support/skip.hpp). Catch2 v2 takes a single --warn option, and ctest's is NoTests
// (CMakeLists.txt), so this one is set here.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

int main(int argc, char* argv[]) {
  Catch::Session session;
  if (const int rc = session.applyCommandLine(argc, argv); rc != 0) return rc;
  Catch::ConfigData& config = session.configData();
  config.warnings = static_cast<Catch::WarnAbout::What>(config.warnings | Catch::WarnAbout::NoAssertions);
  return session.run();
}
