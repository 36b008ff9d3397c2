#pragma once
// random: uniformly random scores per (layer, KV head, token), seeded from the prompt's seed
// and the policy spec, so a run is reproducible and every budget keeps a prefix of the same
// random order (nested kept sets). The floor any useful policy must beat.
#include "policies/policy.hpp"

namespace kvsim {
PolicyInfo random_policy_info();
}
