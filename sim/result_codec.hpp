#pragma once
// PromptResult as bytes, for the ranks of an MPI job (core/dist.hpp): what a worker rank sends
// rank 0 for each prompt it replayed. Everything the outputs read travels exactly (doubles as
// their bits); the phase timings too (benchmarks). Kept sets travel as their kept prefixes:
// with `kept_tokens` the kept token indices (--dump-kept, validate's exact decode), without
// them the counts only (kept.csv).
#include <string>
#include <string_view>

#include "core/bytes.hpp"
#include "sim/replay.hpp"

namespace kvsim {

void encode_selection(ByteWriter& w, const Selection& s, bool kept_tokens);
Selection decode_selection(ByteReader& r);

std::string encode_prompt_result(const PromptResult& r, bool kept_tokens);
// `meta`: the prompt's metadata in rank 0's own copy of the trace set.
PromptResult decode_prompt_result(std::string_view bytes, const PromptMeta* meta);

}  // namespace kvsim
