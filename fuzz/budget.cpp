// Budget and ratio lists (sim/budget.hpp): the bytes up to the first newline are the --budget
// list, the rest the --ratio list; a parsed sweep is then resolved for a prompt length.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.hpp"
#include "sim/budget.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const auto cut = text.find('\n');
  const std::string budgets = text.substr(0, cut);
  const std::string ratios = cut == std::string::npos ? std::string() : text.substr(cut + 1);
  try {
    const auto sweep = kvsim::BudgetSweep::parse(budgets, ratios);
    for (int T : {1, 2, 7, 100, 4096}) {
      try {
        (void)sweep.resolve(T, "fuzz");
      } catch (const kvsim::InputError&) {
      }
    }
  } catch (const kvsim::InputError&) {
  }
  return 0;
}
