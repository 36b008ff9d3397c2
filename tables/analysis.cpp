#include "tables/analysis.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <tbb/parallel_for.h>

#include "core/bytes.hpp"
#include "core/dist.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "metrics/bootstrap.hpp"
#include "metrics/correlation.hpp"

namespace kvsim {

namespace {

// Mean and seeded percentile bootstrap 95% CI of the paired differences, resampling prompts.
void summarise(const std::vector<const PairedRecord*>& recs, int bootstrap, std::uint64_t seed, double tolerance,
               PairedSummary& s) {
  s.n = static_cast<int>(recs.size());
  if (recs.empty()) return;
  // Group records by prompt: the bootstrap resamples prompts (records of a prompt are paired).
  std::map<std::size_t, std::vector<double>> by_prompt;
  double so = 0, sn = 0;
  for (const PairedRecord* r : recs) {
    so += r->old_reward, sn += r->new_reward;
    by_prompt[r->prompt].push_back(r->new_reward - r->old_reward);
  }
  s.mean_old = so / s.n, s.mean_new = sn / s.n, s.mean_diff = (sn - so) / s.n;
  std::vector<double> sums, counts;  // Σ d and the record count per prompt
  for (const auto& [p, d] : by_prompt) {
    sums.push_back(std::accumulate(d.begin(), d.end(), 0.0));
    counts.push_back(static_cast<double>(d.size()));
  }
  if (bootstrap > 0) {
    const Interval ci = bootstrap_ratio_of_sums(sums, counts, bootstrap, seed);  // the grouped mean
    s.ci_lo = ci.lo, s.ci_hi = ci.hi;
  } else {
    s.ci_lo = s.ci_hi = s.mean_diff;
  }
  s.regression = s.ci_hi < -tolerance;
}

}  // namespace

DiffReport diff_tables(const EvalSet& set, const DecisionTable& old_table, const DecisionTable& new_table,
                       const std::vector<int>& budgets, double tolerance, int bootstrap, std::uint64_t seed) {
  if (budgets.empty()) fail<InputError>("no budgets given");
  if (bootstrap < 0) fail<InputError>("--bootstrap must be >= 0");
  const DecisionTable a = map_table_to_model(old_table, set.model()), b = map_table_to_model(new_table, set.model());
  if (a.window != set.window() || b.window != set.window())
    fail<InputError>("the tables were compiled with windows ", a.window, " and ", b.window, ", the evaluation uses ", set.window());
  // The prompt length from the metadata: an on-demand set has not read the prompts yet.
  for (std::size_t p = 0; p < set.size(); ++p)
    for (int B : budgets)
      if (B < 1 || B > set.prompt(p).meta->n_prompt)
        fail<InputError>(set.traces()[set.prompt(p).trace].string(), ": prompt ", set.prompt(p).meta->id, ": budget ", B,
                         " is outside [1, T] (T = ", set.prompt(p).meta->n_prompt, ")");
  const int P = static_cast<int>(set.size()), nb = static_cast<int>(budgets.size());
  const std::size_t row = static_cast<std::size_t>(nb) * 2;
  DiffReport rep;
  // One prompt's rewards [k, old|new] into r.
  auto evaluate = [&](const EvalPrompt& ep, const PromptEvalData& data, double* r) {
    EvalCounters counters;
    std::vector<LayerOutcome> outs;
    for (int k = 0; k < nb; ++k) {
      r[2 * k] = evaluate_table(ep, data, a, budgets[k], outs, counters);
      r[2 * k + 1] = evaluate_table(ep, data, b, budgets[k], outs, counters);
    }
  };
  std::vector<double> rewards;  // [p, k, old|new]: every prompt's on rank 0 (and in one process)
  if (set.on_demand()) {
    // MPI, one pass: the prompts are handed out as ranks finish (dist::run_job), each read by
    // the rank that evaluates it; rank 0 gets the rewards in prompt order.
    if (dist::is_root()) rewards.resize(static_cast<std::size_t>(P) * row);
    dist::Job job;
    job.items = set.size();
    job.compute = [&](std::size_t p) {
      const auto [ep, data] = set.read_now(p);
      std::vector<double> r(row);
      evaluate(ep, *data, r.data());
      ByteWriter w;
      w.put(r);
      return w.take();
    };
    job.deliver = [&](std::size_t p, std::string&& bytes) {
      std::vector<double> r;
      ByteReader in(bytes);
      in.get(r);
      KVSIM_CHECK(r.size() == row && in.done(), "diff_tables: a prompt's rewards came back short");
      std::copy(r.begin(), r.end(), rewards.begin() + static_cast<std::ptrdiff_t>(p * row));
    };
    job.label = [&](std::size_t p) { return item_label(set.trace_set(), {set.prompt(p).trace, set.prompt(p).index}); };
    job.cost = [&](std::size_t p) { return static_cast<double>(set.prompt(p).meta->n_prompt); };
    dist::run_job(job);
  } else {
    // The prompts this rank owns (every prompt in one process), then, spread over the ranks,
    // rank 0 gets every rank's rows in prompt order.
    const std::vector<std::size_t>& mine = set.owned();
    rewards.resize(mine.size() * row);
    tbb::parallel_for(0, static_cast<int>(mine.size()), [&](int i) {
      const std::size_t p = mine[i];
      set.with_data(p, [&](const PromptEvalData& data) { evaluate(set.prompt(p), data, &rewards[i * row]); });
    });
    rewards = set.rows_to_root(std::move(rewards), row);
  }
  // MPI: rank 0 summarises; the verdict (the exit code) goes back to every rank.
  if (set.distributed() && !dist::is_root()) {
    rep.regression = dist::broadcast("")[0] != 0;
    return rep;
  }
  rep.records.resize(static_cast<std::size_t>(P) * nb);
  for (int p = 0; p < P; ++p)
    for (int k = 0; k < nb; ++k) {
      PairedRecord& r = rep.records[static_cast<std::size_t>(p) * nb + k];
      r.prompt = p, r.budget = budgets[k];
      r.old_reward = rewards[static_cast<std::size_t>(p) * row + 2 * k];
      r.new_reward = rewards[static_cast<std::size_t>(p) * row + 2 * k + 1];
    }
  auto add_row = [&](const std::string& scope, const std::string& task, int budget, std::uint64_t salt) {
    PairedSummary s;
    s.scope = scope, s.task = task, s.budget = budget;
    std::vector<const PairedRecord*> recs;
    for (const auto& r : rep.records)
      if ((budget == 0 || r.budget == budget) && (task.empty() || set.prompt(r.prompt).meta->task == task)) recs.push_back(&r);
    summarise(recs, bootstrap, derive_seed(seed, salt), tolerance, s);
    if (scope != "task") rep.regression = rep.regression || s.regression;
    rep.rows.push_back(s);
  };
  add_row("all", "", 0, 0);
  for (int k = 0; k < nb; ++k) add_row("budget", "", budgets[k], 1 + k);
  std::vector<std::string> tasks;
  for (std::size_t p = 0; p < set.size(); ++p)
    if (std::find(tasks.begin(), tasks.end(), set.prompt(p).meta->task) == tasks.end()) tasks.push_back(set.prompt(p).meta->task);
  for (std::size_t t = 0; t < tasks.size(); ++t)
    for (int k = 0; k < nb; ++k) add_row("task", tasks[t], budgets[k], 1000 + t * nb + k);
  if (set.distributed()) dist::broadcast(std::string(1, rep.regression ? 1 : 0));
  return rep;
}

std::vector<TransferCorrelation> table_correlations(const DecisionTable& a_in, const DecisionTable& b) {
  const DecisionTable a = map_table_to_model(a_in, b.model);
  const int L = b.model.n_layers, H = b.model.n_heads, nbins = kEntropyBins * kPerplexityBins;
  std::vector<std::pair<int, int>> common;  // (index in a, index in b)
  for (int i = 0; i < a.n_budgets(); ++i)
    for (int j = 0; j < b.n_budgets(); ++j)
      if (a.budgets[i] == b.budgets[j]) common.emplace_back(i, j);
  if (common.empty()) fail<InputError>("the two tables share no budget");
  // Gate bins learned in both (provenance gate_bins_seen; every bin when a table lacks it).
  auto seen = [&](const DecisionTable& t) {
    std::vector<char> s(nbins, 1);
    if (t.provenance.contains("gate_bins_seen")) {
      std::fill(s.begin(), s.end(), 0);
      for (const auto& k : t.provenance["gate_bins_seen"]) s[std::clamp(k.get<int>(), 0, nbins - 1)] = 1;
    }
    return s;
  };
  const std::vector<char> seen_a = seen(a_in), seen_b = seen(b);
  std::vector<TransferCorrelation> out;
  for (const char* part : {"head", "gate"}) {
    const bool head = std::string(part) == "head";
    std::vector<double> all_a, all_b;
    for (int l = 0; l < L; ++l) {
      std::vector<double> xa, xb;
      for (const auto& [ia, ib] : common) {
        if (head) {
          for (int h = 0; h < H; ++h) xa.push_back(a.head_at(ia, l, h)), xb.push_back(b.head_at(ib, l, h));
        } else {
          for (int k = 0; k < nbins; ++k) {
            if (!seen_a[k] || !seen_b[k]) continue;
            const int e = k / kPerplexityBins, q = k % kPerplexityBins;
            xa.push_back(a.gate_at(ia, l, e, q)), xb.push_back(b.gate_at(ib, l, e, q));
          }
        }
      }
      out.push_back({part, l, static_cast<int>(xa.size()), spearman(xa, xb)});
      all_a.insert(all_a.end(), xa.begin(), xa.end());
      all_b.insert(all_b.end(), xb.begin(), xb.end());
    }
    out.push_back({part, -1, static_cast<int>(all_a.size()), spearman(all_a, all_b)});
  }
  return out;
}

}  // namespace kvsim
