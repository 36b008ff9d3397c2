// scripts/kvpress-parity.py, in its quick form: kvsim's kept sets against NVIDIA kvpress's on
// one 256-token chunk of SmolLM2-135M (docs/parity.md). Optional, like the script: skipped
// unless its virtual environment exists (the script makes it on a first run by hand; it is
// several GB and never made by the tests), the GGUF is cached and ../shared is beside the repo.
#include <catch2/catch.hpp>

#include <cstdlib>

#include "support/shared.hpp"
#include "support/trace_fixture.hpp"

using namespace kvsim;

namespace {

// ${KVSIM_KVPRESS_VENV:-$HOME/.cache/kvsim/venv-kvpress}/bin/python, as the script computes it.
std::filesystem::path kvpress_python() {
  std::filesystem::path venv;
  if (const char* env = std::getenv("KVSIM_KVPRESS_VENV"); env && *env) {
    venv = env;
  } else {
    const char* home = std::getenv("HOME");
    venv = std::filesystem::path(home ? home : "/nonexistent") / ".cache" / "kvsim" / "venv-kvpress";
  }
  return venv / "bin" / "python";
}

}  // namespace

TEST_CASE("kvpress parity script: every press but knorm keeps kvsim's sets up to near-ties (quick form)",
          "[real][shared][slow][parity]") {
  const auto python = kvpress_python();
  KVSIM_REQUIRE_PATH(python, "run scripts/kvpress-parity.py once by hand to make its environment");
  const auto gguf = test::smollm2_gguf();
  KVSIM_REQUIRE_PATH(gguf, "scripts/get-model.sh smollm2-135m");
  KVSIM_REQUIRE_SHARED(test::shared_path("data/paul_graham_essays/worked.txt"));
  const std::string cmd = python.string() + " " + KVSIM_SOURCE_DIR + "/scripts/kvpress-parity.py --kvsim " +
                          KVSIM_BINARY + " --gguf " + gguf.string() +
                          " --prompts 1 --prompt-len 256 --ratios 0.25 0.5";
  const test::CliResult r = test::run_command(cmd);
  INFO(cmd << "\n" << r.output);
  CHECK(r.status == 0);
  // Every press reports its 30 layers x 3 KV heads; exact fractions may fall short of 100% by
  // near-ties (torch's summation order varies with its thread count), which PASS allows.
  CHECK_THAT(r.output, Catch::Contains("| SnapKV | `snapkv` | 0.5 | 90 | "));
  CHECK_THAT(r.output, Catch::Contains("| Knorm | `knorm` | 0.25 | 90 | "));
  CHECK_THAT(r.output, Catch::Contains("PASS: every press but Knorm agrees"));
}
