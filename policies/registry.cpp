// The policy registry: one line per policy (STYLE.md habit 1). `kvsim policies` prints it.
#include "policies/full.hpp"
#include "policies/knorm.hpp"
#include "policies/random_policy.hpp"
#include "policies/streamingllm.hpp"

namespace kvsim {

const std::vector<PolicyInfo>& policy_registry() {
  static const std::vector<PolicyInfo> registry = {
      full_policy_info(),
      random_policy_info(),
      streamingllm_policy_info(),
      knorm_policy_info(),
  };
  return registry;
}

}  // namespace kvsim
