#include "tables/compiler.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <tbb/parallel_for.h>

#include "core/bytes.hpp"
#include "core/dist.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "tables/learners.hpp"

namespace kvsim {

std::vector<double> quantile_edges(std::vector<double> values, int n_bins) {
  std::sort(values.begin(), values.end());
  std::vector<double> edges;
  const std::size_t n = values.size();
  for (int k = 1; k < n_bins; ++k)
    edges.push_back(n == 0 ? std::numeric_limits<double>::infinity() : values[std::min(n - 1, k * n / n_bins)]);
  return edges;
}

namespace {

enum class Phase { kHead, kGate };

class Compiler {
 public:
  Compiler(const EvalSet& set, const CompileOptions& opt)
      : set_(set), opt_(opt), L_(set.model().n_layers), H_(set.model().n_heads) {
    if (opt.learner != "cql" && opt.learner != "ucb" && opt.learner != "thompson")
      fail<InputError>("unknown learner '", opt.learner, "' (cql|ucb|thompson)");
    if (opt.budgets.empty()) fail<InputError>("no budgets given");
    // ucb/thompson pull arms on any prompt of a context, one pull after the other: they need
    // every prompt on the rank that learns (cmd_compile runs them on rank 0 alone).
    if (opt.learner != "cql" && set.distributed())
      fail<InputError>("--learner ", opt.learner, " runs on one rank, the calibration set is spread over ", dist::size());
    if (!(opt.cql_lambda >= 0)) fail<InputError>("--lambda must be >= 0");
    if (opt.max_rounds < 1) fail<InputError>("--max-rounds must be >= 1");
    table_ = DecisionTable::defaults(set.model(), opt.budgets, set.window(), opt.gate_mode);
    table_.sink = set.sink();
    if (opt.gate_arms) table_.gate_arms = *opt.gate_arms;
    nb_ = table_.n_budgets();
    for (std::size_t p = 0; p < set.size(); ++p)
      for (int B : table_.budgets)
        if (B < 1 || B > set.prompt(p).state.T)
          fail<InputError>(set.traces()[set.prompt(p).trace].string(), ": prompt ", set.prompt(p).meta->id, ": budget ", B,
                           " is outside [1, T] (T = ", set.prompt(p).state.T, ")");
    std::vector<double> ent, ppl;
    for (std::size_t p = 0; p < set.size(); ++p) {
      ent.push_back(set.prompt(p).state.entropy);
      ppl.push_back(set.prompt(p).state.perplexity);
    }
    table_.entropy_edges = quantile_edges(ent, kEntropyBins);
    table_.perplexity_edges = quantile_edges(ppl, kPerplexityBins);
    for (std::size_t p = 0; p < set.size(); ++p) {
      bin_.push_back(table_.entropy_bin(ent[p]) * kPerplexityBins + table_.perplexity_bin(ppl[p]));
    }
    head_default_ = table_.head_arms.nearest(kDefaultHeadWeight);
    gate_default_ = table_.gate_arms.nearest(default_gate(table_.gate_mode));
  }

  DecisionTable run(CompileStats& stats) {
    const auto start = std::chrono::steady_clock::now();
    for (int round = 1; round <= opt_.max_rounds; ++round) {
      int changes = 0;
      for (int h = 0; h < H_; ++h) changes += pass(round, Phase::kHead, h);
      changes += pass(round, Phase::kGate, 0);
      stats.changes.push_back(changes);
      stats.rounds = round;
      say("round " + std::to_string(round) + ": " + std::to_string(changes) + " entries changed");
      if (changes == 0) {
        stats.converged = true;
        break;
      }
    }
    stats.counters = counters_;
    stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return table_;
  }

 private:
  struct Context {
    int b = 0, l = 0, bin = 0;  // bin: gate contexts only
  };

  void say(const std::string& line) const {
    if (opt_.progress) opt_.progress(line);
  }

  int arms(Phase ph) const { return ph == Phase::kHead ? table_.head_arms.count() : table_.gate_arms.count(); }
  int default_arm(Phase ph) const { return ph == Phase::kHead ? head_default_ : gate_default_; }
  float arm_value(Phase ph, int a) const {
    return static_cast<float>(ph == Phase::kHead ? table_.head_arms.value(a) : table_.gate_arms.value(a));
  }
  float& entry(Phase ph, int h, const Context& c) {
    return ph == Phase::kHead ? table_.head_at(c.b, c.l, h)
                              : table_.gate_at(c.b, c.l, c.bin / kPerplexityBins, c.bin % kPerplexityBins);
  }

