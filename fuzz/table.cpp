// JSON decision tables (policies/decision_table): read_table on a scratch file, then written back.
#include <cstddef>
#include <cstdint>

#include "core/error.hpp"
#include "fuzz/fuzz_util.hpp"
#include "policies/decision_table.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = kvsim::fuzz::write_scratch("table.json", data, size);
  try {
    const auto table = kvsim::read_table(path);
    (void)kvsim::table_to_json_text(table);
    (void)table.budget_index(64);
    (void)table.entropy_bin(1.0);
    (void)table.perplexity_bin(10.0);
  } catch (const kvsim::InputError&) {
  }
  return 0;
}
