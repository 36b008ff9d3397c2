#pragma once
// Word lists for the synthetic tasks (tracer/synthetic_tasks.hpp): common English adjectives,
// nouns and verbs, written for kvsim. RULER draws its keys (adjective-noun pairs) and its
// common-word lists from the `wonderwords` package's lists; these play the same role.
#include <span>
#include <string_view>

namespace kvsim {

std::span<const std::string_view> task_adjectives();
std::span<const std::string_view> task_nouns();
std::span<const std::string_view> task_verbs();

}  // namespace kvsim