  // Outcomes of prompt p under the current table: [nb, L].
  void base_outcomes(std::size_t p, const PromptEvalData& data, std::vector<LayerOutcome>& out, EvalCounters& counters) const {
    out.resize(static_cast<std::size_t>(nb_) * L_);
    std::vector<LayerOutcome> one;
    for (int b = 0; b < nb_; ++b) {
      std::vector<LayerOutcome> layers;
      evaluate_table(set_.prompt(p), data, table_, table_.budgets[b], layers, counters);
      std::move(layers.begin(), layers.end(), out.begin() + static_cast<std::ptrdiff_t>(b) * L_);
    }
  }

  // Rewards of `arm_list` for context (b, l) (head h, or the gate) on prompt p, the other
  // layers at their base outcomes.
  void eval_arms(Phase ph, int h, std::size_t p, const PromptEvalData& data, const std::vector<LayerOutcome>& base, int b,
                 int l, std::span<const int> arm_list, std::vector<double>& rewards, EvalCounters& counters) const {
    const EvalPrompt& ep = set_.prompt(p);
    const int n = static_cast<int>(arm_list.size()), B = table_.budgets[b];
    const int be = bin_[p] / kPerplexityBins, bp = bin_[p] % kPerplexityBins;
    std::vector<float> heads(static_cast<std::size_t>(n) * H_);
    std::vector<LayerDecision> decisions(n);
    for (int k = 0; k < n; ++k) {
      float* row = heads.data() + static_cast<std::size_t>(k) * H_;
      for (int j = 0; j < H_; ++j) row[j] = table_.head_at(b, l, j);
      float tau = table_.gate_at(b, l, be, bp);
      if (ph == Phase::kHead)
        row[h] = arm_value(ph, arm_list[k]);
      else
        tau = arm_value(ph, arm_list[k]);
      decisions[k] = {std::span<const float>(row, H_), tau, table_.gate_mode};
    }
    std::vector<LayerOutcome> outs;
    evaluate_layer(ep, data, l, B, decisions, outs, counters);
    std::vector<const LayerOutcome*> ptrs(L_);
    for (int j = 0; j < L_; ++j) ptrs[j] = &base[static_cast<std::size_t>(b) * L_ + j];
    rewards.resize(n);
    const int Bp = std::min(B, ep.state.T);
    // The task reward depends on the kept set only: once per distinct set.
    std::vector<double> by_set(n, std::numeric_limits<double>::quiet_NaN());
    for (int k = 0; k < n; ++k) {
      double& r = by_set[outs[k].set_id];
      if (std::isnan(r)) {
        ptrs[l] = &outs[k];
        r = prompt_reward(data, ptrs);
        ++counters.task_rewards;
      }
      rewards[k] = r;
      if (ph == Phase::kGate) rewards[k] -= static_cast<double>(std::max(0, outs[k].candidates - Bp)) / ep.state.T;
    }
  }

  std::vector<Context> contexts(Phase ph) const {
    std::vector<Context> cs;
    for (int b = 0; b < nb_; ++b)
      for (int l = 0; l < L_; ++l) {
        if (ph == Phase::kHead) {
          cs.push_back({b, l, 0});
          continue;
        }
        for (int bin = 0; bin < kEntropyBins * kPerplexityBins; ++bin)
          if (std::find(bin_.begin(), bin_.end(), bin) != bin_.end()) cs.push_back({b, l, bin});
      }
    return cs;
  }

  std::vector<std::size_t> prompts_of(Phase ph, const Context& c) const {
    std::vector<std::size_t> ps;
    for (std::size_t p = 0; p < set_.size(); ++p)
      if (ph == Phase::kHead || bin_[p] == c.bin) ps.push_back(p);
    return ps;
  }

