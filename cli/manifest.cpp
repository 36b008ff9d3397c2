#include "cli/manifest.hpp"

#include "cli/progress.hpp"
#include "core/dist.hpp"
#include "traces/trace_index.hpp"
#include "core/version.hpp"

namespace kvsim::cli {

nlohmann::json results_manifest(const std::string& kind, const std::vector<std::string>& args) {
  nlohmann::json m;
  m["format"] = "kvsim-results";
  m["format_version"] = kResultsFormatVersion;
  m["kind"] = kind;
  m["tool"] = "kvsim";
  m["version"] = kToolVersion;
  m["git_sha"] = kGitSha;
  m["created_utc"] = utc_now_iso8601();
  m["command"] = args;
  return m;
}

namespace {

nlohmann::json trace_provenance(const TraceReader& r, const std::string& xxh3) {
  return {{"path", r.path().string()}, {"xxh3", xxh3}, {"model_source", r.model().source}, {"prompts", r.prompts().size()}};
}

}  // namespace

nlohmann::json trace_provenance(const TraceReader& r) { return trace_provenance(r, trace_content_hash(r)); }

nlohmann::json trace_provenance(const TraceSet& set) {
  nlohmann::json a = nlohmann::json::array();
  for (std::size_t t = 0; t < set.size(); ++t)
    a.push_back(set.hashed() ? trace_provenance(set.reader(t), set.hash(t)) : trace_provenance(set.reader(t)));
  return a;
}

nlohmann::json replay_manifest(const std::string& kind, const Replay& replay, const std::vector<std::string>& args,
                               int threads, std::uint64_t seed) {
  nlohmann::json m = results_manifest(kind, args);
  m["threads"] = threads;
  m["ranks"] = dist::size();  // MPI ranks (docs/scale-out.md); 1 for a single process
  m["seed"] = seed;
  m["projection"] = projection_name(replay.options().projection);
  m["traces"] = trace_provenance(replay.traces());
  for (const auto& p : replay.policies()) m["policies"].push_back(p->spec());
  m["budgets"] = {{"kind", replay.options().budgets.is_ratio() ? "ratio" : "tokens_per_kv_head"},
                  {"labels", replay.options().budgets.labels()}};
  return m;
}

}  // namespace kvsim::cli
