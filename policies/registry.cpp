// The policy registry: one line per policy (STYLE.md habit 1). `kvsim policies` prints it.
#include "policies/adakv.hpp"
#include "policies/compilerkv.hpp"
#include "policies/criticalkv.hpp"
#include "policies/full.hpp"
#include "policies/h2o.hpp"
#include "policies/knorm.hpp"
#include "policies/laprox.hpp"
#include "policies/oracle.hpp"
#include "policies/pyramidkv.hpp"
#include "policies/random_policy.hpp"
#include "policies/snapkv.hpp"
#include "policies/streamingllm.hpp"
#include "policies/tova.hpp"

namespace kvsim {

const std::vector<PolicyInfo>& policy_registry() {
  static const std::vector<PolicyInfo> registry = {
      full_policy_info(),
      random_policy_info(),
      streamingllm_policy_info(),
      knorm_policy_info(),
      h2o_policy_info(),
      snapkv_policy_info(),
      pyramidkv_policy_info(),
      adakv_policy_info(),
      tova_policy_info(),
      criticalkv_policy_info(),
      laprox_policy_info(),
      compilerkv_policy_info(),
      oracle_policy_info(),
  };
  return registry;
}

}  // namespace kvsim