  // One pass: collect the records of every context of the phase, then set its entries.
  // Returns the number of entries changed.
  int pass(int round, Phase ph, int h) {
    const std::vector<Context> cs = contexts(ph);
    const int A = arms(ph), P = static_cast<int>(set_.size());
    std::vector<ArmStats> stats(cs.size(), ArmStats(A));
    std::vector<EvalCounters> per_prompt(P);
    // Base outcomes of every prompt under the current table (the other layers of a record).
    std::vector<std::vector<LayerOutcome>> base(P);
    if (opt_.learner == "cql") {
      // Exhaustive: every arm, every prompt of the context. Prompt-outer so a prompt beyond
      // the cache is read once per pass; rewards land in R[p, bl, a] and are reduced in
      // prompt order. In an MPI job each rank measures the prompts it owns (its rows of R);
      // rank 0 collects every row, fits and sends the table back (share_table).
      std::vector<int> all(A);
      std::iota(all.begin(), all.end(), 0);
      const std::vector<std::size_t>& mine = set_.owned();
      const std::size_t row = static_cast<std::size_t>(nb_) * L_ * A;
      std::vector<double> R(mine.size() * row);
      tbb::parallel_for(0, static_cast<int>(mine.size()), [&](int i) {
        const std::size_t p = mine[i];
        set_.with_data(p, [&](const PromptEvalData& data) {
          std::vector<LayerOutcome> b0;
          base_outcomes(p, data, b0, per_prompt[p]);
          std::vector<EvalCounters> per_bl(static_cast<std::size_t>(nb_) * L_);
          tbb::parallel_for(0, nb_ * L_, [&](int bl) {
            std::vector<double> r;
            eval_arms(ph, h, p, data, b0, bl / L_, bl % L_, all, r, per_bl[bl]);
            std::copy(r.begin(), r.end(), R.begin() + static_cast<std::ptrdiff_t>(i * row + static_cast<std::size_t>(bl) * A));
          });
          for (const auto& c : per_bl) add(per_prompt[p], c);
        });
      });
      EvalCounters measured;
      for (std::size_t p : mine) add(measured, per_prompt[p]);
      R = set_.rows_to_root(std::move(R), row);  // R [P, row] where the table is fitted
      if (set_.distributed()) counters_to_root(measured);
      add(counters_, measured);
      if (!fit_here()) return share_table(0);
      for (std::size_t k = 0; k < cs.size(); ++k)
        for (std::size_t p : prompts_of(ph, cs[k]))
          for (int a = 0; a < A; ++a)
            stats[k].add(a, R[p * row + (static_cast<std::size_t>(cs[k].b) * L_ + cs[k].l) * A + a]);
    } else {
      tbb::parallel_for(0, P, [&](int p) {
        set_.with_data(p, [&](const PromptEvalData& data) { base_outcomes(p, data, base[p], per_prompt[p]); });
      });
      std::vector<EvalCounters> per_context(cs.size());
      const int pulls = opt_.pulls > 0 ? opt_.pulls : 2 * A;
      tbb::parallel_for(0, static_cast<int>(cs.size()), [&](int k) {
        const Context& c = cs[k];
        Rng rng(derive_seed(derive_seed(opt_.seed, static_cast<std::uint64_t>(round) * 4 + (ph == Phase::kHead ? 0 : 1)),
                            ((static_cast<std::uint64_t>(h) * nb_ + c.b) * L_ + c.l) * 1000 + c.bin));
        std::vector<std::size_t> ps = prompts_of(ph, c);
        for (std::size_t i = ps.size(); i > 1; --i) std::swap(ps[i - 1], ps[rng.below(i)]);  // seeded shuffle
        for (int t = 0; t < pulls; ++t) {
          const int a = opt_.learner == "ucb" ? ucb_pick(stats[k], default_arm(ph)) : thompson_pick(stats[k], default_arm(ph), rng);
          const std::size_t p = ps[stats[k].n[a] % ps.size()];
          std::vector<double> r;
          set_.with_data(p, [&](const PromptEvalData& data) {
            eval_arms(ph, h, p, data, base[p], c.b, c.l, std::span<const int>(&a, 1), r, per_context[k]);
          });
          stats[k].add(a, r[0]);
        }
      });
      for (const auto& c : per_context) add(counters_, c);
      for (const auto& c : per_prompt) add(counters_, c);
    }
    int changes = 0;
    for (std::size_t k = 0; k < cs.size(); ++k) {
      const int current = ph == Phase::kHead ? table_.head_arms.nearest(entry(ph, h, cs[k])) : table_.gate_arms.nearest(entry(ph, h, cs[k]));
      // Ties stay with the current value: a pass changes an entry only on evidence.
      const int chosen = opt_.learner == "cql" ? choose_arm(cql_fit(stats[k], opt_.cql_lambda), current)
                                               : best_mean_arm(stats[k], current);
      const float v = arm_value(ph, chosen);
      if (v != entry(ph, h, cs[k])) {
        entry(ph, h, cs[k]) = v;
        ++changes;
      }
    }
    if (set_.distributed()) share_table(changes);
    say("round " + std::to_string(round) + (ph == Phase::kHead ? " heads h=" + std::to_string(h) : std::string(" gate")) +
        ": " + std::to_string(cs.size()) + " contexts, " + std::to_string(changes) + " changed, " +
        std::to_string(counters_.decisions) + " rewards so far");
    return changes;
  }

