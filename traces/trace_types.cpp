#include "traces/trace_types.hpp"

namespace kvsim {

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
