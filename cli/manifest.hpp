#pragma once
// The head of every results directory's manifest.json and the provenance of its inputs.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sim/replay.hpp"

namespace kvsim::cli {

// Provenance of a replay's results (STYLE.md habit 10): tool, version, git sha, time,
// command, threads, seed, every trace with its XXH3 hash, canonical policy specs, budgets.
// The head of every results directory's manifest.json (docs/report.md): format "kvsim-results",
// format_version (kResultsFormatVersion), kind (run, validate, diff, transfer), tool version,
// git sha, time and the command line.
inline constexpr int kResultsFormatVersion = 1;
nlohmann::json results_manifest(const std::string& kind, const std::vector<std::string>& args);
// results_manifest plus the replay's inputs: traces with their hashes, policies, budgets, threads, seed.
nlohmann::json replay_manifest(const std::string& kind, const Replay& replay, const std::vector<std::string>& args,
                               int threads, std::uint64_t seed);
// A trace named in a manifest: path, XXH3 of the file, model source, prompt count.
nlohmann::json trace_provenance(const TraceReader& r);
// [trace_provenance of each trace of the set], the file hashes the set took when it has them.
nlohmann::json trace_provenance(const TraceSet& set);

}  // namespace kvsim::cli
