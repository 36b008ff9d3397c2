// Policy spec strings and policy lists (policies/spec.hpp).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.hpp"
#include "policies/spec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    (void)kvsim::parse_policy_spec(text);
  } catch (const kvsim::Error&) {
  }
  try {
    for (const auto& piece : kvsim::split_policy_list(text)) {
      try {
        (void)kvsim::parse_policy_spec(piece);
      } catch (const kvsim::Error&) {
      }
    }
  } catch (const kvsim::Error&) {
  }
  return 0;
}
