#include "traces/trace_types.hpp"

#include "core/error.hpp"

namespace kvsim {

void check_value_norms_non_negative(std::span<const float> norms, const std::string& file, const std::string& object) {
  for (std::size_t i = 0; i < norms.size(); ++i)
    if (norms[i] < 0)
      fail<TraceError>(file, ": ", object, ": value ", norms[i], " at flat index ", i, " is negative (an L1 norm)");
}

const char* storage_name(KvStorage s) {
  switch (s) {
    case KvStorage::kFp32: return "fp32";
    case KvStorage::kBf16: return "bf16";
    case KvStorage::kFp16: break;
  }
  return "fp16";
}

bool parse_storage(const std::string& text, KvStorage& out) {
  for (KvStorage s : {KvStorage::kFp16, KvStorage::kFp32, KvStorage::kBf16})
    if (text == storage_name(s)) {
      out = s;
      return true;
    }
  return false;
}

}  // namespace kvsim
