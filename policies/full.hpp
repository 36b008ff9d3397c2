#pragma once
// full: keeps every prompt token whatever the budget; the reference every error is measured
// against (its output error is exactly zero by construction).
#include "policies/policy.hpp"

namespace kvsim {
PolicyInfo full_policy_info();
}