  // True where the table is fitted: everywhere in one process, on rank 0 in an MPI job.
  bool fit_here() const { return !set_.distributed() || dist::is_root(); }

  template <typename Archive, typename Counters>
  static void counter_fields(Archive& a, Counters& c) {
    a.io(c.decisions, c.measurements, c.task_rewards);
  }

  // MPI: every rank's counters, summed on rank 0 (integers: in any order). Elsewhere unchanged.
  static void counters_to_root(EvalCounters& measured) {
    ByteWriter w;
    counter_fields(w, measured);
    const std::vector<std::string> parts = dist::gather(w.take());
    if (!dist::is_root()) return;
    measured = {};
    for (const std::string& part : parts) {
      ByteReader in(part);
      EvalCounters c;
      counter_fields(in, c);
      add(measured, c);
    }
  }

  // MPI: rank 0's table (after its fit) and count of changed entries on every rank, so the
  // next pass measures every prompt under the same table. Returns the count.
  int share_table(int changes) {
    ByteWriter w;
    w.io(changes, table_.head, table_.gate);
    const std::string bytes = dist::broadcast(w.take());
    ByteReader in(bytes);
    in.io(changes, table_.head, table_.gate);
    return changes;
  }

  static void add(EvalCounters& a, const EvalCounters& b) {
    a.decisions += b.decisions;
    a.measurements += b.measurements;
    a.task_rewards += b.task_rewards;
  }

  const EvalSet& set_;
  const CompileOptions& opt_;
  int L_, H_, nb_ = 0;
  DecisionTable table_;
  std::vector<int> bin_;  // per prompt: b_ent · 4 + b_ppl
  int head_default_ = 0, gate_default_ = 0;
  EvalCounters counters_;
};

}  // namespace

DecisionTable compile_table(const EvalSet& set, const CompileOptions& options, CompileStats* stats) {
  Compiler c(set, options);
  CompileStats local;
  DecisionTable t = c.run(stats ? *stats : local);
  const CompileStats& s = stats ? *stats : local;
  // The other ranks of an MPI job hold the same entries but neither the file hashes nor the
  // counters of every rank: rank 0 writes the table.
  if (set.distributed() && !dist::is_root()) return t;
  nlohmann::json learner = {{"name", options.learner}, {"max_rounds", options.max_rounds}, {"rounds", s.rounds},
                            {"converged", s.converged}, {"changes_per_round", s.changes}};
  if (options.learner == "cql") learner["lambda"] = options.cql_lambda;
  else learner["pulls_per_context"] = options.pulls > 0 ? nlohmann::json(options.pulls) : nlohmann::json("2 x arms");
  t.provenance["learner"] = learner;
  t.provenance["seed"] = options.seed;
  t.provenance["rewards"] = set.reward_description() +
                            "; gate records also pay the over-retention penalty max(0, |C_w| - min(B, T)) / T";
  t.provenance["traces"] = set.trace_provenance();
  t.provenance["trace_set_xxh3"] = set.trace_set_hash();
  t.provenance["calibration_prompts"] = set.size();
  std::vector<int> bins;
  for (std::size_t p = 0; p < set.size(); ++p)
    bins.push_back(t.entropy_bin(set.prompt(p).state.entropy) * kPerplexityBins + t.perplexity_bin(set.prompt(p).state.perplexity));
  std::sort(bins.begin(), bins.end());
  bins.erase(std::unique(bins.begin(), bins.end()), bins.end());
  t.provenance["gate_bins_seen"] = bins;
  // Counts only (timing goes to stdout): the file is the same at any thread count.
  t.provenance["evaluations"] = {{"rewards", s.counters.decisions}, {"kept_sets_measured", s.counters.measurements},
                                 {"task_rewards_computed", s.counters.task_rewards}};
  return t;
}

}  // namespace kvsim
